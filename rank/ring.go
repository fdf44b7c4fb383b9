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
	rp := &ringPass{comm: comm, P: 1, blocks: blocks}
	if comm != nil {
		rp.P, rp.me = comm.Size(), comm.Rank()
	}
	seq, pos, err := ringTokens(blocks, toks)
	if err != nil {
		return err
	}
	if len(seq) == 0 || len(blocks) > 2 {
		return fmt.Errorf("ring attention: rank %d holds %d shards and %d tokens", rp.me, len(blocks), len(seq))
	}
	if len(seq) > w.acts.Cap() {
		return fmt.Errorf("ring attention: %d tokens exceed the worker capacity %d", len(seq), w.acts.Cap())
	}
	w.Blocks, w.KV = blocks, nil
	// The shards' K/V are kept on the host while the ring runs (its
	// messages are host memory), then handed to the backend.
	rp.keep = nil
	for _, b := range blocks {
		rp.keep = append(rp.keep, newKV(c, w.DType, b.Len))
	}
	w.prog.done, w.prog.total = 0, int64(len(seq)*c.NLayers)
	rp.alloc(w.M.Shape(), len(seq))
	layer := func(out, q, k, v []float32) error {
		w.keepAndPack(rp, rp.l, k, v)
		if err := w.ringLayer(rp, q); err != nil {
			return err
		}
		copy(out, rp.acc)
		return nil
	}
	attend := func(l int, a layers.Attn) error {
		rp.l = l
		if err := a.Host(layer); err != nil {
			return err
		}
		w.progress(int64(l * a.N()))
		return nil
	}
	if err := w.B.Run(w.acts, seq, pos, attend); err != nil {
		return err
	}
	for i, b := range blocks {
		rp.keep[i].Len = b.Len
		kv, err := w.B.Upload(rp.keep[i])
		if err != nil {
			for _, c := range w.KV {
				c.Free()
			}
			w.KV = nil
			return fmt.Errorf("shard %d: K/V to %s: %w", b.Index, w.B.Name(), err)
		}
		w.KV = append(w.KV, kv)
	}
	w.prog.done = w.prog.total
	w.progress(0)
	return nil
}

// ringTokens concatenates the tokens of this rank's shards, with their
// positions in the context.
func ringTokens(blocks []Block, toks [][]int) (seq, pos []int, err error) {
	for i, b := range blocks {
		if len(toks[i]) != b.Len {
			return nil, nil, fmt.Errorf("shard %d: %d tokens given, layout says %d", b.Index, len(toks[i]), b.Len)
		}
		seq = append(seq, toks[i]...)
		for j := 0; j < b.Len; j++ {
			pos = append(pos, b.Start+j)
		}
	}
	return seq, pos, nil
}

// ringPass is the state of one rank's ring attention: its place in the
// ring, its shards, and the buffers of a layer's pass.
type ringPass struct {
	comm        collective.Comm // nil: one process
	P, me       int
	blocks      []Block   // this rank's shards, which are also its queries
	maxRows     int       // K/V rows a message has room for
	cur, next   []float32 // the message in hand and the one arriving: ringMeta, then K and V rows
	acc, accL   []float32 // [n, H*D], [n, H] running merged attention of this rank's n tokens
	part, partL []float32 // one step's partial attention, same shapes
	keep        []*KV     // this rank's shards' K/V, on the host, as the layers make them
	l           int       // the layer in progress
}

// alloc makes the buffers for n tokens of attention shape sh.
func (rp *ringPass) alloc(sh layers.AttnShape, n int) {
	kvd := sh.HKV * sh.D
	rp.maxRows = 2 * rp.blocks[0].Len // every rank's message has room for two full shards
	msgLen := ringMeta + 2*rp.maxRows*kvd
	rp.cur, rp.next = make([]float32, msgLen), make([]float32, msgLen)
	rp.acc, rp.accL = make([]float32, n*sh.H*sh.D), make([]float32, n*sh.H)
	rp.part, rp.partL = make([]float32, n*sh.H*sh.D), make([]float32, n*sh.H)
}

// keepAndPack keeps this rank's K/V of layer l (rounded to the cache's
// dtype, as every rank then attends to them) and packs them as the
// layer's first message.
func (w *Worker) keepAndPack(rp *ringPass, l int, k, v []float32) {
	kvd := w.M.Cfg.KVDim()
	off := 0
	clear(rp.cur[:ringMeta])
	layers.RoundKV(w.DType, k)
	layers.RoundKV(w.DType, v)
	for i, b := range rp.blocks {
		rp.keep[i].K[l].Append(k[off*kvd:(off+b.Len)*kvd], b.Len)
		rp.keep[i].V[l].Append(v[off*kvd:(off+b.Len)*kvd], b.Len)
		rp.cur[2*i], rp.cur[2*i+1] = float32(b.Start), float32(b.Len)
		off += b.Len
	}
	rows := off
	copy(rp.cur[ringMeta:], k[:rows*kvd])
	copy(rp.cur[ringMeta+rp.maxRows*kvd:], v[:rows*kvd])
}

// ringLayer runs one layer's P steps from the message in hand: each step
// passes the message on (non-blocking) while this rank attends its queries
// q to it, then takes the next; the merged result is in rp.acc, rp.accL.
func (w *Worker) ringLayer(rp *ringPass, q []float32) error {
	for i := range rp.accL {
		rp.accL[i] = float32(math.Inf(-1))
	}
	clear(rp.acc)
	P, me := rp.P, rp.me
	for step := 0; step < P; step++ {
		var sreq, rreq collective.Request
		if step < P-1 { // pass what we hold on while we compute with it
			var err error
			if sreq, err = rp.comm.IsendF32(rp.cur, (me+1)%P, ringTag); err != nil {
				return fmt.Errorf("ring send: %w", err)
			}
			if rreq, err = rp.comm.IrecvF32(rp.next, (me+P-1)%P, ringTag); err != nil {
				return fmt.Errorf("ring receive: %w", err)
			}
		}
		w.ringStep(rp.acc, rp.accL, rp.part, rp.partL, q, rp.cur, rp.blocks, rp.maxRows)
		if step < P-1 {
			if err := sreq.Wait(); err != nil {
				return fmt.Errorf("ring send: %w", err)
			}
			if err := rreq.Wait(); err != nil {
				return fmt.Errorf("ring receive: %w", err)
			}
			rp.cur, rp.next = rp.next, rp.cur
		}
	}
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
