package weights_test

import (
	"path/filepath"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// GGUFMetadata reads what a writer wrote, and a real file's vocabulary.
func TestGGUFMetadata(t *testing.T) {
	m := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 16, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 3, SeqLen: 8, NormEps: 1e-5, RopeTheta: 10000}, 1)
	path := filepath.Join(t.TempDir(), "m.gguf")
	toks := []string{"a", "b", "c"}
	extra := []weightstest.GGUFKV{{Key: "tokenizer.ggml.tokens", Value: toks}, {Key: "tokenizer.ggml.model", Value: "llama"}}
	if err := weightstest.WriteGGUFWithMetadata(path, m, weights.F32, extra); err != nil {
		t.Fatal(err)
	}
	keys, kv, err := weights.GGUFMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := kv["tokenizer.ggml.tokens"].([]string); !ok || len(got) != 3 || got[2] != "c" {
		t.Fatalf("tokens %#v, want %v", kv["tokenizer.ggml.tokens"], toks)
	}
	if kv["general.architecture"] != "llama" || kv["tokenizer.ggml.model"] != "llama" || len(keys) != len(kv) {
		t.Fatalf("keys %v", keys)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("keys not sorted: %v", keys)
		}
	}
	if _, _, err := weights.GGUFMetadata(filepath.Join(t.TempDir(), "none.gguf")); err == nil {
		t.Fatal("a missing file read")
	}

	donor := shared.Path(t, "models/gguf/tiny-random-llama2.gguf")
	_, kv, err = weights.GGUFMetadata(donor)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := kv["tokenizer.ggml.tokens"].([]string); len(got) != 32000 {
		t.Fatalf("%s: %d tokens, want 32000", donor, len(got))
	}
}
