package rank

import (
	"fmt"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/layers"
)

// NewCombiner returns the Combiner for mode over comm.
func NewCombiner(comm collective.Comm, mode MergeMode) (Combiner, error) {
	switch mode {
	case MergeGather, MergeAllgather, MergeAllreduce:
		return &commCombiner{comm: comm, mode: mode}, nil
	}
	return nil, fmt.Errorf("unknown merge mode %q (use gather, allgather or allreduce)", mode)
}

// commCombiner exchanges packed (output, lse) rows: per layer and token,
// one vector of D values and one scalar per head from every rank.
type commCombiner struct {
	comm collective.Comm
	mode MergeMode
	send []float32 // [rows*(D+1)] this rank's packed partial
	recv []float32 // [P*rows*(D+1)] gathered partials
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func (c *commCombiner) Combine(out, lse []float32, rows, D int) error {
	P, me := c.comm.Size(), c.comm.Rank()
	n := rows * (D + 1)
	c.send = grow(c.send, n)
	layers.Pack(c.send, out[:rows*D], lse[:rows], D)
	switch c.mode {
	case MergeGather:
		if me == 0 {
			c.recv = grow(c.recv, P*n)
		}
		if err := c.comm.GatherF32(c.send, c.recv, 0); err != nil {
			return fmt.Errorf("gather partial attention: %w", err)
		}
		if me == 0 {
			layers.MergePacked(out[:rows*D], lse[:rows], c.recv, P, D)
		}
		if err := c.comm.BcastF32(out[:rows*D], 0); err != nil {
			return fmt.Errorf("broadcast merged attention: %w", err)
		}
	case MergeAllgather:
		c.recv = grow(c.recv, P*n)
		if err := c.comm.AllgatherF32(c.send, c.recv); err != nil {
			return fmt.Errorf("allgather partial attention: %w", err)
		}
		layers.MergePacked(out[:rows*D], lse[:rows], c.recv, P, D)
	case MergeAllreduce:
		if err := c.comm.AllreduceF32(c.send, D+1, mergeOp); err != nil {
			return fmt.Errorf("allreduce partial attention: %w", err)
		}
		layers.Unpack(out[:rows*D], lse[:rows], c.send, D)
	}
	return nil
}

// mergeOp is the merge as a reduction over packed elements of D+1 floats.
func mergeOp(in, inout []float32, elem int) { layers.MergePackedInto(in, inout, elem-1) }
