package jobs

import (
	"fmt"
	"io"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
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
	KVDType       string         `json:"kv_dtype"` // the K/V caches' element type the memory is sized for
	Memory        rank.Memory    `json:"memory"`   // rank 0
	Ranks         []rank.Memory  `json:"ranks"`
	// Device is the GPU the ranks would compute on (--device cuda, or
	// auto with a GPU found); nil on CPU.
	Device      *DeviceInfo `json:"device,omitempty"`
	LoadSeconds float64     `json:"load_s"`
}

// Inspect describes m and estimates, per rank, the memory for ctx context
// tokens in blocks of block tokens with anchor tokens over ranks ranks,
// with K/V caches of dtype kv.
func Inspect(m *weights.Model, ctx, block, anchor, ranks int, kv weights.DType) (Report, error) {
	c := m.Config
	r := Report{Path: m.Path, Format: m.Format, Architecture: c.Arch, Config: c, DType: m.WeightTypes(),
		Parameters: m.ParamCount(), ContextLength: c.SeqLen, Fingerprint: m.Fingerprint, KVDType: layers.KVDTypeName(kv)}
	if m.Tokenizer != nil {
		r.Tokenizer, r.TokenizerSize = m.Tokenizer.Kind(), m.Tokenizer.VocabSize()
	}
	s := rank.Settings{BlockSize: block, AnchorSize: anchor, Ranks: ranks}
	s.Defaults()
	lay, err := s.Layout(ctx)
	if err != nil {
		return r, err
	}
	lm := layers.NewModel(m, layers.NewCPU(1))
	dw, wide := rank.DeviceWeightBytes(m), rank.Wide16(m)
	for k := 0; k < ranks; k++ {
		capacity := rank.Capacity(lay, s.Chunk)
		f := rank.Footprint(lm, m.WeightBytes(), lay, k, rank.QueryReserve, capacity, s.Chunk, kv)
		parts := f.Blocks
		if k == 0 {
			parts++
		}
		f.DeviceBytes = dw + f.KVBytes + f.AnchorBytes + rank.DeviceActivationBytes(&c, capacity, parts, min(s.Chunk, capacity), wide)
		r.Ranks = append(r.Ranks, f)
	}
	r.Memory = r.Ranks[0]
	return r, nil
}

// DeviceInfo is a GPU as inspect reports it.
type DeviceInfo struct {
	Name       string `json:"name"`
	Count      int    `json:"count"` // GPUs of this node
	TotalBytes int64  `json:"total_bytes"`
	FreeBytes  int64  `json:"free_bytes"`
	Driver     int    `json:"driver"` // the driver's CUDA version (13000: 13.0)
	// Libraries are the paths of the libraries loaded (CUDA driver,
	// NVRTC, cuBLASLt, NCCL) by what star looks up.
	Libraries map[string]string `json:"libraries"`
	Missing   map[string]string `json:"missing,omitempty"` // a library not found: why
}

// CheckDevice refuses a report whose ranks do not fit on the device,
// one rank per GPU.
func (r *Report) CheckDevice() error {
	if r.Device == nil {
		return nil
	}
	for _, m := range r.Ranks {
		if m.DeviceBytes > r.Device.TotalBytes {
			return fmt.Errorf("rank %d needs %s of device memory (K/V %s, anchor %s, weights and activations %s) but %s has %s: use more ranks, a smaller --block-size, --kv-dtype f16, or --device cpu",
				m.Rank, human(m.DeviceBytes, "B"), human(m.KVBytes, "B"), human(m.AnchorBytes, "B"), human(m.DeviceBytes-m.KVBytes-m.AnchorBytes, "B"), r.Device.Name, human(r.Device.TotalBytes, "B"))
		}
	}
	return nil
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
	fmt.Fprintf(w, "memory for a %d-token context, blocks of %d, over %d rank(s) (rank 0 with %d query/generated tokens), %s K/V:\n",
		r.Memory.Context, r.Memory.BlockSize, len(r.Ranks), rank.QueryReserve, r.KVDType)
	fmt.Fprintf(w, "  %-5s %-7s %-9s %-12s %-12s %-12s %-12s %s\n", "rank", "blocks", "tokens", "weights", "kv_cache", "anchor", "activations", "total")
	for _, m := range r.Ranks {
		fmt.Fprintf(w, "  %-5d %-7d %-9d %-12s %-12s %-12s %-12s %s\n", m.Rank, m.Blocks, m.BlockTokens, human(m.WeightBytes, "B"),
			human(m.KVBytes, "B"), human(m.AnchorBytes, "B"), human(m.ActivationBytes, "B"), human(m.TotalBytes, "B"))
	}
	fmt.Fprintf(w, "  K/V per token %s (%s, all layers; --kv-dtype chooses); weights are memory-mapped and shared by the ranks of a node; totals include %s for the program\n",
		human(r.Memory.KVBytesPerToken, "B"), r.KVDType, human(rank.ProgramBytes, "B"))
	if d := r.Device; d != nil {
		fmt.Fprintf(w, "device       %s (%d on this node, %s total, %s free), driver CUDA %d.%d\n", d.Name, d.Count, human(d.TotalBytes, "B"), human(d.FreeBytes, "B"), d.Driver/1000, d.Driver%1000/10)
		for _, k := range []string{"cuda", "nvrtc", "cublasLt", "nccl"} {
			if p, ok := d.Libraries[k]; ok {
				fmt.Fprintf(w, "  %-9s %s\n", k, p)
			} else if why, ok := d.Missing[k]; ok {
				fmt.Fprintf(w, "  %-9s not loaded: %s\n", k, why)
			}
		}
		fmt.Fprintf(w, "device memory per rank, one rank per GPU:\n")
		for _, m := range r.Ranks {
			fmt.Fprintf(w, "  rank %-3d %s (%.0f%% of the device)\n", m.Rank, human(m.DeviceBytes, "B"), 100*float64(m.DeviceBytes)/float64(max(d.TotalBytes, 1)))
		}
	}
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
