package layerstest

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// The conformance suite of layers.Backend, the device-resident seam: one
// scenario of Star Attention (phase 1 with an anchor, phase 2 with a query,
// a cross-rank exchange and decode steps that grow the query cache; a
// truncated query cache; host-staged attention; an empty merge; K/V
// downloaded and uploaded) runs on the backend under test and on the CPU
// backend with the pure-Go reference kernels, and every observation must
// agree: logits and K/V within BackendTol of the weights' and K/V's
// dtypes, relative to the largest magnitude; K/V round trips exactly.

// OpenBackend puts model m on the backend under test.
type OpenBackend func(t *testing.T, m *layers.Model) layers.Backend

// BackendTol is the relative tolerance of a backend against the CPU
// reference for weights or K/V of dtype dt: float32 1e-5; F16 2e-3 and
// BF16 1e-2 (a device's products may round their activations to the
// weights' 16-bit type; K/V rounded to 16 bits may round a value the
// other way).
func BackendTol(dt weights.DType) float64 {
	switch dt {
	case weights.F16:
		return 2e-3
	case weights.BF16:
		return 1e-2
	}
	return 1e-5
}

// BackendConfig is the model shape of the suite: grouped-query attention
// (4 heads, 2 kv heads), two layers.
var BackendConfig = weights.Config{Dim: 64, HiddenDim: 96, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 40, SeqLen: 128}

// ModelOf is a random model of cfg (seed) whose matrices are stored in dt
// (F32, F16 or BF16; norms stay F32).
func ModelOf(cfg weights.Config, seed int64, dt weights.DType) *weights.Model {
	m := weightstest.RandomModel(cfg, seed)
	m.Walk(weights.CheckOrder, func(s *weights.TensorSpec, _ int, t *weights.Tensor) error {
		if !s.Norm && !(s.Classifier && m.Config.TiedEmbeddings) {
			*t = weights.Tensor{Name: t.Name, DType: dt, Shape: t.Shape, Data: weightstest.EncodeFloats(t.F32(), dt)}
		}
		return nil
	})
	if m.Config.TiedEmbeddings {
		m.Output = m.TokEmb
	}
	return m
}

// RunBackend runs the suite on backends open makes, as subtests of t
// named name/<weights>/<kv>.
func RunBackend(t *testing.T, name string, open OpenBackend) {
	t.Run(name, func(t *testing.T) {
		for _, wdt := range []weights.DType{weights.F32, weights.BF16, weights.F16} {
			w := ModelOf(BackendConfig, 5, wdt)
			for _, kdt := range layers.KVDTypes {
				t.Run(fmt.Sprintf("weights-%v/kv-%s", wdt, layers.KVDTypeName(kdt)), func(t *testing.T) {
					ref := layers.OnHost(layers.NewModel(w, layers.NewCPUReference(1)))
					b := open(t, layers.NewModel(w, layers.NewCPUReference(1)))
					want, err := starScenario(ref, kdt)
					if err != nil {
						t.Fatalf("CPU reference: %v", err)
					}
					got, err := starScenario(b, kdt)
					if err != nil {
						t.Fatalf("%s: %v", b.Name(), err)
					}
					tol := math.Max(BackendTol(wdt), BackendTol(kdt))
					compareObs(t, got, want, tol)
				})
			}
		}
		t.Run("Errors", func(t *testing.T) { backendErrors(t, open) })
	})
}

// obs is what the scenario observed, by name, in order.
type obs struct {
	names []string
	vals  [][]float32
	exact [][]byte // must round-trip byte for byte
	notes []string // self-consistency failures
}

func (o *obs) add(name string, v []float32) {
	o.names = append(o.names, name)
	o.vals = append(o.vals, append([]float32(nil), v...))
}

func compareObs(t *testing.T, got, want *obs, tol float64) {
	t.Helper()
	for _, n := range got.notes {
		t.Error(n)
	}
	if len(got.vals) != len(want.vals) {
		t.Fatalf("%d observations, the reference made %d", len(got.vals), len(want.vals))
	}
	for i := range want.vals {
		g, w := got.vals[i], want.vals[i]
		if len(g) != len(w) {
			t.Errorf("%s: %d values, want %d", want.names[i], len(g), len(w))
			continue
		}
		scale := 1.0
		for _, x := range w {
			if !math.IsInf(float64(x), 0) {
				scale = math.Max(scale, math.Abs(float64(x)))
			}
		}
		if d := MaxDiff(g, w); d > tol*scale || math.IsNaN(d) {
			t.Errorf("%s: max difference %.3g > %.3g (tolerance %g of max |ref| %.3g)", want.names[i], d, tol*scale, tol, scale)
		} else {
			t.Logf("%s: max difference %.3g (allowed %.3g)", want.names[i], d, tol*scale)
		}
	}
}

// cacheFloats is a cache's K/V, downloaded, as float32 token-major.
func cacheFloats(c layers.Cache) ([]float32, []byte, error) {
	h, err := c.Host()
	if err != nil {
		return nil, nil, err
	}
	var f []float32
	var raw []byte
	for l := range h.K {
		for _, b := range []*layers.KVBuf{h.K[l], h.V[l]} {
			tm := make([]float32, h.Len*b.HKV*b.D)
			b.TokenMajor(tm, h.Len)
			f = append(f, tm...)
			for hh := 0; hh < b.HKV; hh++ {
				raw = append(raw, b.HeadRaw(hh, h.Len)...)
			}
		}
	}
	return f, raw, nil
}

// starScenario runs Star Attention's two phases on b with K/V of dtype kdt.
func starScenario(b layers.Backend, kdt weights.DType) (*obs, error) {
	m := b.Model()
	c := &m.Cfg
	o := &obs{}
	r := rand.New(rand.NewPCG(3, 4))
	toks := make([]int, 40)
	for i := range toks {
		toks[i] = r.IntN(c.VocabSize)
	}
	const a, bs = 4, 12 // anchor, block size
	acts, err := b.NewActs(bs)
	if err != nil {
		return nil, err
	}
	defer acts.Free()
	if err := acts.Reserve(3, bs, a+bs); err != nil {
		return nil, err
	}
	positions := func(p0, n int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = p0 + i
		}
		return p
	}
	encode := func(dst, prefix layers.Cache, t []int, p0 int) error {
		err := b.Run(acts, t, positions(p0, len(t)), func(l int, at layers.Attn) error { return at.Encode(dst, prefix) })
		if err == nil {
			dst.Commit(len(t))
		}
		return err
	}
	// phase 1: B_0 alone; the anchor alone; B_1 after the anchor (true positions)
	var caches []layers.Cache
	newCache := func(n int) (layers.Cache, error) {
		kc, err := b.NewCache(kdt, n)
		if err == nil {
			caches = append(caches, kc)
		}
		return kc, err
	}
	defer func() {
		for _, kc := range caches {
			kc.Free()
		}
	}()
	b0, err := newCache(bs)
	if err != nil {
		return nil, err
	}
	if err := encode(b0, nil, toks[:bs], 0); err != nil {
		return nil, fmt.Errorf("encode B_0: %w", err)
	}
	anchor, err := newCache(a)
	if err != nil {
		return nil, err
	}
	if err := encode(anchor, nil, toks[:a], 0); err != nil {
		return nil, fmt.Errorf("encode the anchor: %w", err)
	}
	b1, err := newCache(bs)
	if err != nil {
		return nil, err
	}
	if err := encode(b1, anchor, toks[bs:2*bs], bs); err != nil {
		return nil, fmt.Errorf("encode B_1: %w", err)
	}
	// B_2 after a view of B_0's first a rows (the anchor on B_0's rank)
	b2, err := newCache(bs)
	if err != nil {
		return nil, err
	}
	if err := encode(b2, b0.Prefix(a), toks[2*bs:3*bs], 2*bs); err != nil {
		return nil, fmt.Errorf("encode B_2: %w", err)
	}
	for i, kc := range []layers.Cache{b0, anchor, b1, b2} {
		f, raw, err := cacheFloats(kc)
		if err != nil {
			return nil, err
		}
		o.add(fmt.Sprintf("phase 1 K/V of cache %d", i), f)
		// round trip: up and down again, byte for byte
		h, _ := kc.Host()
		up, err := b.Upload(h)
		if err != nil {
			return nil, err
		}
		_, raw2, err := cacheFloats(up)
		up.Free()
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(raw, raw2) {
			o.notes = append(o.notes, fmt.Sprintf("cache %d: K/V changed on a round trip through Upload and Host", i))
		}
	}
	// phase 2: the query over the blocks and, causally, the query cache
	// (capacity 2: it grows), merged, then exchanged with a remote part
	query, err := newCache(2)
	if err != nil {
		return nil, err
	}
	blocks := []layers.Cache{b0, b1, b2}
	remote := RandSlice(r, bs*c.QDim(), 1)
	remoteLSE := RandSlice(r, bs*c.NHeads, 2)
	logits := make([]float32, bs*c.VocabSize)
	step := func(t []int, p0 int, name string) error {
		n := len(t)
		err := b.Run(acts, t, positions(p0, n), func(l int, at layers.Attn) error {
			for i, kc := range blocks {
				if err := at.Part(i, kc, false); err != nil {
					return err
				}
			}
			if err := at.Append(query); err != nil {
				return err
			}
			if err := at.Part(len(blocks), query, true); err != nil {
				return err
			}
			if err := at.Merge(len(blocks) + 1); err != nil {
				return err
			}
			return at.Exchange(func(out, lse []float32) error {
				if l == 0 {
					o.add(name+": layer 0 merged attention", out)
					o.add(name+": layer 0 merged lse", lse)
				}
				for i := 0; i < n*c.NHeads; i++ { // another rank's part
					layers.MergeInto(out[i*c.HeadDim:(i+1)*c.HeadDim], lse[i:i+1], remote[i*c.HeadDim:(i+1)*c.HeadDim], remoteLSE[i:i+1], c.HeadDim)
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		query.Commit(n)
		rows := []int{n - 1}
		if n > 1 {
			rows = []int{0, n - 1}
		}
		if err := b.Logits(logits, acts, rows); err != nil {
			return err
		}
		o.add(name+": logits", logits[:len(rows)*c.VocabSize])
		return nil
	}
	p := 3 * bs
	if err := step(toks[30:33], p, "query"); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	var first []float32
	for i := 0; i < 4; i++ {
		if err := step(toks[33+i:34+i], p+3+i, fmt.Sprintf("decode %d", i)); err != nil {
			return nil, fmt.Errorf("decode %d: %w", i, err)
		}
		if i == 0 {
			first = append([]float32(nil), logits[:c.VocabSize]...)
		}
	}
	if query.Tokens() != 7 {
		o.notes = append(o.notes, fmt.Sprintf("the query cache holds %d tokens, want 7", query.Tokens()))
	}
	// a new query on the same context: the first decode step again
	query.Truncate(3)
	if err := step(toks[33:34], p+3, "decode 0 again"); err != nil {
		return nil, err
	}
	if d := MaxDiff(first, logits[:c.VocabSize]); d != 0 {
		o.notes = append(o.notes, fmt.Sprintf("after Truncate the same step gives logits %g away", d))
	}
	// host-staged attention (ring attention's path) and an empty merge
	err = b.Run(acts, toks[:5], positions(0, 5), func(l int, at layers.Attn) error {
		if l == 0 {
			if err := at.Merge(0); err != nil {
				return err
			}
			err := at.Exchange(func(out, lse []float32) error {
				for i := range out {
					if out[i] != 0 {
						return fmt.Errorf("an empty merge gives out %g", out[i])
					}
				}
				for i := range lse {
					if !math.IsInf(float64(lse[i]), -1) {
						return fmt.Errorf("an empty merge gives lse %g, want -Inf", lse[i])
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return at.Host(func(out, q, k, v []float32) error {
			n := at.N()
			lse := make([]float32, n*c.NHeads)
			layers.Attention(layers.NewCPUReference(1), out, lse, q, k, v, n, n, m.Shape(), true)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("host-staged attention: %w", err)
	}
	if err := b.Logits(logits, acts, []int{4}); err != nil {
		return nil, err
	}
	o.add("host-staged attention: logits", logits[:c.VocabSize])
	return o, nil
}

// backendErrors: what a backend must refuse, with an error, not a crash.
func backendErrors(t *testing.T, open OpenBackend) {
	w := ModelOf(BackendConfig, 5, weights.F32)
	b := open(t, layers.NewModel(w, layers.NewCPUReference(1)))
	acts, err := b.NewActs(4)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	none := func(int, layers.Attn) error { return nil }
	if err := b.Run(acts, []int{1, 2, 3, 4, 5}, []int{0, 1, 2, 3, 4}, none); err == nil {
		t.Error("5 tokens ran on activations of 4")
	}
	if err := b.Run(acts, []int{1, BackendConfig.VocabSize}, []int{0, 1}, none); err == nil {
		t.Error("a token outside the vocabulary ran")
	}
	if err := b.Run(acts, []int{1, 2}, []int{0}, none); err == nil {
		t.Error("2 tokens ran with 1 position")
	}
	// a host cache handed to a device backend
	own, err := b.NewCache(weights.F32, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Free()
	if layers.HostCache(own) == nil {
		var foreign layers.Cache = layers.NewKV(&w.Config, weights.F32, 4)
		err = b.Run(acts, []int{1}, []int{0}, func(l int, at layers.Attn) error { return at.Part(0, foreign, false) })
		if err == nil {
			t.Error("a host cache was used as the device's")
		}
	}
}
