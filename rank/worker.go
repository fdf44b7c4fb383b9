package rank

import (
	"fmt"
	"math/rand/v2"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// KV is a host K/V cache (layers.KV): per layer, head-major, in the
// run's K/V dtype.
type KV = layers.KV

// newKV makes an empty host cache of capacity tokens for model c in dtype dt.
func newKV(c *weights.Config, dt weights.DType, capacity int) *KV {
	return layers.NewKV(c, dt, capacity)
}

// Combiner merges a rank's partial attention with every other rank's. On
// return out and lse hold the exact attention over all ranks' keys, the
// same on every rank. rows = tokens·heads; out: [rows*D], lse: [rows].
type Combiner interface {
	Combine(out, lse []float32, rows, D int) error
}

// Worker is one rank's model on a compute backend, its K/V caches and
// activations, all kept where the backend computes (layers.Backend).
type Worker struct {
	M      *layers.Model    // the model's host description (configuration, sizes)
	B      layers.Backend   // where the forward passes run and the state lives
	Rank   int              // this rank's id
	Host   bool             // query host: holds the query/generated KV and computes logits
	DType  weights.DType    // of every K/V cache (layers.KVDTypes)
	Blocks []Block          // blocks this rank encodes
	KV     []layers.Cache   // one cache per block, same order
	Query  layers.Cache     // query/generated tokens' KV (host only)
	Comb   Combiner         // nil: single process
	X      layers.Exchanger // set: merges partials on the backend instead of Comb
	// Progress, if set, is told phase 1's progress in token-layers (one
	// token through one layer) after each layer: done of total.
	Progress func(done, total int64)
	prog     struct{ done, total int64 }

	acts   layers.Acts  // activations and attention scratch, on the backend
	anchor layers.Cache // anchor K/V, computed once per rank
	// anchorView: the anchor is a view of B_0's cache (its first rows),
	// not storage of its own.
	anchorView bool
	logits     []float32 // host: [VocabSize] the last position's logits
	// anchorPeak is the anchor K/V this worker held while encoding (gone
	// afterwards: the footprint counts it).
	anchorPeak int64
}

// NewWorker prepares rank `rank`'s worker on the CPU backend over m, its
// K/V caches of dtype kv. capacity bounds the tokens run through the model
// at once (block length, query chunk). Its scratch grows as it is used;
// NewWorkerFor allocates a document's up front.
func NewWorker(m *layers.Model, rank int, host bool, capacity int, kv weights.DType) *Worker {
	w, err := NewWorkerOn(layers.OnHost(m), rank, host, capacity, kv)
	if err != nil {
		panic(err) // the CPU backend allocates with make
	}
	return w
}

// NewWorkerOn is NewWorker on backend b.
func NewWorkerOn(b layers.Backend, rank int, host bool, capacity int, kv weights.DType) (*Worker, error) {
	acts, err := b.NewActs(capacity)
	if err != nil {
		return nil, fmt.Errorf("rank %d: activations of %d tokens on %s: %w", rank, capacity, b.Name(), err)
	}
	return &Worker{M: b.Model(), B: b, Rank: rank, Host: host, DType: kv, acts: acts}, nil
}

// NewWorkerFor prepares rank r's worker on backend b for layout lay, K/V
// of dtype kv, with every buffer its plan sizes (see Footprint) allocated
// now: the query cache of reserve tokens on the host, activations of
// capacity tokens, partials of chunk rows, the anchor ; block key
// buffers. Blocks' and the anchor's K/V are allocated as they are
// encoded, of exactly their length.
func NewWorkerFor(b layers.Backend, lay Layout, r, capacity, chunk, reserve int, kv weights.DType) (*Worker, error) {
	p := planWorker(lay, r, capacity, chunk, reserve, kv)
	w, err := NewWorkerOn(b, r, p.host, p.capacity, kv)
	if err != nil {
		return nil, err
	}
	if err := w.ReserveQuery(p.reserve); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.acts.Reserve(p.parts, p.chunk, p.keyRows); err != nil {
		w.Close()
		return nil, fmt.Errorf("rank %d: attention scratch on %s: %w", r, b.Name(), err)
	}
	if p.host {
		w.logits = make([]float32, w.M.Cfg.VocabSize)
	}
	return w, nil
}

// Close releases what the worker holds on its backend.
func (w *Worker) Close() {
	for _, kv := range w.KV {
		kv.Free()
	}
	if w.Query != nil {
		w.Query.Free()
	}
	w.acts.Free()
	w.KV, w.Query = nil, nil
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
	h.acts = w.acts.Bytes()
	h.logits = 4 * int64(cap(w.logits))
	return h
}

// ReserveQuery sizes the host's query cache for tokens tokens (query,
// generated, and under global attention the context) before its first
// use; beyond that it grows. No-op on other ranks or once it exists.
func (w *Worker) ReserveQuery(tokens int) error {
	if w.Host && w.Query == nil && tokens > 0 {
		q, err := w.B.NewCache(w.DType, tokens)
		if err != nil {
			return fmt.Errorf("rank %d: query K/V cache of %d tokens on %s: %w", w.Rank, tokens, w.B.Name(), err)
		}
		w.Query = q
	}
	return nil
}

// Capacity is the most tokens one Forward call takes.
func (w *Worker) Capacity() int { return w.acts.Cap() }

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
		if b.Len > w.acts.Cap() {
			return fmt.Errorf("block %d of %d tokens exceeds the worker capacity %d", b.Index, b.Len, w.acts.Cap())
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
	w.KV = make([]layers.Cache, len(blocks))
	err := w.encodeInOrder(anchor, blocks, toks, order, needAnchor)
	if w.anchor != nil && !w.anchorView { // else a view of B_0's cache
		w.anchor.Free()
	}
	w.anchor = nil // dropped: only the blocks' K/V stay
	if err != nil {
		for _, kv := range w.KV {
			if kv != nil {
				kv.Free()
			}
		}
		w.Blocks, w.KV = nil, nil
	}
	return err
}

func (w *Worker) encodeInOrder(anchor []int, blocks []Block, toks [][]int, order []int, needAnchor bool) error {
	w.anchorView = false
	for _, i := range order {
		b := blocks[i]
		if needAnchor && w.anchor == nil && b.Index > 0 {
			kv, err := w.B.NewCache(w.DType, len(anchor))
			if err != nil {
				return fmt.Errorf("anchor K/V of %d tokens on %s: %w", len(anchor), w.B.Name(), err)
			}
			w.anchor, w.anchorPeak = kv, kv.Bytes()
			if err := w.encode(kv, nil, anchor, 0); err != nil {
				return fmt.Errorf("anchor: %w", err)
			}
		}
		kv, err := w.B.NewCache(w.DType, b.Len)
		if err != nil {
			return fmt.Errorf("block %d: K/V of %d tokens on %s: %w", b.Index, b.Len, w.B.Name(), err)
		}
		w.KV[i] = kv
		var a layers.Cache
		if b.Index > 0 {
			a = w.anchor
		}
		if err := w.encode(kv, a, toks[i], b.Start); err != nil {
			return fmt.Errorf("block %d: %w", b.Index, err)
		}
		if b.Index == 0 && needAnchor && len(anchor) <= kv.Tokens() {
			w.anchor, w.anchorView = kv.Prefix(len(anchor)), true
		}
	}
	return nil
}

// encode runs toks at positions start.. through the model with causal
// attention over [prefix ; toks], appending toks' K/V to kv. The fresh
// keys and values are rounded to the cache's dtype before they are
// attended to, so that phase 1 sees what the cache holds.
func (w *Worker) encode(kv, prefix layers.Cache, toks []int, start int) error {
	c := &w.M.Cfg
	pos := make([]int, len(toks))
	for i := range pos {
		pos[i] = start + i
	}
	attend := func(l int, a layers.Attn) error {
		if err := a.Encode(kv, prefix); err != nil {
			return err
		}
		w.progress(int64(l * a.N()))
		return nil
	}
	if err := w.B.Run(w.acts, toks, pos, attend); err != nil {
		return err
	}
	kv.Commit(len(toks))
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

// TruncateQuery keeps the first n tokens of the query host's query cache
// and drops the rest (the previous query and its generated tokens), so
// another query can run on the same encoded context.
func (w *Worker) TruncateQuery(n int) {
	if w.Query != nil {
		w.Query.Truncate(n)
	}
}

// Step is phase 2 for n = len(toks) tokens at positions pos0..: every layer
// attends to this rank's blocks (one partial each, all keys visible) and,
// on the host, causally to the query cache, which grows by these tokens;
// partials are merged locally in block order (host's own last), then with
// the other ranks through Comb (on the host: the only activations that
// leave the backend). Keys and values are read from the caches in their
// dtype. On the host, logits receives the classifier output for the rows
// listed in rows ([len(rows), VocabSize]).
func (w *Worker) Step(toks []int, pos0 int, logits []float32, rows []int) error {
	n := len(toks)
	if n == 0 {
		return fmt.Errorf("step: no tokens")
	}
	if n > w.acts.Cap() {
		return fmt.Errorf("step: %d tokens exceed the worker capacity %d", n, w.acts.Cap())
	}
	if err := w.ReserveQuery(n); err != nil {
		return err
	}
	sh := w.M.Shape()
	parts := len(w.KV)
	if w.Host {
		parts++
	}
	pos := make([]int, n)
	for i := range pos {
		pos[i] = pos0 + i
	}
	rowsN := n * sh.H
	combine := func(out, lse []float32) error { return w.Comb.Combine(out, lse, rowsN, sh.D) }
	attend := func(l int, a layers.Attn) error {
		for b, kv := range w.KV {
			if err := a.Part(b, kv, false); err != nil {
				return err
			}
		}
		if w.Host {
			if err := a.Append(w.Query); err != nil {
				return err
			}
			if err := a.Part(parts-1, w.Query, true); err != nil {
				return err
			}
		}
		if err := a.Merge(parts); err != nil {
			return err
		}
		if w.X != nil {
			return w.X.Exchange(a)
		}
		if w.Comb != nil {
			return a.Exchange(combine)
		}
		return nil
	}
	if err := w.B.Run(w.acts, toks, pos, attend); err != nil {
		return err
	}
	if w.Host {
		w.Query.Commit(n)
		if logits != nil {
			return w.B.Logits(logits, w.acts, rows)
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
// values. They are made on the host and uploaded to the backend.
func (w *Worker) FillRandom(blocks []Block, n0 int, seed uint64) error {
	c := &w.M.Cfg
	w.Blocks, w.KV = blocks, make([]layers.Cache, len(blocks))
	for i, b := range blocks {
		h := newKV(c, w.DType, b.Len)
		fillRandom(w.M.C, h, b.Len, seed+uint64(b.Index)<<8)
		kv, err := w.B.Upload(h)
		if err != nil {
			return fmt.Errorf("block %d: K/V of %d tokens on %s: %w", b.Index, b.Len, w.B.Name(), err)
		}
		w.KV[i] = kv
	}
	if w.Host && n0 > 0 {
		if err := w.ReserveQuery(n0); err != nil {
			return err
		}
		w.TruncateQuery(0)
		if h := layers.HostCache(w.Query); h != nil { // in place
			fillRandom(w.M.C, h, n0, seed^0xfeed)
			return nil
		}
		h := newKV(c, w.DType, max(n0, w.Query.Cap()))
		fillRandom(w.M.C, h, n0, seed^0xfeed)
		q, err := w.B.Upload(h)
		if err != nil {
			return fmt.Errorf("query K/V of %d tokens on %s: %w", n0, w.B.Name(), err)
		}
		w.Query.Free()
		w.Query = q
	}
	return nil
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
