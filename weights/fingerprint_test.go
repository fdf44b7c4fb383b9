package weights_test

import (
	"path/filepath"
	"testing"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// A model's fingerprint is the same every time it is loaded, RoPE scaling
// included (a pointer in the config must be hashed by value: separately
// started ranks compare fingerprints, and batch results carry them).
func TestFingerprintStableAcrossLoads(t *testing.T) {
	cfg := weights.Config{Dim: 16, HiddenDim: 32, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 20, SeqLen: 64, NormEps: 1e-5,
		RopeTheta: 500000, RopeScaling: &weights.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 32}}
	for _, format := range []string{"gguf", "hf"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.gguf")
		var err error
		if format == "gguf" {
			err = weightstest.WriteGGUF(path, weightstest.RandomModel(cfg, 1), weights.F32)
		} else {
			path = dir
			err = weightstest.WriteHF(dir, weightstest.RandomModel(cfg, 1), weights.F32, 1)
		}
		if err != nil {
			t.Fatal(err)
		}
		var fps []string
		for i := 0; i < 3; i++ {
			m, err := weights.Load(path, weights.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.RopeScaling == nil {
				t.Fatalf("%s: the test model lost its RoPE scaling", format)
			}
			fps = append(fps, m.Fingerprint)
			m.Close()
		}
		if fps[0] != fps[1] || fps[1] != fps[2] {
			t.Fatalf("%s: fingerprints differ between loads of one file: %v", format, fps)
		}
	}
}
