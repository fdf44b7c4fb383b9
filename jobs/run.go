// Package jobs says what a run means: tokenize the input, lay the context
// out in blocks, encode it (phase 1), run the query and generate (phase 2),
// and report tokens, text, log-probabilities and timings.
package jobs

import (
	"fmt"
	"slices"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// Settings choose how a run attends (the layout over the ranks) and
// generates.
type Settings struct {
	rank.Settings
	MaxTokens   int      // generated tokens at most
	Temperature float64  // 0: greedy
	TopP        float64  // nucleus mass; 1: off
	Seed        uint64   // sampling seed
	Stop        []string // stop strings: generation ends before the first one
}

// Defaults fills unset fields.
func (s *Settings) Defaults() {
	s.Settings.Defaults()
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
	ContextTokens int              `json:"context_tokens"`
	QueryTokens   int              `json:"query_tokens"`
	Tokens        []int            `json:"tokens"`
	Text          string           `json:"text"`
	Logprobs      []float64        `json:"logprobs"`
	StopReason    string           `json:"stop_reason"` // "eos" or "max_tokens"
	Timings       Timings          `json:"timings"`
	Ranks         []rank.RankStats `json:"ranks,omitempty"` // per-rank stats (distributed runs)
}

// Engine is a loaded model ready to run on this rank (rank.Engine), with
// the tokenizer rank 0 reads and writes text with.
type Engine struct {
	*rank.Engine
	Tok tokenizer.Tokenizer // needed on rank 0 only
}

// NewCPUEngine wraps a loaded model with the CPU backend on threads
// threads; counting wraps the backend to count its work (bench).
func NewCPUEngine(w *weights.Model, threads int, counting bool) *Engine {
	var c layers.Compute = layers.NewCPU(threads)
	if counting {
		c = &Counting{Compute: c}
	}
	return NewEngine(w, c)
}

// NewEngine wraps a loaded model with a compute backend.
func NewEngine(w *weights.Model, c layers.Compute) *Engine {
	return &Engine{Engine: rank.NewEngine(w, c), Tok: w.Tokenizer}
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
	ContextTokens int              `json:"context_tokens"`
	QueryTokens   int              `json:"query_tokens"`
	Tokens        []int            `json:"tokens"`
	Logprobs      []float64        `json:"logprobs"`
	NLL           float64          `json:"nll"`        // mean negative log-likelihood per token
	Perplexity    float64          `json:"perplexity"` // exp(nll)
	Timings       Timings          `json:"timings"`
	Ranks         []rank.RankStats `json:"ranks,omitempty"`
}
