package weights_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// What a file is comes from its content, whatever its name.
func TestSniff(t *testing.T) {
	sharedDir := filepath.Dir(shared.Path(t, "README.md"))
	src := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 5, SeqLen: 8, NormEps: 1e-5, RopeTheta: 10000}, 1)
	ckpt, err := weightstest.EncodeLlama2C(src)
	if err != nil {
		t.Fatal(err)
	}
	_, ts, err := weightstest.HFContent(src, weights.F32)
	if err != nil {
		t.Fatal(err)
	}
	st, err := weightstest.EncodeSafetensors(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	gguf := filepath.Join(t.TempDir(), "m.gguf")
	if err := weightstest.WriteGGUF(gguf, src, weights.F32); err != nil {
		t.Fatal(err)
	}
	gb, _ := os.ReadFile(gguf)
	cases := []struct {
		name string
		path string // a shared file, or "" to write data
		data []byte
		want weights.Kind
	}{
		{"stories260K.bin", "models/stories260K/stories260K.bin", nil, weights.KindLlama2C},
		{"tok512.bin", "models/stories260K/tok512.bin", nil, weights.KindLlama2CTokenizer},
		{"tok512.model", "models/stories260K/tok512.model", nil, weights.KindSentencePiece},
		{"stories260K.gguf", "models/gguf/stories260K.gguf", nil, weights.KindGGUF},
		{"llama2 tokenizer.model", "tokenizers/llama2/tokenizer.model", nil, weights.KindSentencePiece},
		{"llama2 tokenizer.bin", "tokenizers/llama2/tokenizer.bin", nil, weights.KindLlama2CTokenizer},
		{"llama3 tokenizer.model", "tokenizers/llama3/tokenizer.model", nil, weights.KindTiktoken},
		{"llama3 tokenizer.json", "tokenizers/llama3/tokenizer.json", nil, weights.KindTokenizerJSON},
		{"llama3 tokenizer_config.json", "tokenizers/llama3/tokenizer_config.json", nil, weights.KindTokenizerConfig},
		{"written checkpoint", "", ckpt, weights.KindLlama2C},
		{"checkpoint cut short", "", ckpt[:len(ckpt)-4], weights.KindUnknown},
		{"checkpoint header cut short", "", ckpt[:14], weights.KindUnknown},
		{"written gguf", "", gb, weights.KindGGUF},
		{"gguf with a wrong magic", "", append([]byte("GGUX"), gb[4:]...), weights.KindUnknown},
		{"safetensors", "", st, weights.KindSafetensors},
		{"empty", "", []byte{}, weights.KindEmpty},
		{"zip", "", []byte("PK\x03\x04\x14\x00\x00\x00archive/data.pkl"), weights.KindZip},
		{"pickle", "", []byte("\x80\x02}q\x00(X\x05\x00\x00\x00model"), weights.KindPickle},
		{"lfs pointer", "", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 123\n"), weights.KindLFSPointer},
		{"html", "", []byte("\n<!DOCTYPE html><html><body>Not found</body></html>"), weights.KindHTML},
		{"config", "", []byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 8}`), weights.KindHFConfig},
		{"index", "", []byte(`{"metadata": {}, "weight_map": {"a": "b.safetensors"}}`), weights.KindHFIndex},
		{"other json", "", []byte(`{"temperature": 0.7}`), weights.KindJSON},
		{"prompt text", "", []byte("Once upon a time\n\nWhat happened?"), weights.KindText},
		{"binary noise", "", []byte{1, 0, 0, 0, 0xff, 0xfe, 0, 7, 9}, weights.KindUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(sharedDir, c.path)
			if c.path == "" {
				p = filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(p, c.data, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if _, err := os.Stat(p); err != nil {
				t.Skipf("%s absent", c.path)
			}
			got, err := weights.Sniff(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("Sniff = %v, want %v", got, c.want)
			}
		})
	}
}

// Every model and tokenizer path refuses a file of the wrong kind with
// one line saying what the file is and what to pass instead.
func TestWrongFileMessages(t *testing.T) {
	sharedDir := filepath.Dir(shared.Path(t, "README.md"))
	sh := func(rel string) func(t *testing.T) string {
		return func(t *testing.T) string { return shared.Path(t, rel) }
	}
	file := func(name string, data []byte) func(t *testing.T) string {
		return func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	copyOf := func(rel, name string) func(t *testing.T) string {
		return func(t *testing.T) string {
			b, err := os.ReadFile(filepath.Join(sharedDir, rel))
			if err != nil {
				t.Skip(err)
			}
			return file(name, b)(t)
		}
	}
	folder := func(files map[string]string) func(t *testing.T) string {
		return func(t *testing.T) string {
			d := t.TempDir()
			for name, rel := range files {
				b, err := os.ReadFile(filepath.Join(sharedDir, rel))
				if err != nil {
					t.Skip(err)
				}
				if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return d
		}
	}
	ggufBytes, _ := os.ReadFile(filepath.Join(sharedDir, "models/gguf/stories260K.gguf"))
	badMagic := append([]byte("GGUX"), ggufBytes[min(4, len(ggufBytes)):]...)
	model := []struct {
		name string
		path func(t *testing.T) string
		want []string
	}{
		{"gguf with a wrong magic", file("model.gguf", badMagic), []string{"model.gguf", "GGUF magic", "GGUX"}},
		{"safetensors-named garbage", file("model.safetensors", []byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09")), []string{"model.safetensors", "safetensors header"}},
		{"llama2.c tokenizer", sh("models/stories260K/tok512.bin"), []string{"llama2.c tokenizer", "--tokenizer", "--model"}},
		{"tokenizer.json", sh("tokenizers/llama3/tokenizer.json"), []string{"tokenizer.json", "--tokenizer"}},
		{"tiktoken tokenizer.model", sh("tokenizers/llama3/tokenizer.model"), []string{"tiktoken", "--model"}},
		{"SentencePiece tokenizer.model", sh("models/stories260K/tok512.model"), []string{"SentencePiece", "--model"}},
		{"tokenizer_config.json", sh("tokenizers/llama3/tokenizer_config.json"), []string{"tokenizer_config.json", "--model"}},
		{"empty file", file("model.bin", nil), []string{"empty", "--model"}},
		{"empty .gguf", file("model.gguf", nil), []string{"empty"}},
		{"text", file("prompt.txt", []byte("Once upon a time")), []string{"text file", "--prompt"}},
		{"lfs pointer", file("model.gguf", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")), []string{"Git LFS", "git lfs pull"}},
		{"pytorch zip", file("pytorch_model.bin", []byte("PK\x03\x04rest")), []string{"zip", "safetensors"}},
		{"some JSON", file("settings.json", []byte(`{"a": 1}`)), []string{"JSON", "config.json"}},
		{"folder without config.json", folder(map[string]string{"tokenizer.json": "tokenizers/llama3/tokenizer.json"}), []string{"no config.json", "tokenizer.json", "--tokenizer"}},
		{"folder with a gguf", folder(map[string]string{"model.gguf": "models/gguf/stories260K.gguf"}), []string{"no config.json", "model.gguf", "pass that file"}},
		{"empty folder", folder(nil), []string{"no config.json", ".gguf"}},
	}
	for _, c := range model {
		t.Run("model/"+c.name, func(t *testing.T) { expectPathError(t, c.path(t), c.want...) })
	}
	// The content decides, not the name: a GGUF named .bin loads.
	t.Run("model/gguf named .bin", func(t *testing.T) { load(t, copyOf("models/gguf/stories260K.gguf", "model.bin")(t)) })

	tok := []struct {
		name string
		path func(t *testing.T) string
		want []string
	}{
		{"llama2.c checkpoint", sh("models/stories260K/stories260K.bin"), []string{"llama2.c checkpoint", "--model"}},
		{"tiktoken tokenizer.model", sh("tokenizers/llama3/tokenizer.model"), []string{"tiktoken", "tokenizer.json"}},
		{"SentencePiece tokenizer.model", sh("tokenizers/llama2/tokenizer.model"), []string{"SentencePiece", "tokenizer.bin"}},
		{"tokenizer_config.json", sh("tokenizers/llama3/tokenizer_config.json"), []string{"tokenizer_config.json", "tokenizer.json"}},
		{"safetensors", func(t *testing.T) string {
			src := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 5, SeqLen: 8}, 1)
			_, ts, _ := weightstest.HFContent(src, weights.F32)
			b, _ := weightstest.EncodeSafetensors(ts, nil)
			return file("model.safetensors", b)(t)
		}, []string{"safetensors", "not a tokenizer"}},
		{"config.json", file("config.json", []byte(`{"model_type": "llama", "hidden_size": 8}`)), []string{"config.json", "not a tokenizer"}},
		{"empty", file("tokenizer.bin", nil), []string{"empty", "--tokenizer"}},
		{"text", file("tokenizer.txt", []byte("hello there")), []string{"text file", "--tokenizer"}},
		{"folder without tokenizer.json", folder(map[string]string{"tok512.bin": "models/stories260K/tok512.bin"}), []string{"no tokenizer.json"}},
		{"html", file("tokenizer.json", []byte("<html><body>rate limited</body></html>")), []string{"HTML"}},
	}
	for _, c := range tok {
		t.Run("tokenizer/"+c.name, func(t *testing.T) {
			p := c.path(t)
			_, err := weights.LoadTokenizer(p)
			if err == nil {
				t.Fatalf("LoadTokenizer(%s) succeeded", p)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message has several lines: %q", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// and the right files still load, whatever their names
	for _, rel := range []string{"models/stories260K/tok512.bin", "models/gguf/stories260K.gguf", "tokenizers/llama3/tokenizer.json"} {
		p := copyOf(rel, "renamed.dat")(t)
		if _, err := weights.LoadTokenizer(p); err != nil {
			t.Errorf("%s renamed: %v", rel, err)
		}
	}
}
