package cuda

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/nccl"
	"github.com/star-attn/star/weights"
)

// Backend is layers.Backend on one CUDA device: the weights uploaded once
// in their stored dtype (F32, F16, BF16), activations and K/V caches in
// device memory, the kernels of kernels.cu and cuBLASLt's matrix products.
// Only phase 2's partial attention (Attn.Exchange), the logits asked for
// and data staged for ring attention and K/V files cross to the host.
type Backend struct {
	m    *layers.Model
	d    *nccl.Device
	k    *Kernels
	blas *nccl.BLAS
	w    devModel
	// Weights is the device memory the weights take (bytes).
	Weights int64
	allocs  []nccl.Ptr // the weights' allocations
	need16  bool       // some matrix is 16-bit: products convert activations
	// Share is the number of ranks of this node on the device (1 unless
	// set).
	Share                    int
	count                    bool // CountFlops on: time products and attention
	linF, linNs, attF, attNs int64
}

// CountFlops starts (from zero) or stops counting products' and
// attention's flops and time; while it counts, the device is synchronised
// around each.
func (b *Backend) CountFlops(on bool) {
	b.count = on
	b.linF, b.linNs, b.attF, b.attNs = 0, 0, 0, 0
}

// Flops is what CountFlops counted.
func (b *Backend) Flops() (linear, linearNanos, attention, attentionNanos int64) {
	return b.linF, b.linNs, b.attF, b.attNs
}

// timed runs f, and when counting adds its flops and time (the device
// synchronised before and after) to *fl and *ns.
func (b *Backend) timed(flops int64, fl, ns *int64, f func() error) error {
	if !b.count {
		return f()
	}
	if err := b.d.Sync(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := f(); err != nil {
		return err
	}
	if err := b.d.Sync(); err != nil {
		return err
	}
	*ns += int64(time.Since(t0))
	*fl += flops
	return nil
}

// PeakTFLOPS is the device's dense BF16 tensor-core peak by architecture
// (STAR_PEAK_TFLOPS overrides it; 0: unknown).
func (b *Backend) PeakTFLOPS() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("STAR_PEAK_TFLOPS"), 64); err == nil && v > 0 {
		return v
	}
	name := strings.ToUpper(b.d.Name)
	for _, p := range []struct {
		name  string
		tflop float64
	}{{"H200", 989}, {"H100", 989}, {"GH200", 989}, {"B200", 2250}, {"B100", 1750}, {"A100", 312}, {"A800", 312},
		{"L40S", 362}, {"L40", 181}, {"L4", 121}, {"A10", 125}, {"RTX 4090", 165}} {
		if strings.Contains(name, p.name) {
			return p.tflop
		}
	}
	return 0
}

// MemInfo is the device's free and total memory.
func (b *Backend) MemInfo() (free, total int64, err error) { return b.d.MemInfo() }

// Sharing is the number of ranks of this node on the device.
func (b *Backend) Sharing() int { return max(b.Share, 1) }

// devMat is a weight matrix on the device, in its stored dtype.
type devMat struct {
	p          nccl.Ptr
	dt         nccl.DType // F32, F16, BF16
	kdt        int        // the kernels' code of dt: 0 F32, 1 F16, 2 BF16
	rows, cols int
}

type devLayer struct {
	attnNorm, ffnNorm nccl.Ptr // [Dim] float32
	wq, wk, wv, wo    devMat
	w1, w2, w3        devMat
}

type devModel struct {
	tokEmb, output devMat
	finalNorm      nccl.Ptr // [Dim] float32
	layers         []devLayer
}

// Open puts model m's weights on CUDA device ordinal and compiles the
// kernels for it. Quantized weights are refused (they run on CPU ranks).
func Open(m *layers.Model, ordinal int) (*Backend, error) {
	d, err := nccl.Open(ordinal)
	if err != nil {
		return nil, err
	}
	b := &Backend{m: m, d: d}
	if err := b.open(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open() error {
	var err error
	if b.k, err = LoadKernels(b.d); err != nil {
		return err
	}
	if b.blas, err = b.d.NewBLAS(); err != nil {
		return err
	}
	w := b.m.W
	if b.w.tokEmb, err = b.mat(&w.TokEmb); err != nil {
		return err
	}
	if &w.Output.Data[0] == &w.TokEmb.Data[0] { // tied: one copy
		b.w.output = b.w.tokEmb
	} else if b.w.output, err = b.mat(&w.Output); err != nil {
		return err
	}
	if b.w.finalNorm, err = b.floats(w.FinalNorm.Floats()); err != nil {
		return err
	}
	b.w.layers = make([]devLayer, len(w.Layers))
	for i := range w.Layers {
		l, dl := &w.Layers[i], &b.w.layers[i]
		if dl.attnNorm, err = b.floats(l.AttnNorm.Floats()); err != nil {
			return err
		}
		if dl.ffnNorm, err = b.floats(l.FFNNorm.Floats()); err != nil {
			return err
		}
		for _, x := range []struct {
			dst *devMat
			t   *weights.Tensor
		}{{&dl.wq, &l.WQ}, {&dl.wk, &l.WK}, {&dl.wv, &l.WV}, {&dl.wo, &l.WO}, {&dl.w1, &l.W1}, {&dl.w2, &l.W2}, {&dl.w3, &l.W3}} {
			if *x.dst, err = b.mat(x.t); err != nil {
				return err
			}
		}
	}
	return nil
}

// kernelDType is dt's code in the kernels (0 F32, 1 F16, 2 BF16) and
// cuBLASLt's type, or an error naming dt.
func kernelDType(dt weights.DType) (int, nccl.DType, error) {
	switch dt {
	case weights.F32:
		return 0, nccl.F32, nil
	case weights.F16:
		return 1, nccl.F16, nil
	case weights.BF16:
		return 2, nccl.BF16, nil
	}
	return 0, 0, fmt.Errorf("%v weights are not supported on CUDA devices (F32, F16 and BF16 are): run these ranks with --device cpu", dt)
}

func (b *Backend) alloc(n int64) (nccl.Ptr, error) {
	p, err := b.d.Alloc(max(n, 4))
	if err != nil {
		return 0, err
	}
	return p, nil
}

// mat uploads a weight matrix as stored.
func (b *Backend) mat(t *weights.Tensor) (devMat, error) {
	kdt, dt, err := kernelDType(t.DType)
	if err != nil {
		return devMat{}, fmt.Errorf("%s: %w", t.Name, err)
	}
	p, err := b.alloc(int64(len(t.Data)))
	if err != nil {
		return devMat{}, fmt.Errorf("upload %s (%d bytes): %w", t.Name, len(t.Data), err)
	}
	b.allocs = append(b.allocs, p)
	b.Weights += int64(len(t.Data))
	if err := b.d.Upload(p, t.Data); err != nil {
		return devMat{}, fmt.Errorf("upload %s: %w", t.Name, err)
	}
	b.need16 = b.need16 || kdt != 0
	return devMat{p: p, dt: dt, kdt: kdt, rows: t.Rows(), cols: t.Cols()}, nil
}

func (b *Backend) floats(f []float32) (nccl.Ptr, error) {
	p, err := b.alloc(int64(4 * len(f)))
	if err != nil {
		return 0, err
	}
	b.allocs = append(b.allocs, p)
	b.Weights += int64(4 * len(f))
	return p, b.d.Upload(p, f32Bytes(f))
}

func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// Model is the host description of the model.
func (b *Backend) Model() *layers.Model { return b.m }

// Name is "cuda:<ordinal> <device name>".
func (b *Backend) Name() string { return fmt.Sprintf("cuda:%d %s", b.d.Ordinal, b.d.Name) }

// Device is the device the backend computes on.
func (b *Backend) Device() *nccl.Device { return b.d }

// Close frees the weights and releases the device.
func (b *Backend) Close() error {
	if b.d == nil {
		return nil
	}
	var first error
	for _, p := range b.allocs {
		if err := b.d.Free(p); err != nil && first == nil {
			first = err
		}
	}
	b.allocs = nil
	if b.blas != nil {
		if err := b.blas.Close(); err != nil && first == nil {
			first = err
		}
	}
	if err := b.d.Close(); err != nil && first == nil {
		first = err
	}
	b.d = nil
	return first
}

// mlpChunk bounds the rows of MLP activations held at once (as on the CPU).
const mlpChunk = 256

// acts are the activations on the device (float32 unless noted) and the
// host staging of what crosses.
type acts struct {
	b               *Backend
	cap, mc         int      // tokens per Run; MLP rows at once
	x, xb, xb2      nccl.Ptr // [cap, Dim]
	q, att          nccl.Ptr // [cap, QDim]
	k, v            nccl.Ptr // [cap, KVDim]
	h1, h3          nccl.Ptr // [mc, Hidden]
	x16             nccl.Ptr // [max(cap*max(Dim, QDim), mc*Hidden)] 16-bit activations (16-bit weights only)
	lse             nccl.Ptr // [cap, H]
	split           nccl.Ptr // [MaxSplits, H, D+1] decode's split-attention partials
	tok             nccl.Ptr // [cap] int32
	cos, sin        nccl.Ptr // [cap, HeadDim/2]
	logits          nccl.Ptr // [logitRows, Vocab]
	logitRows       int
	parts, partsLSE []nccl.Ptr // [parts] [rows, H*D], [rows, H]
	partRows        int        // rows every partial has room for
	bytes           int64
	owned           []nccl.Ptr
	hTok            []int32   // [cap]
	hCos, hSin      []float32 // [cap*HeadDim/2]
	hOut, hLSE      []float32 // [cap*QDim], [cap*H] staging of Exchange and Host
	hQ, hK, hV      []float32 // staging of Host
	hInf            []float32 // [cap*H] -Inf: an empty merge's lse
	at              attn
	pos             []int
	n               int
}

func (a *acts) get(n int64) (nccl.Ptr, error) {
	p, err := a.b.alloc(n)
	if err != nil {
		return 0, fmt.Errorf("activations (%d bytes) on %s: %w", n, a.b.Name(), err)
	}
	a.owned = append(a.owned, p)
	a.bytes += n
	return p, nil
}

// NewActs allocates the activations of up to capacity tokens.
func (b *Backend) NewActs(capacity int) (layers.Acts, error) {
	c := &b.m.Cfg
	a := &acts{b: b, cap: capacity, mc: min(capacity, mlpChunk)}
	D, qd, kvd, hd, H := int64(c.Dim), int64(c.QDim()), int64(c.KVDim()), int64(c.HiddenDim), int64(c.NHeads)
	n := int64(capacity)
	for _, x := range []struct {
		p     *nccl.Ptr
		bytes int64
	}{{&a.x, 4 * n * D}, {&a.xb, 4 * n * D}, {&a.xb2, 4 * n * D}, {&a.q, 4 * n * qd}, {&a.att, 4 * n * qd},
		{&a.k, 4 * n * kvd}, {&a.v, 4 * n * kvd}, {&a.h1, 4 * int64(a.mc) * hd}, {&a.h3, 4 * int64(a.mc) * hd},
		{&a.lse, 4 * n * H}, {&a.tok, 4 * n}, {&a.cos, 4 * n * int64(c.HeadDim/2)}, {&a.sin, 4 * n * int64(c.HeadDim/2)},
		{&a.split, 4 * MaxSplits * H * int64(c.HeadDim+1)}} {
		var err error
		if *x.p, err = a.get(x.bytes); err != nil {
			a.Free()
			return nil, err
		}
	}
	if b.need16 {
		var err error
		if a.x16, err = a.get(2 * max(n*max(D, qd), int64(a.mc)*hd)); err != nil {
			a.Free()
			return nil, err
		}
	}
	a.hTok = make([]int32, capacity)
	a.hCos, a.hSin = make([]float32, capacity*c.HeadDim/2), make([]float32, capacity*c.HeadDim/2)
	a.hOut, a.hLSE = make([]float32, capacity*c.QDim()), make([]float32, capacity*c.NHeads)
	a.pos = make([]int, 0, capacity)
	a.at.a = a
	return a, nil
}

func (a *acts) Cap() int     { return a.cap }
func (a *acts) Bytes() int64 { return a.bytes }

// Free releases the device memory of the activations.
func (a *acts) Free() {
	for _, p := range a.owned {
		a.b.d.Free(p)
	}
	a.owned, a.parts, a.partsLSE, a.logits, a.logitRows, a.partRows, a.bytes = nil, nil, nil, 0, 0, 0, 0
}

// Reserve allocates partials of parts outputs of rows tokens (keyRows:
// the device attends to the anchor and a block where they lie, without a
// copy).
func (a *acts) Reserve(parts, rows, keyRows int) error { return a.ensureParts(parts, rows) }

func (a *acts) ensureParts(parts, rows int) error {
	c := &a.b.m.Cfg
	if rows > a.partRows && len(a.parts) > 0 { // too small: make them again
		for i := range a.parts {
			a.b.d.Free(a.parts[i])
			a.b.d.Free(a.partsLSE[i])
			a.bytes -= 4 * int64(a.partRows) * int64(c.NHeads) * int64(c.HeadDim+1)
		}
		a.owned = dropPtrs(a.owned, append(a.parts, a.partsLSE...))
		a.parts, a.partsLSE = nil, nil
	}
	a.partRows = max(a.partRows, rows)
	for len(a.parts) < parts {
		o, err := a.get(4 * int64(a.partRows) * int64(c.QDim()))
		if err != nil {
			return err
		}
		l, err := a.get(4 * int64(a.partRows) * int64(c.NHeads))
		if err != nil {
			return err
		}
		a.parts, a.partsLSE = append(a.parts, o), append(a.partsLSE, l)
	}
	return nil
}

func dropPtrs(all, gone []nccl.Ptr) []nccl.Ptr {
	out := all[:0]
	for _, p := range all {
		keep := true
		for _, g := range gone {
			keep = keep && p != g
		}
		if keep {
			out = append(out, p)
		}
	}
	return out
}

// cache is a K/V cache on the device: per layer, keys and values
// token-major [cap, KVDim] in the cache's dtype.
type cache struct {
	b     *Backend
	dt    weights.DType
	kdt   int
	cap   int
	len   int        // tokens committed in every layer
	lens  []int      // [NLayers] tokens written in each layer
	k, v  []nccl.Ptr // [NLayers]
	view  bool       // a Prefix: the storage is another cache's
	row   int64      // bytes of one token's keys (or values) of a layer
	freed bool
}

// NewCache allocates an empty cache of capacity tokens in dtype dt.
func (b *Backend) NewCache(dt weights.DType, capacity int) (layers.Cache, error) {
	return b.newCache(dt, max(capacity, 1))
}

func (b *Backend) newCache(dt weights.DType, capacity int) (*cache, error) {
	c := &b.m.Cfg
	kdt, _, err := kernelDType(dt)
	if err != nil {
		return nil, fmt.Errorf("K/V cache: %w", err)
	}
	kc := &cache{b: b, dt: dt, kdt: kdt, cap: capacity, lens: make([]int, c.NLayers),
		row: dt.Bytes(int64(c.KVDim()))}
	for l := 0; l < c.NLayers; l++ {
		for _, dst := range []*[]nccl.Ptr{&kc.k, &kc.v} {
			p, err := b.alloc(int64(capacity) * kc.row)
			if err != nil {
				kc.Free()
				return nil, fmt.Errorf("K/V cache of %d tokens (%d bytes a layer) on %s: %w", capacity, int64(capacity)*kc.row, b.Name(), err)
			}
			*dst = append(*dst, p)
		}
	}
	return kc, nil
}

// Upload copies a host cache to the device.
func (b *Backend) Upload(h *layers.KV) (layers.Cache, error) {
	kc, err := b.newCache(h.DType(), max(h.Cap(), h.Len, 1))
	if err != nil {
		return nil, err
	}
	c := &b.m.Cfg
	buf := make([]byte, int64(h.Len)*kc.row)
	for l := 0; l < c.NLayers; l++ {
		for i, src := range []*layers.KVBuf{h.K[l], h.V[l]} {
			tokenMajorBytes(buf, src, h.Len)
			dst := kc.k[l]
			if i == 1 {
				dst = kc.v[l]
			}
			if len(buf) > 0 {
				if err := b.d.Upload(dst, buf); err != nil {
					kc.Free()
					return nil, fmt.Errorf("upload K/V: %w", err)
				}
			}
		}
		kc.lens[l] = h.Len
	}
	kc.len = h.Len
	return kc, nil
}

// tokenMajorBytes writes tokens [0, n) of head-major b as token-major
// raw elements [n][HKV*D] into dst.
func tokenMajorBytes(dst []byte, b *layers.KVBuf, n int) {
	es := int(b.DType.Bytes(1))
	for h := 0; h < b.HKV; h++ {
		src := b.HeadRaw(h, n) // [n][D]
		for j := 0; j < n; j++ {
			copy(dst[(j*b.HKV+h)*b.D*es:(j*b.HKV+h+1)*b.D*es], src[j*b.D*es:(j+1)*b.D*es])
		}
	}
}

func (c *cache) Tokens() int          { return c.len }
func (c *cache) Cap() int             { return c.cap }
func (c *cache) DType() weights.DType { return c.dt }
func (c *cache) Commit(n int)         { c.len += n }

// Bytes is the device memory the cache holds (none for a view).
func (c *cache) Bytes() int64 {
	if c.view {
		return 0
	}
	return 2 * int64(len(c.k)) * int64(c.cap) * c.row
}

func (c *cache) Truncate(n int) {
	c.len = min(n, c.len)
	for l := range c.lens {
		c.lens[l] = min(c.lens[l], c.len)
	}
}

func (c *cache) Prefix(n int) layers.Cache {
	p := *c
	p.view, p.len, p.cap = true, min(n, c.len), min(n, c.len)
	p.lens = make([]int, len(c.lens))
	for l := range p.lens {
		p.lens[l] = p.len
	}
	return &p
}

// Host downloads the cache into a host cache (head-major).
func (c *cache) Host() (*layers.KV, error) {
	mc := &c.b.m.Cfg
	h := layers.NewKV(mc, c.dt, max(c.len, 1))
	buf := make([]byte, int64(c.len)*c.row)
	es := int(c.dt.Bytes(1))
	for l := range c.k {
		for i, src := range []nccl.Ptr{c.k[l], c.v[l]} {
			dst := h.K[l]
			if i == 1 {
				dst = h.V[l]
			}
			if len(buf) > 0 {
				if err := c.b.d.Download(buf, src); err != nil {
					return nil, fmt.Errorf("download K/V: %w", err)
				}
			}
			dst.Len = c.len
			for hh := 0; hh < dst.HKV; hh++ {
				d := dst.HeadRaw(hh, c.len)
				for j := 0; j < c.len; j++ {
					copy(d[j*dst.D*es:(j+1)*dst.D*es], buf[(j*dst.HKV+hh)*dst.D*es:(j*dst.HKV+hh+1)*dst.D*es])
				}
			}
		}
	}
	h.Len = c.len
	return h, nil
}

// Free releases the cache's device memory (not a view's).
func (c *cache) Free() {
	if c.view || c.freed {
		return
	}
	c.freed = true
	for l := range c.k {
		c.b.d.Free(c.k[l])
	}
	for l := range c.v {
		c.b.d.Free(c.v[l])
	}
}

// grow makes room for at least need tokens, keeping what is written.
func (c *cache) grow(need int) error {
	if need <= c.cap {
		return nil
	}
	if c.view {
		return fmt.Errorf("K/V: a view of %d tokens cannot grow", c.cap)
	}
	nc := max(need, 2*c.cap)
	for l := range c.k {
		for _, pp := range []*nccl.Ptr{&c.k[l], &c.v[l]} {
			p, err := c.b.alloc(int64(nc) * c.row)
			if err != nil {
				return fmt.Errorf("grow a K/V cache to %d tokens on %s: %w", nc, c.b.Name(), err)
			}
			if n := int64(c.lens[l]) * c.row; n > 0 {
				if err := c.b.d.Copy(p, *pp, n); err != nil {
					return err
				}
			}
			c.b.d.Free(*pp)
			*pp = p
		}
	}
	c.cap = nc
	return nil
}

// ownActs is la as b's activations, or an error.
func (b *Backend) ownActs(la layers.Acts) (*acts, error) {
	a, ok := la.(*acts)
	if !ok || a.b != b {
		return nil, fmt.Errorf("cuda: activations %T are not %s's", la, b.Name())
	}
	return a, nil
}

func (b *Backend) devCache(c layers.Cache) (*cache, error) {
	kc, ok := c.(*cache)
	if !ok || kc.b != b {
		return nil, fmt.Errorf("cuda: a %T is not a cache of %s", c, b.Name())
	}
	if kc.freed {
		return nil, fmt.Errorf("cuda: the K/V cache was freed")
	}
	return kc, nil
}

// mm is out [n, w.rows] = x [n, w.cols] · wᵀ.
func (a *acts) mm(out, x nccl.Ptr, w devMat, n int) error {
	b := a.b
	return b.timed(2*int64(n)*int64(w.rows)*int64(w.cols), &b.linF, &b.linNs, func() error { return a.mm1(out, x, w, n) })
}

func (a *acts) mm1(out, x nccl.Ptr, w devMat, n int) error {
	if w.kdt == 0 {
		return a.b.blas.LinearRows(out, x, w.p, n, w.rows, w.cols, nccl.F32)
	}
	if err := a.b.k.To16(a.x16, x, w.kdt, int64(n)*int64(w.cols)); err != nil {
		return err
	}
	return a.b.blas.Linear16(out, a.x16, w.p, n, w.rows, w.cols, w.dt)
}

func off(p nccl.Ptr, floats int) nccl.Ptr { return p + nccl.Ptr(4*int64(floats)) }

// Run embeds tokens at positions pos and runs every layer on the device.
func (b *Backend) Run(la layers.Acts, tokens, pos []int, attend layers.LayerAttend) error {
	a, err := b.ownActs(la)
	if err != nil {
		return err
	}
	c := &b.m.Cfg
	n := len(tokens)
	if n > a.cap {
		return fmt.Errorf("forward: %d tokens exceed the state capacity %d", n, a.cap)
	}
	if len(pos) != n {
		return fmt.Errorf("forward: %d tokens but %d positions", n, len(pos))
	}
	if n == 0 {
		return nil
	}
	half := c.HeadDim / 2
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return fmt.Errorf("forward: token id %d at index %d is outside the vocabulary [0, %d)", t, i, c.VocabSize)
		}
		a.hTok[i] = int32(t)
		for j := 0; j < half; j++ {
			ang := float64(pos[i]) * b.m.Freqs[j]
			a.hCos[i*half+j], a.hSin[i*half+j] = float32(math.Cos(ang)), float32(math.Sin(ang))
		}
	}
	d, k := b.d, b.k
	if err := d.Upload(a.tok, unsafe.Slice((*byte)(unsafe.Pointer(&a.hTok[0])), 4*n)); err != nil {
		return err
	}
	if err := d.Upload(a.cos, f32Bytes(a.hCos[:n*half])); err != nil {
		return err
	}
	if err := d.Upload(a.sin, f32Bytes(a.hSin[:n*half])); err != nil {
		return err
	}
	D, hd := c.Dim, c.HiddenDim
	if err := k.Embed(a.x, b.w.tokEmb.p, b.w.tokEmb.kdt, a.tok, n, D); err != nil {
		return err
	}
	a.n = n
	for l := range b.w.layers {
		w := &b.w.layers[l]
		if err := a.qkv(w, n); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		a.at.l = l
		if err := attend(l, &a.at); err != nil {
			return fmt.Errorf("layer %d attention: %w", l, err)
		}
		if err := a.mm(a.xb2, a.att, w.wo, n); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		if err := k.Add(a.x, a.xb2, int64(n*D)); err != nil {
			return err
		}
		if err := k.RMSNorm(a.xb, a.x, w.ffnNorm, n, D, c.NormEps); err != nil {
			return err
		}
		for r0 := 0; r0 < n; r0 += a.mc {
			nr := min(a.mc, n-r0)
			xb := off(a.xb, r0*D)
			if err := a.mm(a.h1, xb, w.w1, nr); err != nil {
				return fmt.Errorf("layer %d: %w", l, err)
			}
			if err := a.mm(a.h3, xb, w.w3, nr); err != nil {
				return fmt.Errorf("layer %d: %w", l, err)
			}
			if err := k.SwiGLU(a.h1, a.h3, int64(nr*hd)); err != nil {
				return err
			}
			if err := a.mm(off(a.xb2, r0*D), a.h1, w.w2, nr); err != nil {
				return fmt.Errorf("layer %d: %w", l, err)
			}
		}
		if err := k.Add(a.x, a.xb2, int64(n*D)); err != nil {
			return err
		}
	}
	return d.Sync()
}

// qkv computes the layer's normalised input and its queries, keys and
// values with RoPE applied.
func (a *acts) qkv(w *devLayer, n int) error {
	c, k := &a.b.m.Cfg, a.b.k
	if err := k.RMSNorm(a.xb, a.x, w.attnNorm, n, c.Dim, c.NormEps); err != nil {
		return err
	}
	if err := a.mm(a.q, a.xb, w.wq, n); err != nil {
		return err
	}
	if err := a.mm(a.k, a.xb, w.wk, n); err != nil {
		return err
	}
	if err := a.mm(a.v, a.xb, w.wv, n); err != nil {
		return err
	}
	if err := k.RoPE(a.q, a.cos, a.sin, n, c.NHeads, c.HeadDim, c.RopeHalfSplit); err != nil {
		return err
	}
	return k.RoPE(a.k, a.cos, a.sin, n, c.NKVHeads, c.HeadDim, c.RopeHalfSplit)
}

// Logits computes the classifier output of rows of the last Run and
// downloads it: out [len(rows), VocabSize].
func (b *Backend) Logits(out []float32, la layers.Acts, rows []int) error {
	a, err := b.ownActs(la)
	if err != nil {
		return err
	}
	c := &b.m.Cfg
	D, V := c.Dim, c.VocabSize
	if len(rows) > a.logitRows {
		if a.logits != 0 {
			b.d.Free(a.logits)
			a.owned = dropPtrs(a.owned, []nccl.Ptr{a.logits})
			a.bytes -= 4 * int64(a.logitRows) * int64(V)
		}
		var err error
		if a.logits, err = a.get(4 * int64(len(rows)) * int64(V)); err != nil {
			a.logits, a.logitRows = 0, 0
			return err
		}
		a.logitRows = len(rows)
	}
	for j, r := range rows {
		if r < 0 || r >= a.n {
			return fmt.Errorf("logits: row %d of a %d-token forward", r, a.n)
		}
		if err := b.k.RMSNorm(off(a.xb, j*D), off(a.x, r*D), b.w.finalNorm, 1, D, c.NormEps); err != nil {
			return err
		}
	}
	if err := a.mm(a.logits, a.xb, b.w.output, len(rows)); err != nil {
		return err
	}
	return b.d.Download(f32Bytes(out[:len(rows)*V]), a.logits)
}

// attn is one layer's attention step on the device.
type attn struct {
	a *acts
	l int
}

func (t *attn) N() int { return t.a.n }

// store writes the fresh keys and values after the first j0 tokens of
// c's layer.
func (t *attn) store(c *cache, j0 int) error {
	a, mc := t.a, &t.a.b.m.Cfg
	n, kvd := a.n, mc.KVDim()
	if err := c.grow(j0 + n); err != nil {
		return err
	}
	if err := a.b.k.StoreKV(c.k[t.l], a.k, c.kdt, j0, n, kvd); err != nil {
		return err
	}
	if err := a.b.k.StoreKV(c.v[t.l], a.v, c.kdt, j0, n, kvd); err != nil {
		return err
	}
	c.lens[t.l] = j0 + n
	return nil
}

func (t *attn) Encode(lc, lprefix layers.Cache) error {
	a, mc := t.a, &t.a.b.m.Cfg
	c, err := a.b.devCache(lc)
	if err != nil {
		return err
	}
	j0 := c.len
	if err := t.store(c, j0); err != nil {
		return err
	}
	var k1, v1 nccl.Ptr
	n1 := 0
	if lprefix != nil && lprefix.Tokens() > 0 {
		p, err := a.b.devCache(lprefix)
		if err != nil {
			return err
		}
		if p.dt != c.dt {
			return fmt.Errorf("attention: prefix K/V in %v, block in %v", p.dt, c.dt)
		}
		k1, v1, n1 = p.k[t.l], p.v[t.l], p.len
	}
	k2, v2 := c.k[t.l]+nccl.Ptr(int64(j0)*c.row), c.v[t.l]+nccl.Ptr(int64(j0)*c.row)
	b := a.b
	return b.timed(attnFlops(mc, a.n, n1+a.n, true), &b.attF, &b.attNs, func() error {
		return b.k.AttentionKV(a.att, a.lse, a.q, k1, v1, n1, k2, v2, a.n, n1+a.n, mc.NHeads, mc.NKVHeads, mc.HeadDim, true, c.kdt)
	})
}

// attnFlops is the flops of attention of nq queries over nk keys (causal:
// the queries are the last nq), 4·D per head and (query, key) pair, as
// the CPU benchmark counts.
func attnFlops(c *weights.Config, nq, nk int, causal bool) int64 {
	pairs := int64(nq) * int64(nk)
	if causal {
		pairs -= int64(nq) * int64(nq-1) / 2
	}
	return 4 * int64(c.HeadDim) * int64(c.NHeads) * max(pairs, 0)
}

func (t *attn) Append(lc layers.Cache) error {
	c, err := t.a.b.devCache(lc)
	if err != nil {
		return err
	}
	return t.store(c, c.len)
}

func (t *attn) Part(p int, lc layers.Cache, causal bool) error {
	a, mc := t.a, &t.a.b.m.Cfg
	c, err := a.b.devCache(lc)
	if err != nil {
		return err
	}
	if err := a.ensureParts(p+1, a.n); err != nil {
		return err
	}
	b, nk := a.b, c.lens[t.l]
	return b.timed(attnFlops(mc, a.n, nk, causal), &b.attF, &b.attNs, func() error {
		if a.n == 1 && nk > 2*SplitKeys { // decode over a long cache: split over the keys
			chunk := max(SplitKeys, (nk+MaxSplits-1)/MaxSplits)
			return b.k.AttentionSplit(a.parts[p], a.partsLSE[p], a.split, a.q, 0, 0, 0, c.k[t.l], c.v[t.l], nk,
				mc.NHeads, mc.NKVHeads, mc.HeadDim, c.kdt, chunk)
		}
		return b.k.AttentionKV(a.parts[p], a.partsLSE[p], a.q, 0, 0, 0, c.k[t.l], c.v[t.l], a.n, nk, mc.NHeads, mc.NKVHeads, mc.HeadDim, causal, c.kdt)
	})
}

func (t *attn) Merge(parts int) error {
	a, mc := t.a, &t.a.b.m.Cfg
	d, rows := a.b.d, a.n*mc.NHeads
	if parts == 0 { // no keys here: out 0, lse -Inf
		if len(a.hInf) < rows {
			a.hInf = make([]float32, a.cap*mc.NHeads)
			for i := range a.hInf {
				a.hInf[i] = float32(math.Inf(-1))
			}
		}
		if err := d.Zero(a.att, 4*int64(rows*mc.HeadDim)); err != nil {
			return err
		}
		return d.Upload(a.lse, f32Bytes(a.hInf[:rows]))
	}
	if err := d.Copy(a.att, a.parts[0], 4*int64(rows*mc.HeadDim)); err != nil {
		return err
	}
	if err := d.Copy(a.lse, a.partsLSE[0], 4*int64(rows)); err != nil {
		return err
	}
	for p := 1; p < parts; p++ {
		if err := a.b.k.MergeInto(a.att, a.lse, a.parts[p], a.partsLSE[p], rows, mc.HeadDim); err != nil {
			return err
		}
	}
	return nil
}

func (t *attn) Exchange(f func(out, lse []float32) error) error {
	a, mc := t.a, &t.a.b.m.Cfg
	out, lse := a.hOut[:a.n*mc.QDim()], a.hLSE[:a.n*mc.NHeads]
	if err := a.b.d.Download(f32Bytes(out), a.att); err != nil {
		return err
	}
	if err := a.b.d.Download(f32Bytes(lse), a.lse); err != nil {
		return err
	}
	if err := f(out, lse); err != nil {
		return err
	}
	if err := a.b.d.Upload(a.att, f32Bytes(out)); err != nil {
		return err
	}
	return a.b.d.Upload(a.lse, f32Bytes(lse))
}

func (t *attn) Host(f func(out, q, k, v []float32) error) error {
	a, mc := t.a, &t.a.b.m.Cfg
	n := a.n
	if a.hQ == nil {
		a.hQ, a.hK, a.hV = make([]float32, a.cap*mc.QDim()), make([]float32, a.cap*mc.KVDim()), make([]float32, a.cap*mc.KVDim())
	}
	out, q, k, v := a.hOut[:n*mc.QDim()], a.hQ[:n*mc.QDim()], a.hK[:n*mc.KVDim()], a.hV[:n*mc.KVDim()]
	for _, x := range []struct {
		dst []float32
		src nccl.Ptr
	}{{q, a.q}, {k, a.k}, {v, a.v}} {
		if err := a.b.d.Download(f32Bytes(x.dst), x.src); err != nil {
			return err
		}
	}
	if err := f(out, q, k, v); err != nil {
		return err
	}
	return a.b.d.Upload(a.att, f32Bytes(out))
}
