package weights

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	total := mats*float64(dtype.Size()) + 4*norms
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
	if dtype != F32 && dtype != F16 && dtype != BF16 {
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
				t.Data = make([]byte, t.Numel()*dtype.Size())
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

// fillRandom writes uniform values in [-a√3, a√3] (standard deviation a).
func fillRandom(t *Tensor, a float64, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	span := float32(a * math.Sqrt(3))
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

// ParseDType reads a dtype name (f32, f16, bf16; any case).
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "F32", "float32":
		return F32, nil
	case "f16", "F16", "float16":
		return F16, nil
	case "bf16", "BF16", "bfloat16":
		return BF16, nil
	}
	return F32, fmt.Errorf("dtype %q: use f32, f16 or bf16", s)
}
