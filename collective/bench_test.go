package collective_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/collective/collectivetest"
)

// Benchmarks of Local collectives on one attention step's partials: H heads
// of D values plus a log-sum-exp weight, i.e. H*(D+1) floats per rank.

const benchH, benchD = 32, 128

// benchRanks runs body b.N times on every rank of NewLocal(n) in lockstep.
func benchRanks(b *testing.B, n int, body func(c collective.Comm, buf []float32) error) {
	comms := collective.NewLocal(n)
	elem := benchD + 1
	b.SetBytes(int64(4 * benchH * elem))
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r, c := range comms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, benchH*elem)
			for i := 0; i < b.N && errs[r] == nil; i++ {
				for h := 0; h < benchH; h++ {
					buf[h*elem+benchD] = float32(r + h) // weights
				}
				if errs[r] = body(c, buf); errs[r] != nil {
					c.Abort(1)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalAllreduceMerge(b *testing.B) {
	for _, n := range []int{2, 4} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			benchRanks(b, n, func(c collective.Comm, buf []float32) error {
				return c.AllreduceF32(buf, benchD+1, collectivetest.MergeOp)
			})
		})
	}
}

func BenchmarkLocalGather(b *testing.B) {
	for _, n := range []int{2, 4} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			recv := make([]float32, n*benchH*(benchD+1))
			benchRanks(b, n, func(c collective.Comm, buf []float32) error {
				var out []float32
				if c.Rank() == 0 {
					out = recv
				}
				return c.GatherF32(buf, out, 0)
			})
		})
	}
}
