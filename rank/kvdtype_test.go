package rank

import (
	"fmt"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Where Star Attention is exact (one block; anchor = first block), it
// equals global attention with K/V of the same dtype on both sides, and
// so does ring attention: phase 1 attends to its fresh keys and values
// rounded as the cache holds them, as phase 2 and global prefill do.
// (Measured: within 6e-7 for every dtype.)
func TestExactCasesEqualGlobalEveryKVDType(t *testing.T) {
	m := testModel(t)
	for _, dt := range layers.KVDTypes {
		for _, c := range []struct{ n, b, a, m int }{{20, 20, 20, 3}, {24, 12, 12, 4}, {23, 12, 12, 2}} {
			t.Run(fmt.Sprintf("%s/n%d_b%d_a%d", layers.KVDTypeName(dt), c.n, c.b, c.a), func(t *testing.T) {
				ctx := randTokens(c.n, m.Cfg.VocabSize, 2)
				q := randTokens(c.m, m.Cfg.VocabSize, 3)
				g := globalLogitsKV(t, m, ctx, q, dt)
				if d := maxDiff(g, starLogitsKV(t, m, ctx, q, c.b, min(c.a, c.n), dt)); d > 1e-5 {
					t.Fatalf("star logits differ from global's by %g > 1e-5", d)
				}
				if d := maxDiff(g, ringLogitsKV(t, m, ctx, q, dt)); d > 1e-5 {
					t.Fatalf("ring logits differ from global's by %g > 1e-5", d)
				}
			})
		}
	}
}

func ringLogitsKV(t *testing.T, m *layers.Model, ctx, q []int, dt weights.DType) []float32 {
	lay, err := RingLayout(len(ctx), 1)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(m, 0, true, 2*lay.BlockSize+len(q), dt)
	var toks [][]int
	for _, b := range lay.Of(0) {
		toks = append(toks, ctx[b.Start:b.Start+b.Len])
	}
	if err := w.EncodeRing(nil, lay.Of(0), toks); err != nil {
		t.Fatal(err)
	}
	return queryLogits(t, w, q, len(ctx))
}

// 16-bit K/V change the logits (the caches really hold rounded values)
// but little: on the random test model the largest logit difference from
// float32 K/V is 3.1e-4 with f16 and 2.6e-3 with bf16 (8 bits of
// mantissa against f16's 11); the bounds leave 5x.
func TestKVDTypeCloseToF32(t *testing.T) {
	m := testModel(t)
	ctx := randTokens(30, m.Cfg.VocabSize, 2)
	q := randTokens(3, m.Cfg.VocabSize, 3)
	for _, c := range []struct {
		dt    weights.DType
		bound float64
	}{{weights.F16, 1.5e-3}, {weights.BF16, 1.5e-2}} {
		for _, att := range []string{"global", "star"} {
			got, want := globalLogitsKV(t, m, ctx, q, c.dt), globalLogitsKV(t, m, ctx, q, weights.F32)
			if att == "star" {
				got, want = starLogitsKV(t, m, ctx, q, 10, 4, c.dt), starLogitsKV(t, m, ctx, q, 10, 4, weights.F32)
			}
			d := maxDiff(got, want)
			t.Logf("%s, %v K/V: max logit difference from float32 K/V %.3g", att, c.dt, d)
			if d == 0 || d > c.bound {
				t.Errorf("%s, %v K/V: logits differ from float32 K/V's by %g, want in (0, %g]", att, c.dt, d, c.bound)
			}
		}
	}
}

// spanRecorder records the layout of the cached keys each attention call
// reads (TokStride == D: head-major).
type spanRecorder struct {
	layers.Compute
	headMajor, tokenMajor int
	dtypes                map[weights.DType]bool
}

func (c *spanRecorder) AttentionKernel(out, lse, q []float32, k, v layers.KVSpan, nq, nk int, s layers.AttnShape, causal bool) bool {
	if k.TokStride == s.D && s.HKV > 1 {
		c.headMajor++
	} else {
		c.tokenMajor++
	}
	c.dtypes[k.DType] = true
	a, ok := c.Compute.(layers.AttentionKernel)
	return ok && a.AttentionKernel(out, lse, q, k, v, nq, nk, s, causal)
}

// A decode step reads every cache head-major, in the cache's dtype: the
// blocks' and the query cache's (one kv head's keys one contiguous run).
func TestDecodeReadsHeadMajorKV(t *testing.T) {
	for _, dt := range layers.KVDTypes {
		m := testModel(t)
		rec := &spanRecorder{Compute: m.C, dtypes: map[weights.DType]bool{}}
		lay, err := NewLayout(30, 10, 4, 1)
		if err != nil {
			t.Fatal(err)
		}
		ctx := randTokens(30, m.Cfg.VocabSize, 1)
		w := NewWorker(m, 0, true, 10, dt)
		var toks [][]int
		for _, b := range lay.Blocks {
			toks = append(toks, ctx[b.Start:b.Start+b.Len])
		}
		if err := w.EncodeBlocks(ctx[:4], lay.Blocks, toks); err != nil {
			t.Fatal(err)
		}
		m.C = rec
		if err := w.Step([]int{1}, 30, w.Logits(), []int{0}); err != nil {
			t.Fatal(err)
		}
		want := m.Cfg.NLayers * (len(lay.Blocks) + 1)
		if rec.headMajor != want || rec.tokenMajor != 0 || len(rec.dtypes) != 1 || !rec.dtypes[dt] {
			t.Fatalf("%v: a decode step read %d head-major and %d token-major K/V spans of %v, want %d head-major of %v",
				dt, rec.headMajor, rec.tokenMajor, rec.dtypes, want, dt)
		}
	}
}
