package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	// CheckSize, if set, sees the weights' size in bytes once the tensor
	// table is checked and before any tensor byte is read; an error from
	// it ends the load (a model too large for memory is refused before
	// its pages come in).
	CheckSize func(weightBytes int64) error
}

// Format names the checkpoint format at path: "gguf", "hf" or "llama2c".
// It is judged from the file's content; a file that is something else (a
// tokenizer, an archive, a failed download) is refused with one line that
// says what it is and what to pass instead.
func Format(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
			return "", fmt.Errorf("model folder %s has no config.json, so it is not a Hugging Face checkpoint%s", path, describeFolder(path))
		}
		return "hf", nil
	}
	k, err := Sniff(path)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	switch k {
	case KindGGUF:
		return "gguf", nil
	case KindSafetensors, KindHFConfig, KindHFIndex:
		return "hf", nil
	case KindLlama2C:
		return "llama2c", nil
	}
	name := strings.ToLower(filepath.Base(path))
	if name == "config.json" || strings.HasSuffix(name, ".safetensors.index.json") {
		return "hf", nil // its reader says what is wrong with it
	}
	if msg := notAModel(path, k); msg != "" {
		return "", errors.New(msg)
	}
	switch {
	case strings.HasSuffix(name, ".gguf"):
		return "", fmt.Errorf("%s is named .gguf but does not start with the GGUF magic (it starts with %q): the file is damaged or not GGUF; download or convert it again", path, fileStart(path, 4))
	case strings.HasSuffix(name, ".safetensors"):
		return "", fmt.Errorf("%s is named .safetensors but does not start with a safetensors header (it starts with %q): the file is damaged or truncated; download it again", path, fileStart(path, 9))
	}
	// llama2.c legacy v0 has no magic: its reader says what is wrong.
	return "llama2c", nil
}

// fileStart is the first n bytes of a file, for messages.
func fileStart(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, n)
	n, _ = io.ReadFull(f, b)
	return string(b[:n])
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
	if opts.CheckSize != nil {
		if err := opts.CheckSize(m.WeightBytes()); err != nil {
			m.Close()
			return nil, err
		}
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
// vocabulary, judged from the file's content.
func LoadTokenizer(path string) (tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if st.IsDir() {
		p := filepath.Join(path, "tokenizer.json")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("tokenizer folder %s has no tokenizer.json: pass the tokenizer file itself (tokenizer.json, llama2.c tokenizer.bin or a .gguf)", path)
		}
		path = p
	}
	k, err := Sniff(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	switch k {
	case KindTokenizerJSON, KindJSON:
		return tokenizer.LoadHF(path)
	case KindGGUF:
		return loadGGUFTokenizer(path)
	case KindLlama2CTokenizer:
		return tokenizer.LoadLlama2C(path)
	}
	if msg := notATokenizer(path, k); msg != "" {
		return nil, errors.New(msg)
	}
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		return tokenizer.LoadHF(path)
	}
	return tokenizer.LoadLlama2C(path)
}

// fingerprint hashes the config and a sample of every tensor's bytes
// (head and tail), cheap enough to run on every rank at start-up.
func fingerprint(m *Model) string {
	h := sha256.New()
	c := m.Config
	c.RopeScaling = nil // a pointer: hashed by value below, never by address
	fmt.Fprintf(h, "%+v|", c)
	if s := m.Config.RopeScaling; s != nil {
		fmt.Fprintf(h, "rope scaling %+v|", *s)
	}
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
	m.Walk(CheckOrder, func(_ *TensorSpec, _ int, t *Tensor) error {
		add(t)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16]
}
