package jobs

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// bench with random K/V (no phase 1) and a list of K/V dtypes: one row
// per dtype and mode, each saying the dtype its caches had, the K/V bytes
// a decode step reads (context, query and half the generated tokens, in
// that dtype's size) and the bound counting them beside the weights; no
// NLL, since the K/V are not the model's.
func TestBenchRandomKV(t *testing.T) {
	cfg, _, err := weights.ReadDummyConfig("../configs/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	w, err := weights.NewDummy(cfg, weights.BF16, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(w, layers.NewCPU(2))
	if e.KVDType != weights.F16 {
		t.Fatalf("BF16 weights get %v K/V by default, want F16", e.KVDType)
	}
	const n, q, dec, bw, wbw = 300, 16, 4, 1e10, 7e9
	scans, bufs := 0, 0 // calls of WeightsReadBandwidth, ReadBandwidth
	o := BenchOptions{Contexts: []int{n}, Attentions: []rank.Attention{rank.Star, rank.Global}, QueryTokens: q, DecodeTokens: dec,
		ScoreTokens: 8, KVDTypes: []weights.DType{weights.F32, weights.BF16}, RandomKV: true, Seed: 1,
		ReadBandwidth: func() float64 { bufs++; return bw },
		WeightsReadBandwidth: func(regions [][]byte) float64 {
			var n int64
			for _, b := range regions {
				n += int64(len(b))
			}
			if n != w.DecodeBytes() {
				t.Errorf("the weights' rate is measured over %d bytes, want the %d a decode step reads", n, w.DecodeBytes())
			}
			scans++
			return wbw + float64(2*(scans%2)-1)*1e9 // 8e9 before a decode, 6e9 after: the bound takes their mean
		}}
	var rows []BenchRow
	if err := e.Bench(o, func(r BenchRow) { rows = append(rows, r) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"f32/global", "f32/star", "bf16/global", "bf16/star"}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %v", len(rows), want)
	}
	for i, r := range rows {
		dt := weights.F32
		if i >= 2 {
			dt = weights.BF16
		}
		kv := int64(n+q+(dec+1)/2) * rank.KVBytesPerToken(&cfg, dt)
		if got := r.KVDType + "/" + r.Attention; got != want[i] || r.Skipped != "" {
			t.Fatalf("row %d is %s (skipped: %q), want %s", i, got, r.Skipped, want[i])
		}
		// the weights at their own rate, the K/V at the buffer's
		bound := 1 / (float64(w.DecodeBytes())/wbw + float64(kv)/bw)
		if r.KVBytesPerStep != kv || math.Abs(r.DecodeBound-bound) > 1e-12*bound || r.MemBWGBs != bw/1e9 || r.WeightsBWGBs != wbw/1e9 {
			t.Fatalf("%s: %d K/V bytes a step, bound %g, bandwidths %g and %g GB/s; want %d, %g, %g and %g", want[i], r.KVBytesPerStep,
				r.DecodeBound, r.MemBWGBs, r.WeightsBWGBs, kv, bound, bw/1e9, wbw/1e9)
		}
		if !r.RandomKV || r.NLL != 0 || !(r.DecodeTPS > 0) || r.Context != n {
			t.Fatalf("%s: %+v: want random K/V, a decode speed and no NLL", want[i], r)
		}
	}
	if scans != 2*len(rows) || bufs != 1 {
		t.Fatalf("%d measurements of the weights' rate and %d of the buffer's for %d rows; want the weights' before and after each row's decode, the buffer's once",
			scans, bufs, len(rows))
	}
	if e.KVDType != weights.F16 {
		t.Fatalf("bench left the engine's K/V dtype at %v", e.KVDType)
	}
}

// A worker filled with random K/V holds exactly what its plan sizes, all
// of it finite and of its dtype, and decodes.
func TestFillRandomIsTheFootprint(t *testing.T) {
	cfg, _, err := weights.ReadDummyConfig("../configs/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	w, err := weights.NewDummy(cfg, weights.F32, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := layers.NewModel(w, layers.NewCPU(2))
	for _, dt := range layers.KVDTypes {
		t.Run(fmt.Sprint(dt), func(t *testing.T) {
			lay, err := rank.NewLayout(700, 256, 64, 2)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < 2; r++ {
				wk, err := rank.NewWorkerFor(layers.OnHost(m), lay, r, rank.Capacity(lay, 64), 64, rank.QueryReserve, dt)
				if err != nil {
					t.Fatal(err)
				}
				if err := wk.FillRandom(lay.Of(r), 0, 7); err != nil {
					t.Fatal(err)
				}
				f := rank.Footprint(m, 0, lay, r, rank.QueryReserve, rank.Capacity(lay, 64), 64, dt)
				if got := wk.CacheBytes(); got != f.KVBytes {
					t.Fatalf("rank %d holds %d bytes of K/V, the footprint counts %d", r, got, f.KVBytes)
				}
				for i, c := range wk.KV {
					kv := layers.HostCache(c)
					if kv.Len != lay.Of(r)[i].Len || kv.DType() != dt {
						t.Fatalf("rank %d block %d: %d tokens of %v, want %d of %v", r, i, kv.Len, kv.DType(), lay.Of(r)[i].Len, dt)
					}
					for l := range kv.K {
						if !kv.K[l].Finite(kv.Len) || !kv.V[l].Finite(kv.Len) {
							t.Fatalf("rank %d block %d layer %d: non-finite K/V", r, i, l)
						}
						if b := kv.V[l].HeadRaw(1, kv.Len); bytes.Count(b, []byte{0}) > len(b)/8 {
							t.Fatalf("rank %d block %d layer %d: %d of %d bytes zero: not filled", r, i, l, bytes.Count(b, []byte{0}), len(b))
						}
					}
				}
			}
		})
	}
}
