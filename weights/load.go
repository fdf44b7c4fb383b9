package weights

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/star-attn/star/weights/tokenizer"
)

// Options steer Load.
type Options struct {
	// Tokenizer overrides the tokenizer found with the model: a llama2.c
	// tokenizer.bin, a tokenizer.json, or a folder holding one.
	Tokenizer string
}

// Format names the checkpoint format at path: "gguf", "hf" or "llama2c".
func Format(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
			return "", fmt.Errorf("model folder %s has no config.json (expected a Hugging Face checkpoint folder)", path)
		}
		return "hf", nil
	}
	if strings.HasSuffix(path, ".safetensors") || strings.HasSuffix(path, ".safetensors.index.json") ||
		filepath.Base(path) == "config.json" {
		return "hf", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	n, _ := f.Read(magic)
	if n == 4 && bytes.Equal(magic, []byte("GGUF")) {
		return "gguf", nil
	}
	return "llama2c", nil
}

// Load reads the checkpoint at path (format detected from the path),
// checks every tensor and attaches the tokenizer found with it.
func Load(path string, opts Options) (*Model, error) {
	format, err := Format(path)
	if err != nil {
		return nil, err
	}
	var m *Model
	switch format {
	case "gguf":
		m, err = loadGGUF(path)
	case "hf":
		m, err = loadHF(path)
	default:
		m, err = loadLlama2C(path)
	}
	if err != nil {
		return nil, err
	}
	m.Path = path
	if err := m.Validate(); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := attachTokenizer(m, opts.Tokenizer); err != nil {
		m.Close()
		return nil, err
	}
	m.Fingerprint = fingerprint(m)
	return m, nil
}

func attachTokenizer(m *Model, override string) error {
	path := override
	if path == "" {
		if m.Tokenizer != nil {
			return nil
		}
		if m.Format == "llama2c" {
			path = findLlama2CTokenizer(m.Path)
		}
		if path == "" {
			return nil // tokenizer-less use (tests, bench); callers check
		}
	}
	tok, err := LoadTokenizer(path)
	if err != nil {
		return err
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return fmt.Errorf("tokenizer %s has %d tokens but the model's vocabulary has %d rows; they do not belong together",
			path, tok.VocabSize(), m.Config.VocabSize)
	}
	m.Tokenizer = tok
	return nil
}

// LoadTokenizer reads a tokenizer on its own: a llama2.c tokenizer.bin, a
// Hugging Face tokenizer.json (or a folder with one), or a GGUF file's
// vocabulary.
func LoadTokenizer(path string) (tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if st.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	if strings.HasSuffix(path, ".json") {
		return tokenizer.LoadHF(path)
	}
	if f, err := Format(path); err == nil && f == "gguf" {
		return loadGGUFTokenizer(path)
	}
	return tokenizer.LoadLlama2C(path)
}

// fingerprint hashes the config and a sample of every tensor's bytes
// (head and tail), cheap enough to run on every rank at start-up.
func fingerprint(m *Model) string {
	h := sha256.New()
	fmt.Fprintf(h, "%+v|", m.Config)
	add := func(t *Tensor) {
		fmt.Fprintf(h, "%s|%v|%v|%d|", t.Name, t.DType, t.Shape, len(t.Data))
		const k = 4096
		if len(t.Data) <= 2*k {
			h.Write(t.Data)
			return
		}
		h.Write(t.Data[:k])
		h.Write(t.Data[len(t.Data)/2 : len(t.Data)/2+k])
		h.Write(t.Data[len(t.Data)-k:])
	}
	add(&m.TokEmb)
	add(&m.Output)
	add(&m.FinalNorm)
	for i := range m.Layers {
		for _, t := range m.Layers[i].tensors() {
			add(t)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
