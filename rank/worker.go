package rank

import (
	"fmt"
	"math/rand/v2"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// KV holds the keys and values (after RoPE) of a run of tokens, per
// layer, in the run's K/V dtype and head-major (layers.KVBuf: one kv
// head's keys are one contiguous run, which a decode step streams).
type KV struct {
	K, V []*layers.KVBuf // [NLayers], each [HKV][Cap][HeadDim]
	Len  int             // tokens held in every layer
}

// newKV makes an empty cache of capacity tokens for model c in dtype dt.
func newKV(c *weights.Config, dt weights.DType, capacity int) *KV {
	kv := &KV{K: make([]*layers.KVBuf, c.NLayers), V: make([]*layers.KVBuf, c.NLayers)}
	for l := range kv.K {
		kv.K[l] = layers.NewKVBuf(dt, capacity, c.NKVHeads, c.HeadDim)
		kv.V[l] = layers.NewKVBuf(dt, capacity, c.NKVHeads, c.HeadDim)
	}
	return kv
}

// Bytes is the memory the cache holds.
func (kv *KV) Bytes() int64 {
	var n int64
	for l := range kv.K {
		n += kv.K[l].Bytes() + kv.V[l].Bytes()
	}
	return n
}

// DType is the cache's element type.
func (kv *KV) DType() weights.DType { return kv.K[0].DType }

// Combiner merges a rank's partial attention with every other rank's. On
// return out and lse hold the exact attention over all ranks' keys, the
// same on every rank. rows = tokens·heads; out: [rows*D], lse: [rows].
type Combiner interface {
	Combine(out, lse []float32, rows, D int) error
}

// Worker is one rank's model, KV caches and scratch.
type Worker struct {
	M      *layers.Model
	Rank   int           // this rank's id
	Host   bool          // query host: holds the query/generated KV and computes logits
	DType  weights.DType // of every K/V cache (layers.KVDTypes)
	Blocks []Block       // blocks this rank encodes
	KV     []*KV         // one cache per block, same order
	Query  *KV           // query/generated tokens' KV (host only)
	Comb   Combiner      // nil: single process
	// Progress, if set, is told phase 1's progress in token-layers (one
	// token through one layer) after each layer: done of total.
	Progress func(done, total int64)
	prog     struct{ done, total int64 }

	st      *layers.State
	anchor  *KV       // anchor K/V, computed once per rank
	kbuf    []float32 // [(a+b)*KVDim] anchor ; block keys of one layer, token-major float32
	vbuf    []float32 // same for values
	lse     []float32 // [Cap*H]
	partO   [][]float32
	partLSE [][]float32
	logits  []float32 // host: [VocabSize] the last position's logits
	// anchorPeak is the anchor K/V this worker held while encoding (gone
	// afterwards: the footprint counts it).
	anchorPeak int64
}

// NewWorker prepares rank `rank`'s worker, its K/V caches of dtype kv.
// capacity bounds the tokens run through the model at once (block length,
// query chunk). Its scratch grows as it is used; NewWorkerFor allocates a
// document's up front.
func NewWorker(m *layers.Model, rank int, host bool, capacity int, kv weights.DType) *Worker {
	return &Worker{M: m, Rank: rank, Host: host, DType: kv, st: m.NewState(capacity)}
}

// NewWorkerFor prepares rank r's worker for layout lay, K/V of dtype kv,
// with every buffer its plan sizes (see Footprint) allocated now: the
// query cache of reserve tokens on the host, activations of capacity
// tokens, partials of chunk rows, the anchor ; block key buffers. Blocks'
// and the anchor's K/V are allocated as they are encoded, of exactly
// their length.
func NewWorkerFor(m *layers.Model, lay Layout, r, capacity, chunk, reserve int, kv weights.DType) *Worker {
	p := planWorker(lay, r, capacity, chunk, reserve, kv)
	w := NewWorker(m, r, p.host, p.capacity, kv)
	w.ReserveQuery(p.reserve)
	w.ensureScratch(p.capacity, 0)
	w.ensureScratch(p.chunk, p.parts)
	if kvd := m.Cfg.KVDim(); p.keyRows > 0 {
		w.kbuf, w.vbuf = make([]float32, 0, p.keyRows*kvd), make([]float32, 0, p.keyRows*kvd)
	}
	if p.host {
		w.logits = make([]float32, m.Cfg.VocabSize)
	}
	return w
}

// Logits is the host's buffer for one position's logits ([VocabSize]).
func (w *Worker) Logits() []float32 {
	if w.logits == nil {
		w.logits = make([]float32, w.M.Cfg.VocabSize)
	}
	return w.logits
}

// held is what the worker's buffers take now, by part (as Footprint
// counts them).
func (w *Worker) held() held {
	var h held
	for _, kv := range w.KV {
		h.kv += kv.Bytes()
	}
	if w.Query != nil {
		h.kv += w.Query.Bytes()
	}
	h.state = w.M.StateBytes(w.st.Cap)
	h.lse = 4 * int64(cap(w.lse))
	for p := range w.partO {
		h.partials += 4 * int64(cap(w.partO[p])+cap(w.partLSE[p]))
	}
	h.keys = 4 * int64(cap(w.kbuf)+cap(w.vbuf))
	h.logits = 4 * int64(cap(w.logits))
	return h
}

// ReserveQuery sizes the host's query cache for tokens tokens (query,
// generated, and under global attention the context) before its first
// use; beyond that it grows. No-op on other ranks or once it exists.
func (w *Worker) ReserveQuery(tokens int) {
	if w.Host && w.Query == nil && tokens > 0 {
		w.Query = newKV(&w.M.Cfg, w.DType, tokens)
	}
}

// Capacity is the most tokens one Forward call takes.
func (w *Worker) Capacity() int { return w.st.Cap }

// EncodeBlocks is phase 1: anchor holds the first a context tokens, blocks
// this rank's blocks and toks their tokens. B_0 is encoded alone; every
// other block attends, causally, to the anchor followed by itself. The
// anchor's K/V are computed once, reused for each block, and never kept in
// a block's cache.
func (w *Worker) EncodeBlocks(anchor []int, blocks []Block, toks [][]int) error {
	c := &w.M.Cfg
	w.Blocks, w.KV = blocks, nil
	needAnchor := false
	for i, b := range blocks {
		if len(toks[i]) != b.Len {
			return fmt.Errorf("block %d: %d tokens given, layout says %d", b.Index, len(toks[i]), b.Len)
		}
		if b.Len > w.st.Cap {
			return fmt.Errorf("block %d of %d tokens exceeds the worker capacity %d", b.Index, b.Len, w.st.Cap)
		}
		needAnchor = needAnchor || (b.Index > 0 && len(anchor) > 0)
	}
	w.anchor = nil
	w.prog.done, w.prog.total = 0, 0
	for _, b := range blocks {
		w.prog.total += int64(b.Len * c.NLayers)
	}
	if encodesAnchor(blocks, len(anchor)) {
		w.prog.total += int64(len(anchor) * c.NLayers)
	}
	// The anchor is the first a tokens of B_0 and its K/V are B_0's first a
	// rows: a rank holding B_0 encodes B_0 first and takes them from there;
	// any other rank encodes the anchor once.
	order := make([]int, 0, len(blocks))
	for i, b := range blocks {
		if b.Index == 0 {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	w.KV = make([]*KV, len(blocks))
	for _, i := range order {
		b := blocks[i]
		if needAnchor && w.anchor == nil && b.Index > 0 {
			kv := newKV(c, w.DType, len(anchor))
			if err := w.encode(kv, nil, anchor, 0); err != nil {
				return fmt.Errorf("anchor: %w", err)
			}
			w.anchor, w.anchorPeak = kv, kv.Bytes()
		}
		kv := newKV(c, w.DType, b.Len)
		var a *KV
		if b.Index > 0 {
			a = w.anchor
		}
		if err := w.encode(kv, a, toks[i], b.Start); err != nil {
			return fmt.Errorf("block %d: %w", b.Index, err)
		}
		w.KV[i] = kv
		if b.Index == 0 && needAnchor && len(anchor) <= kv.Len {
			w.anchor = kv.prefix(len(anchor))
		}
	}
	w.anchor = nil // dropped: only the blocks' K/V stay
	return nil
}

// prefix is a view of the first n tokens of kv (the same storage).
func (kv *KV) prefix(n int) *KV {
	p := &KV{K: make([]*layers.KVBuf, len(kv.K)), V: make([]*layers.KVBuf, len(kv.V)), Len: n}
	for l := range kv.K {
		k, v := *kv.K[l], *kv.V[l]
		k.Len, v.Len = n, n
		p.K[l], p.V[l] = &k, &v
	}
	return p
}

// widen writes tokens [0, n) of b into dst [n][HKV*D], token-major
// float32 (the layout of a forward pass's fresh keys and values).
func widen(dst []float32, b *layers.KVBuf, n int) {
	sp := b.Span(0, n)
	kvd := b.HKV * b.D
	for j := 0; j < n; j++ {
		for h := 0; h < b.HKV; h++ {
			sp.Row(dst[j*kvd+h*b.D:j*kvd+(h+1)*b.D], h, j)
		}
	}
}

// encode runs toks at positions start.. through the model with causal
// attention over [prefix ; toks], appending toks' K/V to kv. The fresh
// keys and values are rounded to the cache's dtype before they are
// attended to, so that phase 1 sees what the cache holds.
func (w *Worker) encode(kv, prefix *KV, toks []int, start int) error {
	c := &w.M.Cfg
	kvd, sh := c.KVDim(), w.M.Shape()
	pos := make([]int, len(toks))
	for i := range pos {
		pos[i] = start + i
	}
	w.ensureScratch(len(toks), 0)
	if prefix != nil && prefix.Len > 0 {
		// sized once: growing by append would leave a dead copy behind
		if need := (prefix.Len + len(toks)) * kvd; cap(w.kbuf) < need {
			w.kbuf, w.vbuf = make([]float32, 0, need), make([]float32, 0, need)
		}
	}
	attend := func(l int, out, q, k, v []float32, n int) error {
		layers.RoundKV(w.DType, k)
		layers.RoundKV(w.DType, v)
		kv.K[l].Append(k, n)
		kv.V[l].Append(v, n)
		keys, vals, nk := k, v, n
		if prefix != nil && prefix.Len > 0 {
			a := prefix.Len
			w.kbuf, w.vbuf = w.kbuf[:(a+n)*kvd], w.vbuf[:(a+n)*kvd]
			widen(w.kbuf, prefix.K[l], a)
			widen(w.vbuf, prefix.V[l], a)
			copy(w.kbuf[a*kvd:], k)
			copy(w.vbuf[a*kvd:], v)
			keys, vals, nk = w.kbuf, w.vbuf, a+n
		}
		layers.Attention(w.M.C, out, w.lse[:n*sh.H], q, keys, vals, n, nk, sh, true)
		w.progress(int64(l * n))
		return nil
	}
	if err := w.M.Forward(w.st, toks, pos, attend); err != nil {
		return err
	}
	kv.Len += len(toks)
	w.prog.done += int64(len(toks) * c.NLayers)
	w.progress(0)
	return nil
}

// progress reports phase 1's token-layers done (plus extra in flight).
func (w *Worker) progress(extra int64) {
	if w.Progress != nil && w.prog.total > 0 {
		w.Progress(min(w.prog.done+extra, w.prog.total), w.prog.total)
	}
}

func (w *Worker) ensureScratch(n, parts int) {
	sh := w.M.Shape()
	if len(w.lse) < n*sh.H {
		w.lse = make([]float32, n*sh.H)
	}
	for len(w.partO) < parts {
		w.partO = append(w.partO, nil)
		w.partLSE = append(w.partLSE, nil)
	}
	for p := 0; p < parts; p++ {
		if len(w.partO[p]) < n*sh.H*sh.D {
			w.partO[p] = make([]float32, n*sh.H*sh.D)
			w.partLSE[p] = make([]float32, n*sh.H)
		}
	}
}

// TruncateQuery keeps the first n tokens of the query host's query cache
// and drops the rest (the previous query and its generated tokens), so
// another query can run on the same encoded context.
func (w *Worker) TruncateQuery(n int) {
	q := w.Query
	if q == nil {
		return
	}
	n = min(n, q.Len)
	for l := range q.K {
		q.K[l].Truncate(n)
		q.V[l].Truncate(n)
	}
	q.Len = n
}

// Step is phase 2 for n = len(toks) tokens at positions pos0..: every layer
// attends to this rank's blocks (one partial each, all keys visible) and,
// on the host, causally to the query cache, which grows by these tokens;
// partials are merged locally in block order (host's own last), then with
// the other ranks through Comb. Keys and values are read from the caches,
// head-major, in their dtype. On the host, logits receives the classifier
// output for the rows listed in rows ([len(rows), VocabSize]).
func (w *Worker) Step(toks []int, pos0 int, logits []float32, rows []int) error {
	c := &w.M.Cfg
	n := len(toks)
	if n == 0 {
		return fmt.Errorf("step: no tokens")
	}
	if n > w.st.Cap {
		return fmt.Errorf("step: %d tokens exceed the worker capacity %d", n, w.st.Cap)
	}
	if w.Host && w.Query == nil {
		w.Query = newKV(c, w.DType, n)
	}
	sh := w.M.Shape()
	parts := len(w.KV)
	if w.Host {
		parts++
	}
	w.ensureScratch(n, parts)
	pos := make([]int, n)
	for i := range pos {
		pos[i] = pos0 + i
	}
	rowsN, qd := n*sh.H, n*sh.H*sh.D
	outs, lses := w.partO[:parts], w.partLSE[:parts]
	for p := range outs {
		outs[p], lses[p] = outs[p][:qd], lses[p][:rowsN]
	}
	attend := func(l int, out, q, k, v []float32, n int) error {
		for b, kv := range w.KV {
			layers.AttentionKV(w.M.C, outs[b], lses[b], q, kv.K[l].All(), kv.V[l].All(), n, kv.Len, sh, false)
		}
		if w.Host {
			qk, qv := w.Query.K[l], w.Query.V[l]
			qk.Truncate(w.Query.Len) // a failed step may have left tokens in some layers
			qv.Truncate(w.Query.Len)
			qk.Append(k, n)
			qv.Append(v, n)
			layers.AttentionKV(w.M.C, outs[parts-1], lses[parts-1], q, qk.All(), qv.All(), n, qk.Len, sh, true)
		}
		lse := w.lse[:rowsN]
		layers.Merge(out, lse, outs, lses, n, sh.H, sh.D)
		if w.Comb != nil {
			if err := w.Comb.Combine(out, lse, rowsN, sh.D); err != nil {
				return err
			}
		}
		return nil
	}
	if err := w.M.Forward(w.st, toks, pos, attend); err != nil {
		return err
	}
	if w.Host {
		w.Query.Len += n
		if logits != nil {
			w.M.Logits(logits, w.st, rows)
		}
	}
	return nil
}

// CacheBytes is the memory held by this rank's KV caches.
func (w *Worker) CacheBytes() int64 {
	var n int64
	for _, kv := range w.KV {
		n += kv.Bytes()
	}
	if w.Query != nil {
		n += w.Query.Bytes()
	}
	return n
}

// FillRandom gives the worker blocks (and the host n0 tokens of its query
// cache, global attention's context) whose K/V are random finite values
// in [-1, 1) of its dtype, instead of encoding them: benchmarks time
// decode after a long context without running phase 1. seed makes the
// values.
func (w *Worker) FillRandom(blocks []Block, n0 int, seed uint64) {
	c := &w.M.Cfg
	w.Blocks, w.KV = blocks, make([]*KV, len(blocks))
	for i, b := range blocks {
		w.KV[i] = newKV(c, w.DType, b.Len)
		fillRandom(w.M.C, w.KV[i], b.Len, seed+uint64(b.Index)<<8)
	}
	if w.Host && n0 > 0 {
		w.ReserveQuery(n0)
		w.TruncateQuery(0)
		fillRandom(w.M.C, w.Query, n0, seed^0xfeed)
	}
}

// fillRandom appends n tokens of random values to every layer of kv, the
// layers shared out over c's threads.
func fillRandom(c layers.Compute, kv *KV, n int, seed uint64) {
	const chunk = 256 // tokens made at once
	b := kv.K[0]
	kvd := b.HKV * b.D
	c.Parallel(2*len(kv.K), func(lo, hi int) {
		x := make([]float32, chunk*kvd)
		for i := lo; i < hi; i++ {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			buf := kv.K[i/2]
			if i%2 == 1 {
				buf = kv.V[i/2]
			}
			for j := 0; j < n; j += chunk {
				m := min(chunk, n-j)
				for e := range x[:m*kvd] {
					x[e] = 2*r.Float32() - 1
				}
				buf.Append(x, m)
			}
		}
	})
	kv.Len += n
}
