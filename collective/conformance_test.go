package collective_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/collective/collectivetest"
)

// The Local comm's run of the conformance suite (collectivetest); MPI's
// runs under mpirun (mpi_test.go).

func TestLocalConformance(t *testing.T) {
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			collectivetest.RunGroup(t, collective.NewLocal(n), collectivetest.Options{ExactFold: true}, 30*time.Second)
		})
	}
}

func TestSingle(t *testing.T) {
	c := collective.Single()
	if c.Rank() != 0 || c.Size() != 1 {
		t.Fatalf("Single: rank %d size %d", c.Rank(), c.Size())
	}
	if err := collectivetest.Run(c, collectivetest.Options{ExactFold: true}); err != nil {
		t.Fatal(err)
	}
}

// Mismatched collectives fail on every rank instead of hanging or
// silently corrupting.
func TestLocalMismatch(t *testing.T) {
	cases := []struct {
		name string
		fn   func(c collective.Comm) error
	}{
		{"bcast length", func(c collective.Comm) error { return c.Bcast(make([]byte, 16-8*(c.Rank()%2)), 0) }},
		{"bcast root", func(c collective.Comm) error { return c.BcastF32(make([]float32, 4), c.Rank()%2) }},
		{"different collectives", func(c collective.Comm) error {
			if c.Rank() == 1 {
				return c.Barrier()
			}
			return c.Bcast(make([]byte, 4), 0)
		}},
		{"gather recv length", func(c collective.Comm) error { return c.GatherF32(make([]float32, 2), make([]float32, 3), 0) }},
		{"allgather send length", func(c collective.Comm) error {
			return c.AllgatherF32(make([]float32, 1+c.Rank()), make([]float32, 2*(1+c.Rank())))
		}},
		{"allreduce length", func(c collective.Comm) error {
			return c.AllreduceF32(make([]float32, 2+2*c.Rank()), 2, collectivetest.AffineOp)
		}},
		{"reduce panics", func(c collective.Comm) error {
			return c.AllreduceF32(make([]float32, 2), 2, func(in, inout []float32, elem int) { panic("boom") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			comms := collective.NewLocal(2)
			errs := make([]error, len(comms))
			collectivetest.RunRanks(t, comms, time.Minute, func(c collective.Comm) error {
				errs[c.Rank()] = tc.fn(c) // no abort: the group must stay usable
				return nil
			})
			for r, err := range errs {
				if err == nil || errors.Is(err, collective.ErrClosed) {
					t.Errorf("rank %d: got %v, want a mismatch error", r, err)
				}
			}
			// The group is still usable afterwards.
			errs = collectivetest.RunRanks(t, comms, time.Minute, func(c collective.Comm) error { return c.Barrier() })
			for r, err := range errs {
				if err != nil {
					t.Errorf("rank %d: barrier after mismatch: %v", r, err)
				}
			}
		})
	}
}
