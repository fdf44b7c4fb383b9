package rank

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

func testModel(t testing.TB) *layers.Model {
	t.Helper()
	w := weightstest.RandomModel(weights.Config{Dim: 32, HiddenDim: 48, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 50, SeqLen: 512}, 11)
	return layers.NewModel(w, layers.NewCPU(2))
}

func randTokens(n, vocab int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, seed))
	t := make([]int, n)
	for i := range t {
		t[i] = r.IntN(vocab)
	}
	return t
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// The anchor's K/V, computed once per rank, must give each block exactly
// the K/V it gets when encoded as the literal sequence [anchor ; block]
// with positions [0..a-1, s_k..].
func TestAnchorOnceEqualsJointEncoding(t *testing.T) {
	m := testModel(t)
	c := m.Cfg
	ctx := randTokens(29, c.VocabSize, 1)
	lay, err := NewLayout(len(ctx), 8, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(m, 0, true, 16, weights.F32)
	var toks [][]int
	for _, b := range lay.Blocks {
		toks = append(toks, ctx[b.Start:b.Start+b.Len])
	}
	if err := w.EncodeBlocks(ctx[:lay.AnchorSize], lay.Blocks, toks); err != nil {
		t.Fatal(err)
	}
	a := lay.AnchorSize
	st := m.NewState(a + lay.BlockSize)
	lse := make([]float32, (a+lay.BlockSize)*c.NHeads)
	for bi, b := range lay.Blocks {
		seq, pos := []int{}, []int{}
		if b.Index > 0 {
			seq = append(seq, ctx[:a]...)
			for i := 0; i < a; i++ {
				pos = append(pos, i)
			}
		}
		skip := len(seq)
		seq = append(seq, toks[bi]...)
		for i := 0; i < b.Len; i++ {
			pos = append(pos, b.Start+i)
		}
		wantK := make([][]float32, c.NLayers)
		wantV := make([][]float32, c.NLayers)
		err := m.Forward(st, seq, pos, func(l int, out, q, k, v []float32, n int) error {
			wantK[l] = append([]float32(nil), k[skip*c.KVDim():]...)
			wantV[l] = append([]float32(nil), v[skip*c.KVDim():]...)
			layers.Attention(m.C, out, lse[:n*c.NHeads], q, k, v, n, n, m.Shape(), true)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		kv := hkv(w.KV[bi])
		if kv.Len != b.Len {
			t.Fatalf("block %d holds %d tokens, want %d (the anchor must not be kept)", b.Index, kv.Len, b.Len)
		}
		for l := 0; l < c.NLayers; l++ {
			if d := math.Max(maxDiff(tokenMajor(kv.K[l], kv.Len), wantK[l]), maxDiff(tokenMajor(kv.V[l], kv.Len), wantV[l])); d > 1e-5 {
				t.Fatalf("block %d layer %d: K/V differ from joint [anchor ; block] encoding by %g", b.Index, l, d)
			}
		}
	}
}

// tokenMajor is the first n tokens of b as float32 [n][HKV*D].
func tokenMajor(b *layers.KVBuf, n int) []float32 {
	x := make([]float32, n*b.HKV*b.D)
	b.TokenMajor(x, n)
	return x
}

// queryLogits runs the query through a worker and returns all rows' logits.
func queryLogits(t *testing.T, w *Worker, q []int, pos0 int) []float32 {
	t.Helper()
	V := w.M.Cfg.VocabSize
	rows := make([]int, len(q))
	for i := range rows {
		rows[i] = i
	}
	out := make([]float32, len(q)*V)
	if err := w.Step(q, pos0, out, rows); err != nil {
		t.Fatal(err)
	}
	return out
}

func globalLogits(t *testing.T, m *layers.Model, ctx, q []int) []float32 {
	return globalLogitsKV(t, m, ctx, q, weights.F32)
}

func globalLogitsKV(t *testing.T, m *layers.Model, ctx, q []int, dt weights.DType) []float32 {
	g := NewWorker(m, 0, true, len(ctx)+len(q), dt)
	if err := g.Step(ctx, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	return queryLogits(t, g, q, len(ctx))
}

func starLogits(t *testing.T, m *layers.Model, ctx, q []int, b, a int) []float32 {
	return starLogitsKV(t, m, ctx, q, b, a, weights.F32)
}

func starLogitsKV(t *testing.T, m *layers.Model, ctx, q []int, b, a int, dt weights.DType) []float32 {
	lay, err := NewLayout(len(ctx), b, a, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(m, 0, true, max(b, len(q)), dt)
	var toks [][]int
	for _, bl := range lay.Blocks {
		toks = append(toks, ctx[bl.Start:bl.Start+bl.Len])
	}
	if err := w.EncodeBlocks(ctx[:a], lay.Blocks, toks); err != nil {
		t.Fatal(err)
	}
	return queryLogits(t, w, q, len(ctx))
}

// Cases where Star Attention is exact: one block covering the context, and
// two blocks with the anchor equal to the whole first block (B_1 then sees
// exactly the keys global attention gives it).
func TestStarExactCasesEqualGlobal(t *testing.T) {
	m := testModel(t)
	for _, c := range []struct{ n, b, a, m int }{{20, 20, 20, 3}, {20, 32, 5, 1}, {24, 12, 12, 4}, {23, 12, 12, 2}} {
		t.Run(fmt.Sprintf("n%d_b%d_a%d", c.n, c.b, c.a), func(t *testing.T) {
			ctx := randTokens(c.n, m.Cfg.VocabSize, 2)
			q := randTokens(c.m, m.Cfg.VocabSize, 3)
			g := globalLogits(t, m, ctx, q)
			s := starLogits(t, m, ctx, q, c.b, min(c.a, c.n))
			if d := maxDiff(g, s); d > 1e-4 {
				t.Fatalf("star logits differ from global by %g > 1e-4", d)
			}
		})
	}
}

// With small blocks and a small anchor Star Attention is an approximation:
// the answer must differ from global (or the test above proves nothing)
// yet stay close. Close: the next-token distributions of global and Star
// are at most 0.15 apart in total variation. On this random model Star's
// distance is 0.05 to 0.10 over block sizes 8 to 20 and anchors 0 to 8,
// while a merge that weights the blocks wrongly (exp(M - lse) for
// exp(lse - M)) gives 0.22.
func TestStarApproximationDiffers(t *testing.T) {
	m := testModel(t)
	ctx := randTokens(40, m.Cfg.VocabSize, 4)
	q := randTokens(2, m.Cfg.VocabSize, 5)
	g := globalLogits(t, m, ctx, q)
	s := starLogits(t, m, ctx, q, 8, 2)
	d := maxDiff(g, s)
	if d < 1e-6 {
		t.Fatalf("star with 5 blocks equals global (diff %g): blocks are not independent", d)
	}
	const bound = 0.15
	V := m.Cfg.VocabSize
	for r := range q {
		if tv := totalVariation(g[r*V:(r+1)*V], s[r*V:(r+1)*V]); tv > bound {
			t.Errorf("query row %d: star (b=8, a=2) and global next-token distributions %.3f apart (total variation) > %g; max logit diff %.3g", r, tv, bound, d)
		}
	}
}

// totalVariation is half the L1 distance between softmax(a) and softmax(b).
func totalVariation(a, b []float32) float64 {
	pa, pb := softmax64(a), softmax64(b)
	var d float64
	for i := range pa {
		d += math.Abs(pa[i] - pb[i])
	}
	return d / 2
}

func softmax64(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// A worker with no blocks that is not the query host contributes -Inf.
func TestIdleWorkerContributesNothing(t *testing.T) {
	m := testModel(t)
	w := NewWorker(m, 3, false, 4, weights.F32)
	var got [][]float32
	w.Comb = combinerFunc(func(out, lse []float32, rows, D int) error {
		for _, x := range lse {
			if !math.IsInf(float64(x), -1) {
				return fmt.Errorf("idle rank lse %g, want -Inf", x)
			}
		}
		got = append(got, out)
		return nil
	})
	if err := w.Step([]int{1, 2}, 10, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != m.Cfg.NLayers {
		t.Fatalf("combiner called %d times, want once per layer (%d)", len(got), m.Cfg.NLayers)
	}
}

type combinerFunc func(out, lse []float32, rows, D int) error

func (f combinerFunc) Combine(out, lse []float32, rows, D int) error { return f(out, lse, rows, D) }

// Ring attention in one process (two shards, no communication) is exact.
func TestRingOneRankEqualsGlobal(t *testing.T) {
	m := testModel(t)
	for _, n := range []int{2, 7, 20} {
		ctx := randTokens(n, m.Cfg.VocabSize, 8)
		q := randTokens(3, m.Cfg.VocabSize, 9)
		g := globalLogits(t, m, ctx, q)
		lay, err := RingLayout(n, 1)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWorker(m, 0, true, 32, weights.F32)
		var toks [][]int
		for _, b := range lay.Of(0) {
			toks = append(toks, ctx[b.Start:b.Start+b.Len])
		}
		if err := w.EncodeRing(nil, lay.Of(0), toks); err != nil {
			t.Fatal(err)
		}
		r := queryLogits(t, w, q, n)
		if d := maxDiff(g, r); d > 1e-4 {
			t.Fatalf("n=%d: ring logits differ from global by %g", n, d)
		}
	}
}

func TestRingLayoutBalanced(t *testing.T) {
	l, err := RingLayout(80, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][2]int{0: {0, 7}, 1: {1, 6}, 2: {2, 5}, 3: {3, 4}}
	for r, w := range want {
		b := l.Of(r)
		if len(b) != 2 || b[0].Index != w[0] || b[1].Index != w[1] || b[0].Len != 10 {
			t.Fatalf("rank %d holds %+v, want shards %v of 10 tokens", r, b, w)
		}
	}
	if _, err := RingLayout(5, 4); err == nil {
		t.Fatal("5 tokens over 4 ranks (8 shards) must be refused")
	}
}

// A reserved query cache is filled in place: no reallocation (which would
// hold two copies at once) while the reserve lasts, and the same logits.
func TestReserveQueryFillsInPlace(t *testing.T) {
	m := testModel(t)
	ctx, q := randTokens(20, m.Cfg.VocabSize, 3), randTokens(4, m.Cfg.VocabSize, 4)
	want := globalLogits(t, m, ctx, q)
	w := NewWorker(m, 0, true, 24, weights.F32)
	w.ReserveQuery(24)
	k0 := &hkv(w.Query).K[0].F[0]
	if err := w.Step(ctx, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := queryLogits(t, w, q, len(ctx))
	if &hkv(w.Query).K[0].F[0] != k0 || hkv(w.Query).K[0].Cap != 24 {
		t.Fatalf("query cache reallocated (capacity %d tokens, want 24)", hkv(w.Query).K[0].Cap)
	}
	if d := maxDiff(got, want); d > 1e-6 {
		t.Fatalf("logits differ from an unreserved worker's by %g", d)
	}
	other := NewWorker(m, 1, false, 8, weights.F32)
	if other.ReserveQuery(8); other.Query != nil {
		t.Fatal("a rank that is not the host reserved a query cache")
	}
}

// Phase 1 reports its progress in token-layers: rising, ending at the
// total, which counts the anchor only on a rank that must encode it.
func TestPhase1Progress(t *testing.T) {
	m := testModel(t)
	ctx := randTokens(40, m.Cfg.VocabSize, 5)
	L := int64(m.Cfg.NLayers)
	for _, tc := range []struct {
		name   string
		blocks []int // block indexes this rank holds (block 10, anchor 6)
		want   int64 // total token-layers
	}{
		{"holds B0", []int{0, 1}, 20 * L},
		{"encodes the anchor", []int{2, 3}, (20 + 6) * L},
	} {
		lay, err := NewLayout(len(ctx), 10, 6, 1)
		if err != nil {
			t.Fatal(err)
		}
		all := lay.Of(0)
		var blocks []Block
		var toks [][]int
		for _, i := range tc.blocks {
			b := all[i]
			blocks = append(blocks, b)
			toks = append(toks, ctx[b.Start:b.Start+b.Len])
		}
		w := NewWorker(m, 0, true, 10, weights.F32)
		var last, total int64
		calls := 0
		w.Progress = func(done, tot int64) {
			if done < last || done > tot {
				t.Fatalf("%s: progress %d of %d after %d", tc.name, done, tot, last)
			}
			last, total = done, tot
			calls++
		}
		if err := w.EncodeBlocks(ctx[:6], blocks, toks); err != nil {
			t.Fatal(err)
		}
		if total != tc.want || last != total || calls < 2*int(L) {
			t.Fatalf("%s: ended at %d of %d after %d calls, want %d of %d", tc.name, last, total, calls, tc.want, tc.want)
		}
	}
}

// countingCompute counts the tokens that go through layer 0's wq: one per
// token per forward pass.
type countingCompute struct {
	layers.Compute
	wq     *weights.Tensor
	tokens int
}

func (c *countingCompute) MatMul(out, x []float32, w *weights.Tensor, n int) {
	if w == c.wq {
		c.tokens += n
	}
	c.Compute.MatMul(out, x, w, n)
}

// The anchor is the first a tokens of B_0, so a rank holding B_0 takes
// the anchor's K/V from B_0's first rows, also when the anchor is exactly
// as long as B_0 (the paper's default): each context token goes through
// the model once. A rank without B_0 runs the anchor once more, whatever
// the number of its blocks. Phase 1's progress counts exactly that work.
func TestAnchorFromB0(t *testing.T) {
	m := testModel(t)
	cc := &countingCompute{Compute: m.C, wq: &m.W.Layers[0].WQ}
	m.C = cc
	ctx := randTokens(32, m.Cfg.VocabSize, 6)
	L := int64(m.Cfg.NLayers)
	for _, tc := range []struct {
		name   string
		b, a   int
		blocks []int // block indexes this rank holds
		tokens int   // tokens run through the model
	}{
		{"holds B0, anchor = block", 8, 8, []int{0, 1, 2, 3}, 32},
		{"holds B0, anchor < block", 8, 5, []int{0, 1, 2, 3}, 32},
		{"holds B0 only", 8, 8, []int{0}, 8},
		{"without B0, anchor = block", 8, 8, []int{1, 2, 3}, 24 + 8},
		{"without B0, one block", 8, 8, []int{3}, 8 + 8},
		{"no anchor", 8, 0, []int{1, 2}, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lay, err := NewLayout(len(ctx), tc.b, tc.a, 1)
			if err != nil {
				t.Fatal(err)
			}
			var blocks []Block
			var toks [][]int
			for _, i := range tc.blocks {
				b := lay.Blocks[i]
				blocks = append(blocks, b)
				toks = append(toks, ctx[b.Start:b.Start+b.Len])
			}
			w := NewWorker(m, 0, true, tc.b, weights.F32)
			var last, total int64
			w.Progress = func(done, tot int64) { last, total = done, tot }
			cc.tokens = 0
			if err := w.EncodeBlocks(ctx[:tc.a], blocks, toks); err != nil {
				t.Fatal(err)
			}
			if cc.tokens != tc.tokens {
				t.Fatalf("%d tokens through the model, want %d", cc.tokens, tc.tokens)
			}
			if want := int64(tc.tokens) * L; total != want || last != want || w.prog.done != want {
				t.Fatalf("progress ended at %d of %d (%d counted), want %d of %d", last, total, w.prog.done, want, want)
			}
		})
	}
}

// hkv is a CPU backend's cache as the host cache it is.
func hkv(c layers.Cache) *KV { return layers.HostCache(c) }
