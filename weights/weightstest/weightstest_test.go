package weightstest

import (
	"bytes"
	"testing"

	"github.com/star-attn/star/weights"
)

func TestPermutationsAreInverse(t *testing.T) {
	w := make([]float32, 3*8*5)
	for i := range w {
		w[i] = float32(i)
	}
	h := ToHalfSplit(w, 3, 8, 5)
	// Head 1, half 4: HF row 1*8 + 1*4 + 2 = 14 holds adjacent row 1*8 + 2*2 + 1 = 13.
	if h[14*5] != w[13*5] {
		t.Errorf("HF row 14 starts with %g, want adjacent row 13 (%g)", h[14*5], w[13*5])
	}
	a := ToAdjacent(h, 3, 8, 5)
	for i := range w {
		if a[i] != w[i] {
			t.Fatalf("ToAdjacent(ToHalfSplit(w))[%d] = %g, want %g", i, a[i], w[i])
		}
	}
}

func TestRandomModelIsValidAndDeterministic(t *testing.T) {
	cfg := weights.Config{Dim: 16, HiddenDim: 8, NLayers: 2, NHeads: 2, VocabSize: 9}
	a, b := RandomModel(cfg, 5), RandomModel(cfg, 5)
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Layers[1].W2.Data, b.Layers[1].W2.Data) {
		t.Error("same seed, different weights")
	}
	if c := RandomModel(cfg, 6); bytes.Equal(a.TokEmb.Data, c.TokEmb.Data) {
		t.Error("different seeds, same weights")
	}
	if a.Config.RopeHalfSplit || a.Config.HeadDim != 8 || a.Config.NKVHeads != 2 || a.Config.SeqLen == 0 {
		t.Errorf("defaults: %+v", a.Config)
	}
	n := a.FinalNorm.Floats()
	if n[0] < 0.7 || n[0] > 1.3 {
		t.Errorf("norm weight %g is not near 1", n[0])
	}
}

func TestWritersRefuse(t *testing.T) {
	m := RandomModel(weights.Config{Dim: 16, HiddenDim: 8, NLayers: 1, NHeads: 2, HeadDim: 6, VocabSize: 9}, 1)
	if _, err := EncodeLlama2C(m); err == nil {
		t.Error("llama2.c writer accepted head_dim*n_heads != dim")
	}
	if _, err := EncodeGGUF([]GGUFKV{{"x", struct{}{}}}, nil); err == nil {
		t.Error("EncodeGGUF accepted a struct value")
	}
	if err := WriteHF(t.TempDir(), m, weights.F32, 100); err == nil {
		t.Error("WriteHF accepted more shards than tensors")
	}
}
