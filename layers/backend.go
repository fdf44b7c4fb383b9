package layers

import (
	"fmt"

	"github.com/star-attn/star/weights"
)

// Backend is the device-resident seam of a forward pass: a model whose
// weights (in their stored dtype), activations (Acts) and K/V caches
// (Cache) a backend keeps where it computes. Only what a rank must see on
// the host crosses it: phase 2's partial attention (out, lse) in
// Attn.Exchange, the logits of the rows asked for in Logits, and, for
// ring attention's messages and K/V files, data staged through Attn.Host
// and Cache.Host. The CPU backend (OnHost) and the CUDA backend
// (layers/cuda) implement it; layerstest.RunBackend is the conformance
// suite both pass.
type Backend interface {
	// Model is the host description of the model: configuration, RoPE
	// frequencies, sizes. Its weights are the ones the backend holds.
	Model() *Model
	// Name identifies the backend and its device in logs and reports
	// ("cpu", "cuda:0 NVIDIA H200").
	Name() string
	// NewActs allocates the activations of up to capacity tokens per Run.
	NewActs(capacity int) (Acts, error)
	// NewCache allocates an empty K/V cache of capacity tokens, every
	// layer, in dtype dt (one of KVDTypes).
	NewCache(dt weights.DType, capacity int) (Cache, error)
	// Upload makes a cache of the backend from a host one (the host
	// cache itself on the CPU).
	Upload(h *KV) (Cache, error)
	// Run embeds tokens [n] at positions pos [n] and runs every layer;
	// each layer's attention is what attend does with the layer's fresh
	// projections (Attn). The residual stream stays in a.
	Run(a Acts, tokens, pos []int, attend LayerAttend) error
	// Logits writes the classifier output of rows of the last Run to the
	// host: out [len(rows), VocabSize].
	Logits(out []float32, a Acts, rows []int) error
	// Close releases what the backend holds (device memory, handles).
	Close() error
}

// Exchanger merges every rank's partial attention of a layer step where
// the backend keeps it (NCCL between GPUs), instead of staging it through
// the host (Attn.Exchange and an MPI merge). On return the step's (out,
// lse) are the exact merge over all ranks, the same on every rank.
type Exchanger interface {
	Exchange(a Attn) error
	// Name says how ("nccl").
	Name() string
	Close() error
}

// Device is implemented by backends with memory of their own (a GPU):
// the memory check before a document is encoded asks it, not the host.
type Device interface {
	// MemInfo is the device's free and total memory in bytes.
	MemInfo() (free, total int64, err error)
	// Sharing is the number of ranks of this node that compute on the
	// device (they share its memory).
	Sharing() int
}

// FlopCounter is implemented by backends that count, when asked, the
// floating-point work of their products and attention and the time it
// took (synchronising the device around each: for benchmarks).
type FlopCounter interface {
	// CountFlops starts counting from zero (on) or stops (off).
	CountFlops(on bool)
	// Flops is what was counted: linear and attention flops and the
	// nanoseconds they took.
	Flops() (linear, linearNanos, attention, attentionNanos int64)
	// PeakTFLOPS is the device's dense BF16 peak (0: unknown).
	PeakTFLOPS() float64
}

// LayerAttend decides the attention of layer l for the Run's n tokens
// through a, which holds their fresh queries, keys and values (RoPE
// applied) and receives their attention output.
type LayerAttend func(l int, a Attn) error

// Attn is one layer's attention step of a Run, on the backend: the fresh
// projections q [n, QDim], k, v [n, KVDim], the output out [n, QDim]
// with its log-sum-exps lse [n, H], and numbered partial outputs.
type Attn interface {
	// N is the number of fresh tokens.
	N() int
	// Encode is phase 1: the fresh keys and values, rounded to c's dtype,
	// are appended to c's layer, and out is the causal attention over
	// [prefix ; the fresh tokens] (prefix: a cache whose tokens all come
	// first, e.g. the anchor; nil for none).
	Encode(c, prefix Cache) error
	// Append writes the fresh keys and values after the first
	// c.Tokens() of c's layer (dropping what a failed step left there).
	Append(c Cache) error
	// Part computes partial p: the attention of the fresh queries over
	// every key of c's layer (causal: the fresh tokens are c's last n).
	Part(p int, c Cache, causal bool) error
	// Merge sets (out, lse) to the exact merge of partials 0 .. parts-1.
	Merge(parts int) error
	// Exchange hands (out [n*QDim], lse [n*H]) to f on the host, which
	// may change them (merge them with other ranks'), and takes them back.
	Exchange(f func(out, lse []float32) error) error
	// Host hands out [n*QDim], q [n*QDim], k, v [n*KVDim] to f on the
	// host and takes out back (ring attention's messages).
	Host(f func(out, q, k, v []float32) error) error
}

// Acts are a backend's activations for up to Cap tokens per Run.
type Acts interface {
	Cap() int
	// Reserve allocates now the scratch of later Runs: partials of parts
	// partial outputs of rows tokens, and room to attend to keyRows
	// prefix-and-block keys at once.
	Reserve(parts, rows, keyRows int) error
	// Bytes is the memory the activations hold now.
	Bytes() int64
	// Free releases them.
	Free()
}

// Cache is the keys and values of a run of tokens, every layer, on a
// backend.
type Cache interface {
	// Tokens is the number of tokens the cache holds in every layer.
	Tokens() int
	// Cap is the tokens the cache has room for before it grows.
	Cap() int
	// Commit counts the n tokens the last Run appended to every layer.
	Commit(n int)
	// Truncate keeps the first n tokens.
	Truncate(n int)
	// Prefix is a view of the first n tokens (the same storage).
	Prefix(n int) Cache
	DType() weights.DType
	// Bytes is the memory the cache holds.
	Bytes() int64
	// Host is the cache on the host: itself on the CPU, a copy otherwise.
	Host() (*KV, error)
	// Free releases it (device memory; nothing on the CPU).
	Free()
}

// KV is a K/V cache on the host: per layer, keys and values in the
// cache's dtype, head-major (KVBuf: one kv head's keys are one contiguous
// run, which a decode step streams). It is the CPU backend's Cache.
type KV struct {
	K, V []*KVBuf // [NLayers], each [HKV][Cap][HeadDim]
	Len  int      // tokens held in every layer
}

// NewKV makes an empty host cache of capacity tokens for model c in dtype dt.
func NewKV(c *weights.Config, dt weights.DType, capacity int) *KV {
	kv := &KV{K: make([]*KVBuf, c.NLayers), V: make([]*KVBuf, c.NLayers)}
	for l := range kv.K {
		kv.K[l] = NewKVBuf(dt, capacity, c.NKVHeads, c.HeadDim)
		kv.V[l] = NewKVBuf(dt, capacity, c.NKVHeads, c.HeadDim)
	}
	return kv
}

func (kv *KV) Tokens() int          { return kv.Len }
func (kv *KV) Commit(n int)         { kv.Len += n }
func (kv *KV) Cap() int             { return kv.K[0].Cap }
func (kv *KV) DType() weights.DType { return kv.K[0].DType }
func (kv *KV) Host() (*KV, error)   { return kv, nil }
func (kv *KV) Free()                {}

// Bytes is the memory the cache holds.
func (kv *KV) Bytes() int64 {
	var n int64
	for l := range kv.K {
		n += kv.K[l].Bytes() + kv.V[l].Bytes()
	}
	return n
}

// Truncate keeps the first n tokens of every layer.
func (kv *KV) Truncate(n int) {
	n = min(n, kv.Len)
	for l := range kv.K {
		kv.K[l].Truncate(n)
		kv.V[l].Truncate(n)
	}
	kv.Len = n
}

// Prefix is a view of the first n tokens of kv (the same storage).
func (kv *KV) Prefix(n int) Cache {
	p := &KV{K: make([]*KVBuf, len(kv.K)), V: make([]*KVBuf, len(kv.V)), Len: n}
	for l := range kv.K {
		k, v := *kv.K[l], *kv.V[l]
		k.Len, v.Len = n, n
		p.K[l], p.V[l] = &k, &v
	}
	return p
}

// HostCache is c's host storage when c is a host cache (the CPU
// backend's), else nil.
func HostCache(c Cache) *KV {
	kv, _ := c.(*KV)
	return kv
}

// OnHost is the CPU backend over m: m's weights as loaded (memory-mapped),
// activations and K/V caches in host memory, products on m.C.
func OnHost(m *Model) Backend { return hostBackend{m} }

type hostBackend struct{ m *Model }

func (b hostBackend) Model() *Model { return b.m }
func (b hostBackend) Name() string  { return "cpu" }
func (b hostBackend) Close() error  { return nil }

func (b hostBackend) NewActs(capacity int) (Acts, error) {
	return &hostActs{m: b.m, st: b.m.NewState(capacity)}, nil
}

func (b hostBackend) NewCache(dt weights.DType, capacity int) (Cache, error) {
	return NewKV(&b.m.Cfg, dt, capacity), nil
}

func (b hostBackend) Upload(h *KV) (Cache, error) { return h, nil }

func (b hostBackend) Run(a Acts, tokens, pos []int, attend LayerAttend) error {
	ha := a.(*hostActs)
	n := len(tokens)
	ha.ensure(n, 0)
	return b.m.Forward(ha.st, tokens, pos, func(l int, out, q, k, v []float32, n int) error {
		ha.at = hostAttn{a: ha, l: l, n: n, out: out, q: q, k: k, v: v}
		return attend(l, &ha.at)
	})
}

func (b hostBackend) Logits(out []float32, a Acts, rows []int) error {
	b.m.Logits(out, a.(*hostActs).st, rows)
	return nil
}

// hostActs are the CPU backend's activations: the forward State and the
// attention scratch.
type hostActs struct {
	m       *Model
	st      *State
	lse     []float32   // [Cap*H] the merged or phase-1 log-sum-exps
	partO   [][]float32 // [parts][rows*H*D] partial outputs
	partLSE [][]float32 // [parts][rows*H] their log-sum-exps
	kbuf    []float32   // [(a+b)*KVDim] prefix ; block keys of one layer, token-major float32
	vbuf    []float32   // same for values
	mo, ml  [][]float32 // [parts] views of the partials that Merge reads
	at      hostAttn    // the layer step handed to attend (no allocation per layer)
}

func (a *hostActs) Cap() int { return a.st.Cap }
func (a *hostActs) Free()    {}

func (a *hostActs) Reserve(parts, rows, keyRows int) error {
	a.ensure(a.st.Cap, 0)
	a.ensure(rows, parts)
	if kvd := a.m.Cfg.KVDim(); keyRows > 0 && cap(a.kbuf) < keyRows*kvd {
		a.kbuf, a.vbuf = make([]float32, 0, keyRows*kvd), make([]float32, 0, keyRows*kvd)
	}
	return nil
}

func (a *hostActs) Bytes() int64 {
	n := a.m.StateBytes(a.st.Cap) + 4*int64(cap(a.lse)+cap(a.kbuf)+cap(a.vbuf))
	for p := range a.partO {
		n += 4 * int64(cap(a.partO[p])+cap(a.partLSE[p]))
	}
	return n
}

// ensure sizes lse for n tokens and parts partials of n tokens.
func (a *hostActs) ensure(n, parts int) {
	sh := a.m.Shape()
	if len(a.lse) < n*sh.H {
		a.lse = make([]float32, n*sh.H)
	}
	for len(a.partO) < parts {
		a.partO = append(a.partO, nil)
		a.partLSE = append(a.partLSE, nil)
	}
	for p := 0; p < parts; p++ {
		if len(a.partO[p]) < n*sh.H*sh.D {
			a.partO[p] = make([]float32, n*sh.H*sh.D)
			a.partLSE[p] = make([]float32, n*sh.H)
		}
	}
}

// hostAttn is one layer's step on the CPU backend: views of the State.
type hostAttn struct {
	a            *hostActs
	l, n         int
	out, q, k, v []float32
}

func (h *hostAttn) N() int { return h.n }

func hostKV(c Cache) (*KV, error) {
	if kv := HostCache(c); kv != nil {
		return kv, nil
	}
	return nil, fmt.Errorf("layers: a %T is not a cache of the CPU backend", c)
}

func (h *hostAttn) Encode(c, prefix Cache) error {
	kv, err := hostKV(c)
	if err != nil {
		return err
	}
	m, l, n := h.a.m, h.l, h.n
	dt := kv.DType()
	RoundKV(dt, h.k)
	RoundKV(dt, h.v)
	kv.K[l].Append(h.k, n)
	kv.V[l].Append(h.v, n)
	keys, vals, nk := h.k, h.v, n
	if prefix != nil && prefix.Tokens() > 0 {
		p, err := hostKV(prefix)
		if err != nil {
			return err
		}
		kvd, a := m.Cfg.KVDim(), p.Len
		if need := (a + n) * kvd; cap(h.a.kbuf) < need { // sized once: growing by append would leave a dead copy
			h.a.kbuf, h.a.vbuf = make([]float32, 0, need), make([]float32, 0, need)
		}
		kb, vb := h.a.kbuf[:(a+n)*kvd], h.a.vbuf[:(a+n)*kvd]
		p.K[l].TokenMajor(kb, a)
		p.V[l].TokenMajor(vb, a)
		copy(kb[a*kvd:], h.k)
		copy(vb[a*kvd:], h.v)
		keys, vals, nk = kb, vb, a+n
	}
	Attention(m.C, h.out, h.a.lse[:n*m.Cfg.NHeads], h.q, keys, vals, n, nk, m.Shape(), true)
	return nil
}

func (h *hostAttn) Append(c Cache) error {
	kv, err := hostKV(c)
	if err != nil {
		return err
	}
	k, v := kv.K[h.l], kv.V[h.l]
	k.Truncate(kv.Len)
	v.Truncate(kv.Len)
	k.Append(h.k, h.n)
	v.Append(h.v, h.n)
	return nil
}

func (h *hostAttn) Part(p int, c Cache, causal bool) error {
	kv, err := hostKV(c)
	if err != nil {
		return err
	}
	h.a.ensure(h.n, p+1)
	sh := h.a.m.Shape()
	k, v := kv.K[h.l], kv.V[h.l]
	AttentionKV(h.a.m.C, h.a.partO[p][:h.n*sh.H*sh.D], h.a.partLSE[p][:h.n*sh.H], h.q, k.All(), v.All(), h.n, k.Len, sh, causal)
	return nil
}

func (h *hostAttn) Merge(parts int) error {
	sh := h.a.m.Shape()
	rows, qd := h.n*sh.H, h.n*sh.H*sh.D
	a := h.a
	a.mo, a.ml = a.mo[:0], a.ml[:0] // views of this step's rows (no allocation once grown)
	for p := 0; p < parts; p++ {
		a.mo, a.ml = append(a.mo, a.partO[p][:qd]), append(a.ml, a.partLSE[p][:rows])
	}
	Merge(h.out, a.lse[:rows], a.mo, a.ml, h.n, sh.H, sh.D)
	return nil
}

func (h *hostAttn) Exchange(f func(out, lse []float32) error) error {
	return f(h.out, h.a.lse[:h.n*h.a.m.Cfg.NHeads])
}

func (h *hostAttn) Host(f func(out, q, k, v []float32) error) error {
	return f(h.out, h.q, h.k, h.v)
}
