package rank

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Attention is how a document's context is attended.
type Attention string

// The attention modes.
const (
	Star   Attention = "star"   // blocks behind the anchor, no communication in phase 1 (the paper's method)
	Ring   Attention = "ring"   // exact, K/V shards passed around the ranks (the paper's baseline)
	Global Attention = "global" // exact, the whole context on rank 0
)

// Attentions lists the modes in the order they are documented.
var Attentions = []Attention{Star, Ring, Global}

// ParseAttention reads an attention mode's name.
func ParseAttention(s string) (Attention, error) {
	for _, a := range Attentions {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown attention %q: use star, ring or global", s)
}

// Exact reports whether the mode computes exact attention.
func (a Attention) Exact() bool { return a == Ring || a == Global }

// MergeMode is how the ranks' partial attentions become one.
type MergeMode string

// The merge modes.
const (
	MergeGather    MergeMode = "gather"    // all partials to rank 0, merged there, result broadcast
	MergeAllgather MergeMode = "allgather" // every rank receives every partial and merges
	MergeAllreduce MergeMode = "allreduce" // a reduction with the merge as a custom op
)

// MergeModes lists the modes in the order they are documented.
var MergeModes = []MergeMode{MergeGather, MergeAllgather, MergeAllreduce}

// ParseMerge reads a merge mode's name.
func ParseMerge(s string) (MergeMode, error) {
	for _, m := range MergeModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown merge mode %q: use gather, allgather or allreduce", s)
}

// Settings choose how a document is laid out over the ranks and attended.
type Settings struct {
	Attention  Attention
	BlockSize  int // b; 0: the context split evenly over Ranks
	AnchorSize int // a; -1: equal to the block size (the paper's default)
	Ranks      int // ranks the context is laid out for (1 in one process)
	Chunk      int // tokens run through the model at once in phase 2 and global prefill
}

// Defaults fills unset fields.
func (s *Settings) Defaults() {
	if s.Attention == "" {
		s.Attention = Star
	}
	if s.Ranks <= 0 {
		s.Ranks = 1
	}
	if s.Chunk <= 0 {
		s.Chunk = 512
	}
}

// Layout resolves block and anchor sizes for a context of n tokens.
func (s *Settings) Layout(n int) (Layout, error) {
	b := s.BlockSize
	if b <= 0 {
		b = (n + s.Ranks - 1) / s.Ranks
	}
	a := s.AnchorSize
	if a < 0 {
		a = b
	}
	if s.BlockSize > 0 && a > b {
		return Layout{}, fmt.Errorf("--anchor-size %d exceeds --block-size %d; the anchor must fit in the first block", a, b)
	}
	return NewLayout(n, b, min(a, n), s.Ranks)
}

// Engine is this rank's part of a run: the model, the communicator that
// joins the ranks, and how they work together. Rank 0, the query host,
// leads a run (Lead); every other rank follows it (Follow).
type Engine struct {
	W *weights.Model // the loaded weights
	M *layers.Model  // the model's host description (and the CPU backend's compute)
	// B is where this rank's forward passes run and its weights,
	// activations and K/V live (nil: the CPU backend over M).
	B layers.Backend
	// Exchange, when set, merges phase 2's partials across ranks on the
	// backend (NCCL between GPUs) instead of through Comm from the host.
	Exchange layers.Exchanger
	// Comm joins the ranks of a distributed run; nil runs in one process.
	Comm collective.Comm
	// Merge is the merge mode of partial attentions across ranks.
	Merge MergeMode
	// KVDType is the element type of every K/V cache (layers.KVDTypes):
	// NewEngine sets AutoKVDType's choice. Rank 0's travels in each
	// document's plan, so every rank uses the same.
	KVDType weights.DType
	// KVDir, when set, keeps each rank's phase-1 K/V per document there and
	// reuses it when a later run meets the same document and layout.
	KVDir string
	// Log receives warnings and, on rank 0, a long phase 1's progress
	// (stderr); nil: none.
	Log io.Writer
	// ProgressEvery is the interval between phase-1 progress lines (0: 10 s).
	ProgressEvery time.Duration
	// LocalRanks is the number of ranks sharing this node's memory.
	LocalRanks int
	// Phase, when set, is told what this rank is doing (a rank watchdog
	// names it when a rank stops answering).
	Phase func(string)
	// Hook, when set, is called at each stage of a run ("phase1",
	// "phase2") with this rank: tests stop or kill a rank there.
	Hook func(rank int, stage string)
}

// NewEngine wraps loaded weights with a compute backend.
func NewEngine(w *weights.Model, c layers.Compute) *Engine {
	m := layers.NewModel(w, c)
	return &Engine{W: w, M: m, Merge: MergeGather, KVDType: AutoKVDType(w)}
}

// Backend is where this rank computes: B, or the CPU backend over M.
func (e *Engine) Backend() layers.Backend {
	if e.B == nil {
		e.B = layers.OnHost(e.M)
	}
	return e.B
}

// KVAuto is the K/V dtype choice that AutoKVDType resolves.
const KVAuto = "auto"

// AutoKVDType is the default K/V cache dtype for model w: F32 when all of
// its weights are F32 (small and test models, whose reference outputs
// are float32 computations), F16 otherwise (16-bit and quantized
// checkpoints, where K/V memory dominates long contexts: half the memory
// and half the bytes a decode step reads; F16 over BF16 for its 3 more
// mantissa bits, saturating at ±65504 so that nothing becomes infinite).
func AutoKVDType(w *weights.Model) weights.DType {
	all32 := true
	w.Walk(weights.CheckOrder, func(_ *weights.TensorSpec, _ int, t *weights.Tensor) error {
		all32 = all32 && t.DType == weights.F32
		return nil
	})
	if all32 {
		return weights.F32
	}
	return weights.F16
}

// ResolveKVDType reads a --kv-dtype choice (auto, f32, f16 or bf16) for
// model w.
func ResolveKVDType(choice string, w *weights.Model) (weights.DType, error) {
	if strings.EqualFold(choice, KVAuto) || choice == "" {
		return AutoKVDType(w), nil
	}
	dt, err := layers.ParseKVDType(choice)
	if err != nil {
		return 0, fmt.Errorf("unknown K/V dtype %q: use auto, f32, f16 or bf16", choice)
	}
	return dt, nil
}

// Rank is this engine's rank (0 in one process).
func (e *Engine) Rank() int {
	if e.Comm == nil {
		return 0
	}
	return e.Comm.Rank()
}

// Ranks is the number of ranks.
func (e *Engine) Ranks() int {
	if e.Comm == nil {
		return 1
	}
	return e.Comm.Size()
}

// Distributed reports whether more than one rank takes part.
func (e *Engine) Distributed() bool { return e.Ranks() > 1 }

// Doing tells e.Phase what this rank is doing now.
func (e *Engine) Doing(format string, a ...any) {
	if e.Phase != nil {
		e.Phase(fmt.Sprintf(format, a...))
	}
}

func (e *Engine) hook(stage string) {
	if e.Hook != nil {
		e.Hook(e.Rank(), stage)
	}
}
