package weights

import (
	"os"
	"path/filepath"
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
