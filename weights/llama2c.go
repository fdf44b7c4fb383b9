package weights

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// llama2c "legacy v0" checkpoints: 7 int32 header fields, then float32
// arrays in a fixed order (see ../shared/README.md and llama2.c's run.c).
const llama2cHeaderBytes = 7 * 4

func loadLlama2C(path string) (*Model, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	m, err := parseLlama2C(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.unmap = append(m.unmap, unmap)
	return m, nil
}

// parseLlama2C builds a Model over data, which must stay alive while the
// Model is used.
func parseLlama2C(data []byte) (*Model, error) {
	c, h, err := llama2cConfig(data)
	if err != nil {
		return nil, err
	}
	if err := llama2cCheckSize(&c, h, len(data)); err != nil {
		return nil, err
	}
	m := &Model{Config: c, Format: "llama2c", Layers: make([]Layer, c.NLayers)}
	off := int64(llama2cHeaderBytes)
	err = m.Walk(Llama2COrder, func(s *TensorSpec, layer int, t *Tensor) error {
		if s.Classifier && c.TiedEmbeddings {
			*t = m.TokEmb
			return nil
		}
		name, shape := s.Llama2CName(layer), s.Shape(&c)
		n := int64(4)
		for _, d := range shape {
			n *= int64(d)
		}
		b, err := slice(data, off, n, "llama2.c tensor "+name)
		if err != nil {
			return err
		}
		off += n
		if t != nil { // not a legacy RoPE table
			*t = Tensor{Name: name, DType: F32, Shape: shape, Data: b}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if off != int64(len(data)) {
		return nil, fmt.Errorf("llama2.c checkpoint: %d trailing bytes after the last tensor; header and file disagree", int64(len(data))-off)
	}
	return m, nil
}

// llama2cConfig reads the header: seven int32, returned too for messages.
func llama2cConfig(data []byte) (Config, []int, error) {
	if len(data) < llama2cHeaderBytes {
		return Config{}, nil, fmt.Errorf("llama2.c checkpoint: %d bytes is shorter than the 28-byte header", len(data))
	}
	h := make([]int, 7)
	for i := range h {
		h[i] = int(int32(le.Uint32(data[4*i:])))
	}
	tied := h[5] > 0
	vocab := h[5]
	if vocab < 0 {
		vocab = -vocab
	}
	c := Config{
		Arch: "llama", Dim: h[0], HiddenDim: h[1], NLayers: h[2], NHeads: h[3], NKVHeads: h[4],
		VocabSize: vocab, SeqLen: h[6], NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: tied,
	}
	if c.NHeads > 0 {
		c.HeadDim = c.Dim / c.NHeads
	}
	if err := c.Check(); err != nil {
		return Config{}, nil, fmt.Errorf("llama2.c header %v: %w (is this a llama2.c legacy v0 .bin?)", h, err)
	}
	if c.Dim%c.NHeads != 0 {
		return Config{}, nil, fmt.Errorf("llama2.c header: dim %d not divisible by n_heads %d", c.Dim, c.NHeads)
	}
	return c, h, nil
}

// llama2cCheckSize checks the file's size against the header before
// anything is allocated per layer, so a corrupt header cannot ask for
// absurd allocations. The count is in float64 (absurd header values
// overflow int64); the first check, with the classifier counted even
// when tied, refuses those before the exact one.
func llama2cCheckSize(c *Config, h []int, size int) error {
	var all, need float64
	Llama2COrder.specs(func(s *TensorSpec) {
		all += s.numel(c)
		if !(s.Classifier && c.TiedEmbeddings) {
			need += s.numel(c)
		}
	})
	if 4*all > float64(size)*2 {
		return fmt.Errorf("llama2.c checkpoint: header %v describes far more data than the file's %d bytes; the file is truncated, corrupt or not a llama2.c legacy v0 checkpoint", h, size)
	}
	if int64(need)*4+llama2cHeaderBytes != int64(size) {
		return fmt.Errorf("llama2.c checkpoint: header %v describes %d bytes of tensors but the file holds %d; the file is truncated, corrupt or not a llama2.c legacy v0 checkpoint",
			h, int64(need)*4, size-llama2cHeaderBytes)
	}
	return nil
}

// findLlama2CTokenizer looks beside a checkpoint for its tokenizer.bin.
func findLlama2CTokenizer(modelPath string) string {
	dir := filepath.Dir(modelPath)
	cands := []string{filepath.Join(dir, "tokenizer.bin")}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, "tok") && strings.HasSuffix(n, ".bin") && n != "tokenizer.bin" {
				cands = append(cands, filepath.Join(dir, n))
			}
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && c != modelPath {
			return c
		}
	}
	return ""
}
