// Package jobs says what a run means: tokenize the input, lay the context
// out in blocks, encode it (phase 1), run the query and generate (phase 2),
// and report tokens, text, log-probabilities and timings.
package jobs

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// Settings choose how a run attends and generates.
type Settings struct {
	Attention   string   // "star" or "global"
	BlockSize   int      // b; 0: the context split evenly over Ranks
	AnchorSize  int      // a; -1: equal to the block size (the paper's default)
	Ranks       int      // ranks the context is laid out for (1 in one process)
	MaxTokens   int      // generated tokens at most
	Temperature float64  // 0: greedy
	TopP        float64  // nucleus mass; 1: off
	Seed        uint64   // sampling seed
	Chunk       int      // tokens run through the model at once in phase 2 and global prefill
	Merge       string   // merge mode across ranks (see rank.MergeModes)
	Stop        []string // stop strings: generation ends before the first one
}

// Defaults fills unset fields.
func (s *Settings) Defaults() {
	if s.Attention == "" {
		s.Attention = "star"
	}
	if s.Ranks <= 0 {
		s.Ranks = 1
	}
	if s.Chunk <= 0 {
		s.Chunk = 512
	}
	if s.TopP <= 0 || s.TopP > 1 {
		s.TopP = 1
	}
}

// Timings of a run, in seconds.
type Timings struct {
	Phase1    float64 `json:"phase1_s"`     // context encoding
	TTFT      float64 `json:"ttft_s"`       // phase 1 + query, up to the first token
	Decode    float64 `json:"decode_s"`     // generating after the first token
	DecodeTPS float64 `json:"decode_tok_s"` // generated tokens per second after the first
	Total     float64 `json:"total_s"`
}

// Result of one generation.
type Result struct {
	ContextTokens int         `json:"context_tokens"`
	QueryTokens   int         `json:"query_tokens"`
	Tokens        []int       `json:"tokens"`
	Text          string      `json:"text"`
	Logprobs      []float64   `json:"logprobs"`
	StopReason    string      `json:"stop_reason"` // "eos" or "max_tokens"
	Timings       Timings     `json:"timings"`
	Ranks         []RankStats `json:"ranks,omitempty"` // per-rank stats (distributed runs)
}

// Engine is a loaded model ready to run on this rank.
type Engine struct {
	W   *weights.Model
	Tok tokenizer.Tokenizer // needed on rank 0 only
	M   *layers.Model
	// Comm joins the ranks of a distributed run; nil runs in one process.
	Comm collective.Comm
	// Merge is the merge mode of partial attentions across ranks.
	Merge string
	// KVDir, when set, keeps each rank's phase-1 K/V per document there and
	// reuses it when a later run meets the same document and layout.
	KVDir string
	// Log receives warnings and, on rank 0, a long phase 1's progress
	// (stderr); nil: none.
	Log io.Writer
	// ProgressEvery is the interval between progress lines (0: 10 s).
	ProgressEvery time.Duration
	// LocalRanks is the number of ranks sharing this node's memory.
	LocalRanks int
	// Phase, when set, is told what this rank is doing (a rank watchdog
	// names it when a rank stops answering).
	Phase func(string)
}

// phase tells e.Phase what this rank is doing.
func (e *Engine) phase(format string, a ...any) {
	if e.Phase != nil {
		e.Phase(fmt.Sprintf(format, a...))
	}
}

// NewEngine wraps a loaded model with a compute backend.
func NewEngine(w *weights.Model, c layers.Compute) *Engine {
	return &Engine{W: w, Tok: w.Tokenizer, M: layers.NewModel(w, c), Merge: rank.MergeGather}
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

func (e *Engine) distributed() bool { return e.Ranks() > 1 }

// Layout resolves block and anchor sizes for a context of n tokens.
func (s *Settings) Layout(n int) (rank.Layout, error) {
	b := s.BlockSize
	if b <= 0 {
		b = (n + s.Ranks - 1) / s.Ranks
	}
	a := s.AnchorSize
	if a < 0 {
		a = b
	}
	if s.BlockSize > 0 && a > b {
		return rank.Layout{}, fmt.Errorf("--anchor-size %d exceeds --block-size %d; the anchor must fit in the first block", a, b)
	}
	return rank.NewLayout(n, b, min(a, n), s.Ranks)
}

// CheckLength refuses inputs the model cannot take and returns how many
// tokens may be generated.
func (e *Engine) CheckLength(t Tokens, maxTokens int) (int, error) {
	n, m, ctxLen := len(t.Context), len(t.Query), e.M.Cfg.SeqLen
	if n == 0 {
		return 0, fmt.Errorf("the context is empty")
	}
	if len(t.Query) == 0 {
		return 0, fmt.Errorf("the query is empty")
	}
	if n+m > ctxLen {
		return 0, fmt.Errorf("context (%d tokens) + query (%d tokens) = %d exceeds the model's context length %d; shorten the prompt or pass --context-length if the model supports more",
			n, m, n+m, ctxLen)
	}
	return min(maxTokens, ctxLen-n-m), nil
}

// stopTokens are the ids that end generation: the model's end tokens and BOS
// (which starts a new document, as llama2.c treats it).
func stopTokens(tok tokenizer.Tokenizer) []int {
	s := slices.Clone(tok.EOS())
	if b := tok.BOS(); b >= 0 {
		s = append(s, b)
	}
	return s
}

// ScoreResult is the teacher-forced evaluation of a continuation.
type ScoreResult struct {
	ContextTokens int         `json:"context_tokens"`
	QueryTokens   int         `json:"query_tokens"`
	Tokens        []int       `json:"tokens"`
	Logprobs      []float64   `json:"logprobs"`
	NLL           float64     `json:"nll"`        // mean negative log-likelihood per token
	Perplexity    float64     `json:"perplexity"` // exp(nll)
	Timings       Timings     `json:"timings"`
	Ranks         []RankStats `json:"ranks,omitempty"`
}
