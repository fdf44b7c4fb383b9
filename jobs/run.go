// Package jobs says what a run means: tokenize the input, lay the context
// out in blocks, encode it (phase 1), run the query and generate (phase 2),
// and report tokens, text, log-probabilities and timings.
package jobs

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// Settings choose how a run attends and generates.
type Settings struct {
	Attention   string  // "star" or "global"
	BlockSize   int     // b; 0: the context split evenly over Ranks
	AnchorSize  int     // a; -1: equal to the block size (the paper's default)
	Ranks       int     // ranks the context is laid out for (1 in one process)
	MaxTokens   int     // generated tokens at most
	Temperature float64 // 0: greedy
	TopP        float64 // nucleus mass; 1: off
	Seed        uint64  // sampling seed
	Chunk       int     // tokens run through the model at once in phase 2 and global prefill
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
	ContextTokens int       `json:"context_tokens"`
	QueryTokens   int       `json:"query_tokens"`
	Tokens        []int     `json:"tokens"`
	Text          string    `json:"text"`
	Logprobs      []float64 `json:"logprobs"`
	StopReason    string    `json:"stop_reason"` // "eos" or "max_tokens"
	Timings       Timings   `json:"timings"`
}

// Engine is a loaded model ready to run in one process.
type Engine struct {
	W   *weights.Model
	Tok tokenizer.Tokenizer
	M   *layers.Model
}

// NewEngine wraps a loaded model with a compute backend.
func NewEngine(w *weights.Model, c layers.Compute) *Engine {
	return &Engine{W: w, Tok: w.Tokenizer, M: layers.NewModel(w, c)}
}

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
	if b > 0 && a > b && s.AnchorSize >= 0 {
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

// prepare builds a worker holding the encoded context for settings s: for
// Star, phase 1 over every block (all blocks on this one rank); for global,
// a causal prefill of the context into the query cache.
func (e *Engine) prepare(ctx []int, s Settings) (*rank.Worker, error) {
	switch s.Attention {
	case "global":
		w := rank.NewWorker(e.M, 0, true, min(s.Chunk, max(len(ctx), 1)))
		for i := 0; i < len(ctx); i += w.Capacity() {
			j := min(i+w.Capacity(), len(ctx))
			if err := w.Step(ctx[i:j], i, nil, nil); err != nil {
				return nil, fmt.Errorf("global prefill: %w", err)
			}
		}
		return w, nil
	case "star":
		lay, err := s.Layout(len(ctx))
		if err != nil {
			return nil, err
		}
		w := rank.NewWorker(e.M, 0, true, max(lay.MaxBlockLen(), s.Chunk))
		var toks [][]int
		for _, b := range lay.Blocks {
			toks = append(toks, ctx[b.Start:b.Start+b.Len])
		}
		if err := w.EncodeBlocks(ctx[:lay.AnchorSize], lay.Blocks, toks); err != nil {
			return nil, fmt.Errorf("phase 1: %w", err)
		}
		return w, nil
	}
	return nil, fmt.Errorf("unknown attention %q (use star or global)", s.Attention)
}

// runQuery feeds toks after pos0 in chunks and leaves the logits of the
// requested rows in out: rows are indices into toks; out [len(rows), V].
func runQuery(w *rank.Worker, toks []int, pos0 int, out []float32, rows []int, V int) error {
	c := w.Capacity()
	for i := 0; i < len(toks); i += c {
		j := min(i+c, len(toks))
		var sel []int
		var dst []float32
		for k, r := range rows {
			if r >= i && r < j {
				if dst == nil {
					dst = out[k*V:]
				}
				sel = append(sel, r-i)
			}
		}
		if err := w.Step(toks[i:j], pos0+i, dst, sel); err != nil {
			return err
		}
	}
	return nil
}

// Generate runs phase 1, the query and up to s.MaxTokens generated tokens.
// Each generated piece of text is written to stream as soon as it is
// complete UTF-8 (stream may be nil).
func (e *Engine) Generate(t Tokens, s Settings, stream io.Writer) (*Result, error) {
	s.Defaults()
	maxTok, err := e.CheckLength(t, s.MaxTokens)
	if err != nil {
		return nil, err
	}
	V := e.M.Cfg.VocabSize
	res := &Result{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: []int{}, Logprobs: []float64{}}
	t0 := time.Now()
	w, err := e.prepare(t.Context, s)
	if err != nil {
		return nil, err
	}
	res.Timings.Phase1 = time.Since(t0).Seconds()
	logits := make([]float32, V)
	if maxTok <= 0 {
		res.StopReason = "max_tokens"
		return res, nil
	}
	pos := len(t.Context)
	if err := runQuery(w, t.Query, pos, logits, []int{len(t.Query) - 1}, V); err != nil {
		return nil, fmt.Errorf("phase 2 (query): %w", err)
	}
	pos += len(t.Query)
	smp := NewSampler(s.Temperature, s.TopP, s.Seed)
	stops := stopTokens(e.Tok)
	dec := tokenizer.NewStreamDecoder(e.Tok)
	dec.After(t.Query[len(t.Query)-1])
	var text []byte
	tFirst := time.Now()
	res.StopReason = "max_tokens"
	for i := 0; i < maxTok; i++ {
		id, lp := smp.Sample(logits)
		if i == 0 {
			tFirst = time.Now()
			res.Timings.TTFT = tFirst.Sub(t0).Seconds()
		}
		if slices.Contains(stops, id) {
			res.StopReason = "eos"
			break
		}
		res.Tokens = append(res.Tokens, id)
		res.Logprobs = append(res.Logprobs, lp)
		piece := dec.Add(id)
		text = append(text, piece...)
		if stream != nil && piece != "" {
			io.WriteString(stream, piece)
		}
		if i == maxTok-1 {
			break
		}
		if err := w.Step([]int{id}, pos, logits, []int{0}); err != nil {
			return nil, fmt.Errorf("phase 2 (token %d): %w", i, err)
		}
		pos++
	}
	tail := dec.Flush()
	text = append(text, tail...)
	if stream != nil && tail != "" {
		io.WriteString(stream, tail)
	}
	res.Text = string(text)
	res.Timings.Decode = time.Since(tFirst).Seconds()
	if n := len(res.Tokens) - 1; n > 0 && res.Timings.Decode > 0 {
		res.Timings.DecodeTPS = float64(n) / res.Timings.Decode
	}
	res.Timings.Total = time.Since(t0).Seconds()
	return res, nil
}

// ScoreResult is the teacher-forced evaluation of a continuation.
type ScoreResult struct {
	ContextTokens int       `json:"context_tokens"`
	QueryTokens   int       `json:"query_tokens"`
	Tokens        []int     `json:"tokens"`
	Logprobs      []float64 `json:"logprobs"`
	NLL           float64   `json:"nll"`        // mean negative log-likelihood per token
	Perplexity    float64   `json:"perplexity"` // exp(nll)
	Timings       Timings   `json:"timings"`
}

// Score teacher-forces cont after the query and returns each continuation
// token's log-probability and their mean negative log-likelihood.
func (e *Engine) Score(t Tokens, cont []int, s Settings) (*ScoreResult, error) {
	s.Defaults()
	if len(cont) == 0 {
		return nil, fmt.Errorf("the continuation is empty: nothing to score")
	}
	if _, err := e.CheckLength(Tokens{Context: t.Context, Query: append(slices.Clone(t.Query), cont...)}, 0); err != nil {
		return nil, err
	}
	V := e.M.Cfg.VocabSize
	t0 := time.Now()
	w, err := e.prepare(t.Context, s)
	if err != nil {
		return nil, err
	}
	res := &ScoreResult{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: cont}
	res.Timings.Phase1 = time.Since(t0).Seconds()
	// Row i of seq predicts seq[i+1]: the query's last row predicts cont[0].
	seq := append(slices.Clone(t.Query), cont[:len(cont)-1]...)
	rows := make([]int, len(cont))
	for i := range rows {
		rows[i] = len(t.Query) - 1 + i
	}
	logits := make([]float32, len(rows)*V)
	if err := runQuery(w, seq, len(t.Context), logits, rows, V); err != nil {
		return nil, fmt.Errorf("phase 2: %w", err)
	}
	lp := make([]float32, V)
	var sum float64
	for i, id := range cont {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("continuation token %d is outside the vocabulary", id)
		}
		layers.LogSoftmax(lp, logits[i*V:(i+1)*V])
		res.Logprobs = append(res.Logprobs, float64(lp[id]))
		sum -= float64(lp[id])
	}
	res.NLL = sum / float64(len(cont))
	res.Perplexity = expSafe(res.NLL)
	res.Timings.Total = time.Since(t0).Seconds()
	return res, nil
}
