package rank

import (
	"fmt"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// The footprint is what the worker holds: for every K/V dtype and every
// rank of several layouts (B_0's rank, ranks that encode the anchor, a
// rank with no block, global attention), a worker made for the plan that
// runs phase 1, a query and generated tokens holds exactly the bytes
// Footprint counts for it, part by part, with nothing grown on the way;
// 16-bit K/V take half the bytes of float32.
func TestFootprintIsTheAllocation(t *testing.T) {
	m := testModel(t)
	const chunk, reserve = 24, 40
	cases := []struct {
		name string
		lay  func() (Layout, error)
	}{
		{"one block", func() (Layout, error) { return NewLayout(60, 60, 60, 1) }},
		{"blocks behind a short anchor", func() (Layout, error) { return NewLayout(100, 30, 10, 3) }},
		{"anchor = block, two per rank", func() (Layout, error) { return NewLayout(120, 20, 20, 3) }},
		{"no anchor", func() (Layout, error) { return NewLayout(90, 30, 0, 2) }},
		{"a rank without blocks", func() (Layout, error) { return NewLayout(50, 25, 5, 3) }},
		{"global", func() (Layout, error) { return Layout{N: 70}, nil }},
	}
	for _, dt := range layers.KVDTypes {
		for _, c := range cases {
			lay, err := c.lay()
			if err != nil {
				t.Fatal(err)
			}
			ctx := randTokens(max(lay.N, 1), m.Cfg.VocabSize, 5)
			ranks := max(lay.Ranks, 1)
			for r := 0; r < ranks; r++ {
				t.Run(fmt.Sprintf("%s/%s/rank%d", layers.KVDTypeName(dt), c.name, r), func(t *testing.T) {
					capacity, res := Capacity(lay, chunk), reserve
					if lay.Blocks == nil { // global: the context in the query cache
						capacity, res = min(chunk, lay.N), globalReserve(lay.N, m.Cfg.SeqLen)
					}
					w, err := NewWorkerFor(layers.OnHost(m), lay, r, capacity, chunk, res, dt)
					if err != nil {
						t.Fatal(err)
					}
					pos := 0
					if lay.Blocks == nil {
						for i := 0; i < lay.N; i += capacity {
							j := min(i+capacity, lay.N)
							if err := w.Step(ctx[i:j], i, nil, nil); err != nil {
								t.Fatal(err)
							}
						}
						pos = lay.N
					} else {
						mine := lay.Of(r)
						var toks [][]int
						for _, b := range mine {
							toks = append(toks, ctx[b.Start:b.Start+b.Len])
						}
						if err := w.EncodeBlocks(ctx[:lay.AnchorSize], mine, toks); err != nil {
							t.Fatal(err)
						}
						pos = lay.N
					}
					// a query of a chunk, then generated tokens one at a time
					q := randTokens(chunk, m.Cfg.VocabSize, 9)
					var logits []float32
					if w.Host {
						logits = w.Logits()
					}
					if err := w.Step(q, pos, logits, []int{chunk - 1}); err != nil {
						t.Fatal(err)
					}
					for i := 0; i < 5; i++ {
						if err := w.Step(q[i:i+1], pos+chunk+i, logits, []int{0}); err != nil {
							t.Fatal(err)
						}
					}
					want := planWorker(lay, r, capacity, chunk, res, dt).bytes(m)
					got := w.held()
					got.anchor = w.anchorPeak
					if got != want {
						t.Fatalf("the worker holds %+v, Footprint counts %+v", got, want)
					}
					f := Footprint(m, 0, lay, r, res, capacity, chunk, dt)
					if f.KVBytes != want.kv || f.AnchorBytes != want.anchor || f.ActivationBytes != want.activations()+m.ScratchBytes(capacity) {
						t.Fatalf("Footprint %+v does not add up the plan %+v", f, want)
					}
					f32 := Footprint(m, 0, lay, r, res, capacity, chunk, weights.F32)
					if dt != weights.F32 && (2*f.KVBytes != f32.KVBytes || 2*f.AnchorBytes != f32.AnchorBytes || f.KVDType != layers.KVDTypeName(dt)) {
						t.Fatalf("%v K/V %d bytes, anchor %d (%q): want half of float32's %d and %d", dt, f.KVBytes, f.AnchorBytes, f.KVDType, f32.KVBytes, f32.AnchorBytes)
					}
				})
			}
		}
	}
}
