package rank

import (
	"fmt"
	"math"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/layers"
)

// Ring attention, the exact baseline the paper compares with: the context
// is cut into 2P shards and rank i holds shards i and 2P-1-i, which evens
// out the causal work. Every layer, each rank's K/V travel around the ring
// in P-1 steps (non-blocking sends and receives overlapped with the
// attention of the K/V at hand); each step's partial attention is merged
// into the running result, and shards wholly in a query shard's future are
// skipped. Afterwards each rank keeps its shards' K/V and phase 2 is Star's.

// RingLayout cuts n context tokens into 2P shards for P ranks.
func RingLayout(n, ranks int) (Layout, error) {
	if ranks <= 0 {
		return Layout{}, fmt.Errorf("rank count %d must be positive", ranks)
	}
	if n < 2*ranks {
		return Layout{}, fmt.Errorf("a %d-token context is too short for ring attention over %d ranks (needs at least %d)", n, ranks, 2*ranks)
	}
	s := (n + 2*ranks - 1) / (2 * ranks)
	l := Layout{N: n, BlockSize: s, Ranks: ranks}
	for r := 0; r < ranks; r++ {
		for _, k := range []int{r, 2*ranks - 1 - r} {
			start := k * s
			if start >= n {
				continue
			}
			l.Blocks = append(l.Blocks, Block{Index: k, Start: start, Len: min(s, n-start), Rank: r})
		}
	}
	return l, nil
}

const ringTag = 29

// ringMeta is the number of floats that head a ring message: per shard
// (at most 2) its start and length.
const ringMeta = 4

// EncodeRing is ring attention's phase 1 for this rank's shards (blocks,
// from RingLayout, with their tokens toks). comm may be nil in one process.
func (w *Worker) EncodeRing(comm collective.Comm, blocks []Block, toks [][]int) error {
	c := &w.M.Cfg
	kvd, sh := c.KVDim(), w.M.Shape()
	P := 1
	if comm != nil {
		P = comm.Size()
	}
	me := 0
	if comm != nil {
		me = comm.Rank()
	}
	var seq, pos []int
	for i, b := range blocks {
		if len(toks[i]) != b.Len {
			return fmt.Errorf("shard %d: %d tokens given, layout says %d", b.Index, len(toks[i]), b.Len)
		}
		seq = append(seq, toks[i]...)
		for j := 0; j < b.Len; j++ {
			pos = append(pos, b.Start+j)
		}
	}
	if len(seq) == 0 || len(blocks) > 2 {
		return fmt.Errorf("ring attention: rank %d holds %d shards and %d tokens", me, len(blocks), len(seq))
	}
	if len(seq) > w.st.Cap {
		return fmt.Errorf("ring attention: %d tokens exceed the worker capacity %d", len(seq), w.st.Cap)
	}
	w.Blocks, w.KV = blocks, nil
	for _, b := range blocks {
		w.KV = append(w.KV, newKV(c.NLayers, b.Len, kvd))
	}
	w.prog.done, w.prog.total = 0, int64(len(seq)*c.NLayers)
	maxRows := 2 * blocks[0].Len // every rank's message has room for two full shards
	msgLen := ringMeta + 2*maxRows*kvd
	cur, next := make([]float32, msgLen), make([]float32, msgLen)
	n := len(seq)
	acc, accL := make([]float32, n*sh.H*sh.D), make([]float32, n*sh.H)
	part, partL := make([]float32, n*sh.H*sh.D), make([]float32, n*sh.H)
	attend := func(l int, out, q, k, v []float32, nt int) error {
		// keep this rank's K/V and pack them as the first message
		off := 0
		clear(cur[:ringMeta])
		for i, b := range blocks {
			w.KV[i].K[l] = append(w.KV[i].K[l], k[off*kvd:(off+b.Len)*kvd]...)
			w.KV[i].V[l] = append(w.KV[i].V[l], v[off*kvd:(off+b.Len)*kvd]...)
			cur[2*i], cur[2*i+1] = float32(b.Start), float32(b.Len)
			off += b.Len
		}
		rows := off
		copy(cur[ringMeta:], k[:rows*kvd])
		copy(cur[ringMeta+maxRows*kvd:], v[:rows*kvd])
		for i := range accL {
			accL[i] = float32(math.Inf(-1))
		}
		clear(acc)
		for step := 0; step < P; step++ {
			var sreq, rreq collective.Request
			if step < P-1 { // pass what we hold on while we compute with it
				var err error
				if sreq, err = comm.IsendF32(cur, (me+1)%P, ringTag); err != nil {
					return fmt.Errorf("ring send: %w", err)
				}
				if rreq, err = comm.IrecvF32(next, (me+P-1)%P, ringTag); err != nil {
					return fmt.Errorf("ring receive: %w", err)
				}
			}
			w.ringStep(acc, accL, part, partL, q, cur, blocks, maxRows)
			if step < P-1 {
				if err := sreq.Wait(); err != nil {
					return fmt.Errorf("ring send: %w", err)
				}
				if err := rreq.Wait(); err != nil {
					return fmt.Errorf("ring receive: %w", err)
				}
				cur, next = next, cur
			}
		}
		copy(out, acc)
		w.progress(int64(l * nt))
		return nil
	}
	if err := w.M.Forward(w.st, seq, pos, attend); err != nil {
		return err
	}
	for i, b := range blocks {
		w.KV[i].Len = b.Len
	}
	w.prog.done = w.prog.total
	w.progress(0)
	return nil
}

// ringStep attends this rank's query shards to the K/V shards of one ring
// message and merges the partials into (acc, accL).
func (w *Worker) ringStep(acc, accL, part, partL, q, msg []float32, qBlocks []Block, maxRows int) {
	sh := w.M.Shape()
	kvd := sh.HKV * sh.D
	qd := sh.H * sh.D
	keys, vals := msg[ringMeta:ringMeta+maxRows*kvd], msg[ringMeta+maxRows*kvd:]
	qoff := 0
	for _, qb := range qBlocks {
		koff := 0
		for s := 0; s < 2; s++ {
			kStart, kLen := int(msg[2*s]), int(msg[2*s+1])
			if kLen == 0 {
				continue
			}
			kRows := koff
			koff += kLen
			if kStart > qb.Start { // wholly in the future of this query shard
				continue
			}
			causal := kStart == qb.Start // the shard itself
			o, lse := part[qoff*qd:(qoff+qb.Len)*qd], partL[qoff*sh.H:(qoff+qb.Len)*sh.H]
			layers.Attention(w.M.C, o, lse, q[qoff*qd:(qoff+qb.Len)*qd],
				keys[kRows*kvd:(kRows+kLen)*kvd], vals[kRows*kvd:(kRows+kLen)*kvd], qb.Len, kLen, sh, causal)
			layers.MergeInto(acc[qoff*qd:(qoff+qb.Len)*qd], accL[qoff*sh.H:(qoff+qb.Len)*sh.H], o, lse, sh.D)
		}
		qoff += qb.Len
	}
}
