package weights

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestDummyFromConfigs(t *testing.T) {
	root, _ := filepath.Abs("../configs")
	for _, c := range []struct {
		file   string
		params int64 // by hand from the config
	}{
		// 2 layers x (64x64 wq, wo + 32x64 wk, wv + 3 x 160x64 MLP + 2x64
		// norms) + 64 final norm + 512x64 tied embedding
		{"tiny.json", 2*(2*64*64+2*32*64+3*160*64+2*64) + 64 + 512*64},
	} {
		for _, dt := range []DType{F32, BF16} {
			m, err := LoadDummy(filepath.Join(root, c.file), dt, 1)
			if err != nil {
				t.Fatalf("%s %v: %v", c.file, dt, err)
			}
			if m.Format != "dummy" || m.DType() != dt || m.ParamCount() != c.params {
				t.Fatalf("%s: format %s dtype %v params %d; want dummy, %v, %d params", c.file, m.Format, m.DType(), m.ParamCount(), dt, c.params)
			}
			if !m.Config.RopeHalfSplit {
				t.Fatal("HF-config dummy models use the half-split RoPE layout")
			}
			// random, not constant, and reproducible from the seed
			f := m.Layers[0].WQ.Floats()
			if f[0] == f[1] {
				t.Fatalf("%s: weights look constant", c.file)
			}
			m2, _ := LoadDummy(filepath.Join(root, c.file), dt, 1)
			if m2.Fingerprint != m.Fingerprint {
				t.Fatal("same seed, different weights")
			}
		}
	}
	// the shipped configs all parse
	files, _ := filepath.Glob(filepath.Join(root, "*.json"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if _, _, err := parseHFConfig(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := LoadDummy(filepath.Join(root, "missing.json"), F32, 1); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("missing config: %v", err)
	}
}

// Sizes come from the config alone: DummyBytes equals the bytes NewDummy
// allocates, and DummyShape sizes a 70B model without allocating it.
func TestDummySizesWithoutAllocating(t *testing.T) {
	base := Config{Dim: 64, HiddenDim: 96, NLayers: 3, NHeads: 4, NKVHeads: 2, HeadDim: 16, VocabSize: 50, SeqLen: 32, NormEps: 1e-5, RopeTheta: 1e4}
	for _, tied := range []bool{false, true} {
		for _, dt := range []DType{F32, F16, BF16} {
			c := base
			c.TiedEmbeddings = tied
			m, err := NewDummy(c, dt, 1)
			if err != nil {
				t.Fatal(err)
			}
			n, err := DummyBytes(c, dt)
			if err != nil {
				t.Fatal(err)
			}
			alloc := int64(len(m.TokEmb.Data) + len(m.FinalNorm.Data))
			if !tied {
				alloc += int64(len(m.Output.Data))
			}
			for i := range m.Layers {
				for _, tn := range m.Layers[i].tensors() {
					alloc += int64(len(tn.Data))
				}
			}
			s, err := DummyShape(c, dt)
			if err != nil {
				t.Fatal(err)
			}
			if n != alloc || m.WeightBytes() != alloc || s.WeightBytes() != alloc || s.ParamCount() != m.ParamCount() {
				t.Errorf("tied=%v %v: DummyBytes %d, allocated %d, WeightBytes %d, shape-only WeightBytes %d; params %d vs %d",
					tied, dt, n, alloc, m.WeightBytes(), s.WeightBytes(), s.ParamCount(), m.ParamCount())
			}
			if !s.ShapeOnly || s.TokEmb.Data != nil || s.Layers[0].WQ.Data != nil {
				t.Errorf("DummyShape holds data")
			}
		}
	}
	// a 70B shape: sized, not allocated
	c70 := Config{Dim: 8192, HiddenDim: 28672, NLayers: 80, NHeads: 64, NKVHeads: 8, HeadDim: 128, VocabSize: 128256, SeqLen: 131072, NormEps: 1e-5, RopeTheta: 5e5}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s, err := DummyShape(c70, BF16)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("DummyShape of a 70B config allocated %d bytes", got)
	}
	if p := s.ParamCount(); p < 70e9 || p > 71e9 {
		t.Errorf("70B config: %d parameters", p)
	}
	if n, _ := DummyBytes(c70, BF16); n != s.WeightBytes() || n < 140e9 {
		t.Errorf("70B config: DummyBytes %d, WeightBytes %d", n, s.WeightBytes())
	}
}

// Configs with sizes out of range, or describing more weights than star
// supports, are refused before anything is allocated.
func TestDummyRefusesAbsurdConfigs(t *testing.T) {
	ok := Config{Dim: 64, HiddenDim: 96, NLayers: 3, NHeads: 4, NKVHeads: 2, HeadDim: 16, VocabSize: 50, SeqLen: 32, NormEps: 1e-5, RopeTheta: 1e4}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"zero dim", func(c *Config) { c.Dim = 0 }, "dim"},
		{"negative layers", func(c *Config) { c.NLayers = -1 }, "n_layers"},
		{"huge vocab", func(c *Config) { c.VocabSize = 1 << 30 }, "vocab_size"},
		{"zero context", func(c *Config) { c.SeqLen = 0 }, "context length"},
		{"huge context", func(c *Config) { c.SeqLen = MaxContextLength + 1 }, "context length"},
		{"petabytes of weights", func(c *Config) {
			c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, c.HeadDim = 1<<16, 1<<20, 1<<12, 512, 512, 128
		}, "TiB"},
		{"every size at its limit", func(c *Config) {
			c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, c.HeadDim, c.VocabSize = 1<<24, 1<<24, 1<<24, 1<<12, 1<<12, 1<<12, 1<<24
		}, "TiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.edit(&cfg)
			for _, f := range []func() error{
				func() error { _, err := DummyBytes(cfg, BF16); return err },
				func() error { _, err := DummyShape(cfg, BF16); return err },
				func() error { _, err := NewDummy(cfg, BF16, 1); return err },
			} {
				if err := f(); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %v, want one mentioning %q", err, c.want)
				}
			}
		})
	}
}
