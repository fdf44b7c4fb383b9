package jobs

import (
	"fmt"
	"io"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Report describes a model and the memory a run needs.
type Report struct {
	Path          string         `json:"path"`
	Format        string         `json:"format"`
	Architecture  string         `json:"architecture"`
	Config        weights.Config `json:"config"`
	DType         string         `json:"dtype"`
	Parameters    int64          `json:"parameters"`
	ContextLength int            `json:"context_length"`
	Tokenizer     string         `json:"tokenizer"`
	TokenizerSize int            `json:"tokenizer_vocab"`
	Fingerprint   string         `json:"fingerprint"`
	Memory        Memory         `json:"memory"`
	LoadSeconds   float64        `json:"load_s"`
}

// Memory is the estimate for one process holding the given context.
type Memory struct {
	Context         int   `json:"context_tokens"`
	BlockSize       int   `json:"block_size"`
	WeightBytes     int64 `json:"weights_bytes"`      // memory-mapped, shared by ranks on a node
	KVBytes         int64 `json:"kv_cache_bytes"`     // context blocks held by this process
	AnchorBytes     int64 `json:"anchor_bytes"`       // anchor K/V while encoding
	ActivationBytes int64 `json:"activation_bytes"`   // per-forward scratch for one block
	TotalBytes      int64 `json:"total_bytes"`        // all of the above
	KVBytesPerToken int64 `json:"kv_bytes_per_token"` // K and V, all layers, float32
}

// KVBytesPerToken is the float32 K/V cache size of one token, all layers.
func KVBytesPerToken(c *weights.Config) int64 {
	return int64(2 * c.NLayers * c.KVDim() * 4)
}

// Inspect describes m and estimates the memory for ctx context tokens in
// blocks of block tokens, all held by one process.
func Inspect(m *weights.Model, ctx, block int) Report {
	c := m.Config
	r := Report{Path: m.Path, Format: m.Format, Architecture: c.Arch, Config: c, DType: m.DType().String(),
		Parameters: m.ParamCount(), ContextLength: c.SeqLen, Fingerprint: m.Fingerprint}
	if m.Tokenizer != nil {
		r.Tokenizer, r.TokenizerSize = m.Tokenizer.Kind(), m.Tokenizer.VocabSize()
	}
	lm := layers.NewModel(m, layers.NewCPU(1))
	per := KVBytesPerToken(&c)
	anchor := 0
	if block < ctx {
		anchor = block
	}
	r.Memory = Memory{
		Context: ctx, BlockSize: block, WeightBytes: m.WeightBytes(), KVBytesPerToken: per,
		KVBytes:         per * int64(ctx),
		AnchorBytes:     per * int64(anchor),
		ActivationBytes: lm.StateBytes(max(block, 512)) + int64(c.VocabSize*4*2),
	}
	r.Memory.TotalBytes = r.Memory.WeightBytes + r.Memory.KVBytes + r.Memory.AnchorBytes + r.Memory.ActivationBytes
	return r
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "model        %s (%s)\n", r.Path, r.Format)
	fmt.Fprintf(w, "architecture %s: dim %d, hidden %d, layers %d, heads %d, kv heads %d, head dim %d, vocab %d\n",
		r.Architecture, c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, c.HeadDim, c.VocabSize)
	rope := "adjacent pairs"
	if c.RopeHalfSplit {
		rope = "half-split"
	}
	scal := "none"
	if c.RopeScaling != nil {
		scal = fmt.Sprintf("%s x%g", c.RopeScaling.Type, c.RopeScaling.Factor)
	}
	fmt.Fprintf(w, "rope         theta %g, %s, scaling %s; rms eps %g; tied embeddings %v\n", c.RopeTheta, rope, scal, c.NormEps, c.TiedEmbeddings)
	fmt.Fprintf(w, "parameters   %s (%s)\n", human(r.Parameters, ""), r.DType)
	fmt.Fprintf(w, "context      %d tokens\n", r.ContextLength)
	if r.Tokenizer != "" {
		fmt.Fprintf(w, "tokenizer    %s, %d tokens\n", r.Tokenizer, r.TokenizerSize)
	} else {
		fmt.Fprintf(w, "tokenizer    none (pass --tokenizer)\n")
	}
	fmt.Fprintf(w, "fingerprint  %s\n", r.Fingerprint)
	m := r.Memory
	fmt.Fprintf(w, "memory for a %d-token context in blocks of %d on one rank:\n", m.Context, m.BlockSize)
	fmt.Fprintf(w, "  weights      %s (memory-mapped)\n", human(m.WeightBytes, "B"))
	fmt.Fprintf(w, "  KV cache     %s (%s per token)\n", human(m.KVBytes, "B"), human(m.KVBytesPerToken, "B"))
	fmt.Fprintf(w, "  anchor       %s\n", human(m.AnchorBytes, "B"))
	fmt.Fprintf(w, "  activations  %s\n", human(m.ActivationBytes, "B"))
	fmt.Fprintf(w, "  total        %s\n", human(m.TotalBytes, "B"))
}

func human(n int64, unit string) string {
	if unit == "B" {
		f := float64(n)
		for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
			if f < 1024 || u == "TiB" {
				return fmt.Sprintf("%.1f %s", f, u)
			}
			f /= 1024
		}
	}
	f := float64(n)
	for _, u := range []string{"", "K", "M", "B", "T"} {
		if f < 1000 || u == "T" {
			return fmt.Sprintf("%.2f%s", f, u)
		}
		f /= 1000
	}
	return ""
}
