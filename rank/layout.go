// Package rank is one rank's work in Star Attention: phase 1 encodes the
// rank's context blocks (each behind the anchor) into a local KV cache with
// no communication; phase 2 runs query and generated tokens through every
// layer, attending to the local cache and merging partial attentions with
// the other ranks' through a Combiner.
package rank

import (
	"fmt"
	"sort"
)

// Block is one contiguous piece of the context.
type Block struct {
	Index int // k: B_k
	Start int // s_k: global position of its first token
	Len   int // |B_k| (the last block may be shorter)
	Rank  int // rank that encodes and holds it
}

// Layout cuts a context of N tokens into blocks of BlockSize and assigns
// them to Ranks as contiguous groups (rank 0 gets B_0 and is the query host).
type Layout struct {
	N          int // context tokens (BOS included)
	BlockSize  int // b
	AnchorSize int // a <= b
	Ranks      int // P
	Blocks     []Block
}

// NewLayout checks the sizes and assigns blocks: with nb blocks over P
// ranks, rank r gets nb/P blocks, plus one if r < nb%P; ranks beyond nb hold
// none.
func NewLayout(n, blockSize, anchorSize, ranks int) (Layout, error) {
	switch {
	case n <= 0:
		return Layout{}, fmt.Errorf("empty context: nothing to encode")
	case blockSize <= 0:
		return Layout{}, fmt.Errorf("block size %d must be positive", blockSize)
	case anchorSize < 0:
		return Layout{}, fmt.Errorf("anchor size %d must not be negative", anchorSize)
	case anchorSize > blockSize:
		return Layout{}, fmt.Errorf("anchor size %d exceeds block size %d; the anchor is a prefix of the first block, so use --anchor-size <= --block-size", anchorSize, blockSize)
	case ranks <= 0:
		return Layout{}, fmt.Errorf("rank count %d must be positive", ranks)
	}
	l := Layout{N: n, BlockSize: blockSize, AnchorSize: anchorSize, Ranks: ranks}
	nb := (n + blockSize - 1) / blockSize
	base, extra := nb/ranks, nb%ranks
	k := 0
	for r := 0; r < ranks; r++ {
		cnt := base
		if r < extra {
			cnt++
		}
		for i := 0; i < cnt; i++ {
			s := k * blockSize
			l.Blocks = append(l.Blocks, Block{Index: k, Start: s, Len: min(blockSize, n-s), Rank: r})
			k++
		}
	}
	return l, nil
}

// Of returns the blocks rank r holds, in order. Blocks are grouped by rank
// in rank order, so the group is found by binary search: sizing every rank
// of a large layout (star inspect --ranks) stays linear.
func (l Layout) Of(r int) []Block {
	i := sort.Search(len(l.Blocks), func(i int) bool { return l.Blocks[i].Rank >= r })
	j := i
	for j < len(l.Blocks) && l.Blocks[j].Rank == r {
		j++
	}
	if i == j {
		return nil
	}
	return append([]Block(nil), l.Blocks[i:j]...)
}

// NeedsAnchor reports whether rank r encodes any block behind the anchor.
func (l Layout) NeedsAnchor(r int) bool {
	for _, b := range l.Of(r) {
		if b.Index > 0 && l.AnchorSize > 0 {
			return true
		}
	}
	return false
}

// EncodesAnchor reports whether rank r runs the anchor through the model
// itself: it needs the anchor and does not hold B_0, whose first rows
// would give the anchor's K/V.
func (l Layout) EncodesAnchor(r int) bool { return encodesAnchor(l.Of(r), l.AnchorSize) }

// encodesAnchor is EncodesAnchor for the given blocks and anchor length a.
func encodesAnchor(blocks []Block, a int) bool {
	need, fromB0 := false, false
	for _, b := range blocks {
		need = need || (b.Index > 0 && a > 0)
		fromB0 = fromB0 || (b.Index == 0 && a <= b.Len)
	}
	return need && !fromB0
}

// MaxBlockLen is the longest block.
func (l Layout) MaxBlockLen() int { return min(l.BlockSize, l.N) }
