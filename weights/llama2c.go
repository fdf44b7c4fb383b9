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
	if len(data) < llama2cHeaderBytes {
		return nil, fmt.Errorf("llama2.c checkpoint: %d bytes is shorter than the 28-byte header", len(data))
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
		return nil, fmt.Errorf("llama2.c header %v: %w (is this a llama2.c legacy v0 .bin?)", h, err)
	}
	if c.Dim%c.NHeads != 0 {
		return nil, fmt.Errorf("llama2.c header: dim %d not divisible by n_heads %d", c.Dim, c.NHeads)
	}
	// Size the file must have before allocating anything per layer, so a
	// corrupt header cannot ask for absurd allocations.
	// (Checked in float64 first: absurd header values overflow int64.)
	Lf, Df, Hf, kvf, qf := float64(c.NLayers), float64(c.Dim), float64(c.HiddenDim), float64(c.KVDim()), float64(c.QDim())
	if 4*(float64(c.VocabSize)*Df*2+Lf*(2*Df+2*qf*Df+2*kvf*Df+3*Hf*Df)+Df+float64(c.SeqLen)*float64(c.HeadDim)) > float64(len(data))*2 {
		return nil, fmt.Errorf("llama2.c checkpoint: header %v describes far more data than the file's %d bytes; the file is truncated, corrupt or not a llama2.c legacy v0 checkpoint", h, len(data))
	}
	L64, D64, H64, kv64, q64 := int64(c.NLayers), int64(c.Dim), int64(c.HiddenDim), int64(c.KVDim()), int64(c.QDim())
	need := int64(c.VocabSize)*D64 + L64*(2*D64+q64*D64+2*kv64*D64+D64*q64+3*H64*D64) + D64 + int64(c.SeqLen)*int64(c.HeadDim)
	if !tied {
		need += int64(c.VocabSize) * D64
	}
	if need*4+llama2cHeaderBytes != int64(len(data)) {
		return nil, fmt.Errorf("llama2.c checkpoint: header %v describes %d bytes of tensors but the file holds %d; the file is truncated, corrupt or not a llama2.c legacy v0 checkpoint",
			h, need*4, len(data)-llama2cHeaderBytes)
	}
	off := int64(llama2cHeaderBytes)
	var ferr error
	take := func(name string, shape ...int) Tensor {
		n := int64(4)
		for _, s := range shape {
			n *= int64(s)
		}
		b, err := slice(data, off, n, "llama2.c tensor "+name)
		if err != nil && ferr == nil {
			ferr = err
		}
		off += n
		return Tensor{Name: name, DType: F32, Shape: shape, Data: b}
	}
	L, D, Hd, kv, q := c.NLayers, c.Dim, c.HiddenDim, c.KVDim(), c.QDim()
	m := &Model{Config: c, Format: "llama2c", Layers: make([]Layer, L)}
	m.TokEmb = take("token_embedding_table", c.VocabSize, D)
	// Per-kind arrays are stacked over layers; slice them per layer.
	stacked := func(name string, shape ...int) {
		for l := 0; l < L; l++ {
			t := take(fmt.Sprintf("%s[%d]", name, l), shape...)
			ly := &m.Layers[l]
			switch name {
			case "rms_att_weight":
				ly.AttnNorm = t
			case "wq":
				ly.WQ = t
			case "wk":
				ly.WK = t
			case "wv":
				ly.WV = t
			case "wo":
				ly.WO = t
			case "rms_ffn_weight":
				ly.FFNNorm = t
			case "w1":
				ly.W1 = t
			case "w2":
				ly.W2 = t
			case "w3":
				ly.W3 = t
			}
		}
	}
	stacked("rms_att_weight", D)
	stacked("wq", q, D)
	stacked("wk", kv, D)
	stacked("wv", kv, D)
	stacked("wo", D, q)
	stacked("rms_ffn_weight", D)
	stacked("w1", Hd, D)
	stacked("w2", D, Hd)
	stacked("w3", Hd, D)
	m.FinalNorm = take("rms_final_weight", D)
	take("freq_cis_real", c.SeqLen, c.HeadDim/2)
	take("freq_cis_imag", c.SeqLen, c.HeadDim/2)
	if tied {
		m.Output = m.TokEmb
	} else {
		m.Output = take("wcls", c.VocabSize, D)
	}
	if ferr != nil {
		return nil, ferr
	}
	if off != int64(len(data)) {
		return nil, fmt.Errorf("llama2.c checkpoint: %d trailing bytes after the last tensor; header and file disagree", int64(len(data))-off)
	}
	return m, nil
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
