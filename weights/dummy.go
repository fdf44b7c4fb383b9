package weights

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// LoadDummy builds a model of the shape a Hugging Face config.json
// describes, with random weights made in memory (no weight file), stored in
// dtype: for benchmarking any Llama shape. Matrices are ~N(0, 1/sqrt(in)),
// norms 1, so activations stay in range. The model has no tokenizer.
// Callers that care about memory check DummyBytes first (star does,
// against the memory available).
func LoadDummy(configPath string, dtype DType, seed uint64) (*Model, error) {
	cfg, path, err := ReadDummyConfig(configPath)
	if err != nil {
		return nil, err
	}
	m, err := NewDummy(cfg, dtype, seed)
	if err != nil {
		return nil, err
	}
	m.Path = path
	return m, nil
}

// ReadDummyConfig reads the Hugging Face config.json at path (or in the
// folder path) for dummy weights; it returns the config's path too.
func ReadDummyConfig(path string) (Config, string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, hfConfigFile) // a checkpoint folder: its config
	}
	k, err := Sniff(path)
	if err != nil {
		return Config{}, path, fmt.Errorf("--model-config: %w", err)
	}
	if k != KindHFConfig && k != KindJSON {
		return Config{}, path, fmt.Errorf("--model-config %s is %s, not a model's config.json: pass a Hugging Face config.json (see configs/)", path, k)
	}
	b, err := readSmallFile(path, hfMaxConfigBytes)
	if err != nil {
		return Config{}, path, err
	}
	cfg, tied, err := parseHFConfig(b)
	if err != nil {
		return Config{}, path, fmt.Errorf("model config %s: %w", path, err)
	}
	cfg.TiedEmbeddings = tied
	if _, err := DummyBytes(cfg, F32); err != nil {
		return Config{}, path, fmt.Errorf("model config %s: %w", path, err)
	}
	return cfg, path, nil
}

// MaxWeightBytes bounds the weights a config may describe (64 TiB, far
// beyond any machine): within it, no size star derives from the config
// (K/V per token times a context, activations) overflows.
const MaxWeightBytes = 1 << 46

// DummyBytes is the memory the weights of cfg take as dummy weights in
// dtype (matrices in dtype, norms in F32, a tied classifier once),
// computed without allocating anything. A config beyond MaxWeightBytes is
// an error.
func DummyBytes(cfg Config, dtype DType) (int64, error) {
	if err := cfg.Check(); err != nil {
		return 0, err
	}
	if be := dtype.BlockElems(); be > 1 {
		for _, d := range []struct {
			name string
			n    int
		}{{"hidden_size", cfg.Dim}, {"intermediate_size", cfg.HiddenDim}, {"heads x head_dim", cfg.QDim()}} {
			if d.n%be != 0 {
				return 0, fmt.Errorf("%v weights come in blocks of %d along each row: %s %d is not a multiple of %d", dtype, be, d.name, d.n, be)
			}
		}
	}
	var mats, norms float64
	CheckOrder.specs(func(s *TensorSpec) {
		switch {
		case s.Classifier && cfg.TiedEmbeddings:
		case s.Norm:
			norms += s.numel(&cfg)
		default:
			mats += s.numel(&cfg)
		}
	})
	total := mats*float64(dtype.BlockBytes())/float64(dtype.BlockElems()) + 4*norms
	if total > MaxWeightBytes {
		return 0, fmt.Errorf("the config describes %.3g parameters (%.0f TiB of weights), beyond the %d TiB star supports; check its sizes",
			mats+norms, total/(1<<40), MaxWeightBytes>>40)
	}
	return int64(total), nil
}

// DummyShape is a model of cfg's shape whose tensors have names, dtypes
// and shapes but no data: for sizing (star inspect) without allocating.
// It must not be computed with.
func DummyShape(cfg Config, dtype DType) (*Model, error) {
	if _, err := DummyBytes(cfg, dtype); err != nil {
		return nil, err
	}
	return newDummy(cfg, dtype, 0, false)
}

// NewDummy is LoadDummy from a Config.
func NewDummy(cfg Config, dtype DType, seed uint64) (*Model, error) {
	if _, err := DummyBytes(cfg, dtype); err != nil {
		return nil, err
	}
	return newDummy(cfg, dtype, seed, true)
}

func newDummy(cfg Config, dtype DType, seed uint64, alloc bool) (*Model, error) {
	if !dtype.Valid() {
		return nil, fmt.Errorf("dummy weights: unsupported dtype %v", dtype)
	}
	m := &Model{Config: cfg, Format: "dummy", Layers: make([]Layer, cfg.NLayers)}
	var jobs []func()
	k := uint64(0)
	m.Walk(FileOrder, func(s *TensorSpec, layer int, t *Tensor) error {
		switch {
		case s.Classifier && cfg.TiedEmbeddings:
			*t = m.TokEmb
		case s.Norm:
			*t = Tensor{Name: s.GGUFName(layer), DType: F32, Shape: s.Shape(&cfg)}
			if alloc {
				t.Data = make([]byte, 4*t.Numel())
				f := t.F32()
				for i := range f {
					f[i] = 1
				}
			}
		default:
			*t = Tensor{Name: s.GGUFName(layer), DType: dtype, Shape: s.Shape(&cfg)}
			if alloc {
				t.Data = make([]byte, t.Bytes())
				k++
				sd := seed*1000003 + k
				jobs = append(jobs, func() { fillRandom(t, 1/math.Sqrt(float64(t.Cols())), sd) })
			}
		}
		return nil
	})
	fillParallel(jobs)
	m.ShapeOnly = !alloc
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Fingerprint = fingerprint(m)
	return m, nil
}

// fillParallel runs the fill jobs on 4 goroutines: an 8B model is 16 GB
// of random numbers.
func fillParallel(jobs []func()) {
	var wg sync.WaitGroup
	ch := make(chan func())
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				f()
			}
		}()
	}
	for _, f := range jobs {
		ch <- f
	}
	close(ch)
	wg.Wait()
}

// fillRandom writes uniform values in [-a√3, a√3] (standard deviation a);
// quantized tensors get random blocks of about that spread.
func fillRandom(t *Tensor, a float64, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	span := float32(a * math.Sqrt(3))
	if t.DType.Quantized() {
		fillRandomBlocks(t, span, r)
		return
	}
	switch t.DType {
	case F32:
		for i, f := 0, t.F32(); i < len(f); i++ {
			f[i] = (r.Float32()*2 - 1) * span
		}
	case F16:
		for i, u := 0, t.U16(); i < len(u); i++ {
			u[i] = F32ToF16((r.Float32()*2 - 1) * span)
		}
	case BF16:
		for i, u := 0, t.U16(); i < len(u); i++ {
			u[i] = F32ToBF16((r.Float32()*2 - 1) * span)
		}
	}
}

// fillRandomBlocks fills a quantized tensor with random blocks whose
// weights spread over about [-span, span], centred on 0: random quants
// under valid scales (and, for Q4_K/Q5_K, sub-block mins near the middle
// of the quants' range), made directly without quantizing anything.
func fillRandomBlocks(t *Tensor, span float32, r *rand.Rand) {
	bb := t.DType.BlockBytes()
	b := t.Data
	rnd := func(p []byte) {
		for i := 0; i < len(p); i += 8 {
			v := r.Uint64()
			for j := i; j < min(i+8, len(p)); j++ {
				p[j] = byte(v >> (8 * (j - i)))
			}
		}
	}
	for off := 0; off+bb <= len(b); off += bb {
		blk := b[off : off+bb]
		rnd(blk)
		switch t.DType {
		case Q8_0: // w = d·q, q in [-128, 127]
			le.PutUint16(blk, F32ToF16(span/127))
		case Q4_0: // w = d·(q-8), q in [0, 15]
			le.PutUint16(blk, F32ToF16(span/8))
		case Q4_K, Q5_K: // w = d·sc·q - dmin·m, q in [0, 15] (or 31)
			half := 7.5
			if t.DType == Q5_K {
				half = 15.5
			}
			var sc, m [8]uint8
			for j := range sc {
				sc[j] = uint8(2 + r.IntN(3)) // 2..4
				m[j] = uint8(math.Round(half * float64(sc[j])))
			}
			d := F32ToF16(span / float32(half*3))
			le.PutUint16(blk, d)
			le.PutUint16(blk[2:], d)
			sm := PackScaleMinK4(sc, m)
			copy(blk[4:16], sm[:])
		case Q6_K: // w = d·sc·(q-32), q in [0, 63], sc int8 per 16
			for j := 0; j < 16; j++ {
				blk[192+j] = uint8(8 + r.IntN(9)) // 8..16
			}
			le.PutUint16(blk[208:], F32ToF16(span/(32*12)))
		}
	}
}

// PackScaleMinK4 lays out the 6-bit scales and mins of a Q4_K or Q5_K
// super-block's 8 sub-blocks in their 12 bytes as ggml does: bytes 0-3
// hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; bytes 8-11
// hold the low 4 bits of scales 4-7 (low nibble) and of mins 4-7 (high
// nibble); the top 2 bits of scales 4-7 and mins 4-7 sit in the top 2
// bits of bytes 0-3 and 4-7. Values above 63 are cut to 6 bits.
func PackScaleMinK4(sc, m [8]uint8) [12]byte {
	var q [12]byte
	for j := 0; j < 4; j++ {
		q[j] = sc[j]&63 | (sc[j+4]>>4&3)<<6
		q[j+4] = m[j]&63 | (m[j+4]>>4&3)<<6
		q[j+8] = sc[j+4]&15 | (m[j+4]&15)<<4
	}
	return q
}

// ParseDType reads a dtype name (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k,
// q6_k; any case).
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32":
		return F32, nil
	case "float16":
		return F16, nil
	case "bfloat16":
		return BF16, nil
	}
	for _, d := range DTypes() {
		if strings.EqualFold(s, d.String()) {
			return d, nil
		}
	}
	return F32, fmt.Errorf("dtype %q: use f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k", s)
}
