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
	Attention   string  // "star" or "global"
	BlockSize   int     // b; 0: the context split evenly over Ranks
	AnchorSize  int     // a; -1: equal to the block size (the paper's default)
	Ranks       int     // ranks the context is laid out for (1 in one process)
	MaxTokens   int     // generated tokens at most
	Temperature float64 // 0: greedy
	TopP        float64 // nucleus mass; 1: off
	Seed        uint64  // sampling seed
	Chunk       int     // tokens run through the model at once in phase 2 and global prefill
	Merge       string  // merge mode across ranks (see rank.MergeModes)
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

// makePlan is rank 0's plan for context ctx and phase-2 tokens steps.
func (e *Engine) makePlan(ctx, steps []int, maxTok int, s Settings) *plan {
	p := &plan{Attention: s.Attention, Merge: e.Merge, Steps: steps, Pos0: len(ctx), MaxTok: maxTok}
	switch s.Attention {
	case "global":
		p.Capacity = min(s.Chunk, max(len(ctx), 1))
	case "star":
		lay, err := s.Layout(len(ctx))
		if err != nil {
			p.Err = err.Error()
			return p
		}
		p.Layout, p.Anchor = lay, ctx[:lay.AnchorSize]
		p.Capacity = max(lay.MaxBlockLen(), s.Chunk)
	default:
		p.Err = fmt.Sprintf("unknown attention %q (use star or global)", s.Attention)
	}
	return p
}

// session is one rank's part of a run: the shared plan, the worker that
// holds this rank's KV caches, and the rank's stats.
type session struct {
	e      *Engine
	p      *plan
	w      *rank.Worker // nil on ranks with nothing to do (global mode)
	stats  RankStats
	bytes0 int64
}

// start shares rank 0's plan (p, which may carry an error found on rank 0)
// and runs phase 1 on every rank; ctx matters on rank 0 only.
func (e *Engine) start(ctx []int, p *plan) (*session, error) {
	p, err := sharePlan(e.Comm, p)
	if err != nil {
		return nil, err
	}
	ss := &session{e: e, p: p, stats: RankStats{Rank: e.Rank()}}
	t0 := time.Now()
	err = ss.phase1(ctx)
	ss.stats.Phase1 = time.Since(t0).Seconds()
	if err := agree(e.Comm, err, status{}); err != nil {
		return nil, err
	}
	if e.Comm != nil {
		ss.bytes0 = e.Comm.Stats().BytesSent
	}
	return ss, nil
}

func (ss *session) phase1(ctx []int) error {
	e, p := ss.e, ss.p
	hook(e.Rank(), "phase1")
	if p.Attention == "global" {
		if e.Rank() != 0 {
			return nil // global attention runs on rank 0 alone
		}
		w := rank.NewWorker(e.M, 0, true, p.Capacity)
		for i := 0; i < len(ctx); i += w.Capacity() {
			j := min(i+w.Capacity(), len(ctx))
			if err := w.Step(ctx[i:j], i, nil, nil); err != nil {
				return fmt.Errorf("global prefill: %w", err)
			}
		}
		ss.w = w
		return nil
	}
	toks, err := shareBlocks(e.Comm, p.Layout, ctx)
	if err != nil {
		return err
	}
	w := rank.NewWorker(e.M, e.Rank(), e.Rank() == 0, p.Capacity)
	if e.distributed() {
		if w.Comb, err = rank.NewCombiner(e.Comm, p.Merge); err != nil {
			return err
		}
	}
	mine := p.Layout.Of(e.Rank())
	if err := w.EncodeBlocks(p.Anchor, mine, toks); err != nil {
		return fmt.Errorf("phase 1: %w", err)
	}
	ss.w = w
	ss.stats.Blocks = len(mine)
	for _, b := range mine {
		ss.stats.Tokens += b.Len
	}
	return nil
}

// step runs toks (at pos0..) through phase 2 on this rank in chunks; on
// rank 0, out receives the logits of rows (indices into toks).
func (ss *session) step(toks []int, pos0 int, out []float32, rows []int) error {
	if ss.w == nil {
		return nil
	}
	V := ss.e.M.Cfg.VocabSize
	c := ss.w.Capacity()
	ss.stats.Steps += len(toks)
	for i := 0; i < len(toks); i += c {
		j := min(i+c, len(toks))
		var sel []int
		var dst []float32
		for k, r := range rows {
			if r >= i && r < j {
				if dst == nil && out != nil {
					dst = out[k*V:]
				}
				sel = append(sel, r-i)
			}
		}
		if err := ss.w.Step(toks[i:j], pos0+i, dst, sel); err != nil {
			return err
		}
	}
	return nil
}

// finish gathers every rank's stats.
func (ss *session) finish(phase2 time.Duration) ([]RankStats, error) {
	ss.stats.Phase2 = phase2.Seconds()
	if ss.w != nil {
		ss.stats.KVBytes = ss.w.CacheBytes()
	}
	if c := ss.e.Comm; c != nil {
		st := c.Stats()
		ss.stats.BytesSent = st.BytesSent
		ss.stats.Phase2B = st.BytesSent - ss.bytes0
	}
	return gatherStats(ss.e.Comm, ss.stats)
}

// Generate runs phase 1, the query and up to s.MaxTokens generated tokens
// on every rank. t matters on rank 0 only; the Result is complete on rank
// 0 (other ranks get timings and stats). Each generated piece of text is
// written to stream as soon as it is complete UTF-8 (stream may be nil).
func (e *Engine) Generate(t Tokens, s Settings, stream io.Writer) (*Result, error) {
	s.Defaults()
	s.Ranks = e.Ranks()
	res := &Result{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: []int{}, Logprobs: []float64{}}
	var p *plan
	if e.Rank() == 0 {
		maxTok, err := e.CheckLength(t, s.MaxTokens)
		if err != nil {
			p = &plan{Err: err.Error()}
		} else {
			p = e.makePlan(t.Context, t.Query, maxTok, s)
		}
	}
	t0 := time.Now()
	ss, err := e.start(t.Context, p)
	if err != nil {
		return nil, err
	}
	p = ss.p
	res.Timings.Phase1 = time.Since(t0).Seconds()
	tq := time.Now()
	err = ss.generate(t, s, stream, res)
	stats, serr := ss.finish(time.Since(tq))
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	if e.distributed() {
		res.Ranks = stats
	}
	res.Timings.Total = time.Since(t0).Seconds()
	res.Timings.TTFT += res.Timings.Phase1
	return res, nil
}

// generate is phase 2 of Generate: the query, then one token at a time.
// Rank 0 samples and decides; in a distributed run it broadcasts the
// decision so every rank runs the same steps.
func (ss *session) generate(t Tokens, s Settings, stream io.Writer, res *Result) error {
	e, p := ss.e, ss.p
	host := e.Rank() == 0
	shared := e.distributed() && p.Attention == "star" // other ranks take part in phase 2
	if !host && !shared {
		return nil
	}
	if p.MaxTok <= 0 {
		res.StopReason = "max_tokens"
		return nil
	}
	V := e.M.Cfg.VocabSize
	var logits []float32
	if host {
		logits = make([]float32, V)
	}
	tq := time.Now()
	hook(e.Rank(), "phase2")
	if err := ss.step(p.Steps, p.Pos0, logits, []int{len(p.Steps) - 1}); err != nil {
		return fmt.Errorf("phase 2 (query): %w", err)
	}
	pos := p.Pos0 + len(p.Steps)
	var smp *Sampler
	var stops []int
	var dec *tokenizer.StreamDecoder
	var text []byte
	if host {
		smp = NewSampler(s.Temperature, s.TopP, s.Seed)
		stops = stopTokens(e.Tok)
		dec = tokenizer.NewStreamDecoder(e.Tok)
		dec.After(p.Steps[len(p.Steps)-1])
		res.StopReason = "max_tokens"
	}
	var tFirst time.Time
	for i := 0; i < p.MaxTok; i++ {
		id, more := 0, false
		if host {
			var lp float64
			id, lp = smp.Sample(logits)
			if i == 0 {
				tFirst = time.Now()
				res.Timings.TTFT = tFirst.Sub(tq).Seconds()
			}
			if slices.Contains(stops, id) {
				res.StopReason = "eos"
			} else {
				res.Tokens = append(res.Tokens, id)
				res.Logprobs = append(res.Logprobs, lp)
				piece := dec.Add(id)
				text = append(text, piece...)
				if stream != nil && piece != "" {
					io.WriteString(stream, piece)
				}
				more = i < p.MaxTok-1
			}
		}
		if shared {
			var err error
			if id, more, err = shareNext(e.Comm, id, more); err != nil {
				return err
			}
		}
		if !more {
			break
		}
		if err := ss.step([]int{id}, pos, logits, []int{0}); err != nil {
			return fmt.Errorf("phase 2 (token %d): %w", i, err)
		}
		pos++
	}
	if host {
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
	}
	return nil
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

// Score teacher-forces cont after the query and returns each continuation
// token's log-probability and their mean negative log-likelihood. t and
// cont matter on rank 0 only.
func (e *Engine) Score(t Tokens, cont []int, s Settings) (*ScoreResult, error) {
	s.Defaults()
	s.Ranks = e.Ranks()
	V := e.M.Cfg.VocabSize
	var p *plan
	if e.Rank() == 0 {
		_, err := e.CheckLength(Tokens{Context: t.Context, Query: append(slices.Clone(t.Query), cont...)}, 0)
		for _, id := range cont {
			if err == nil && (id < 0 || id >= V) {
				err = fmt.Errorf("continuation token %d is outside the vocabulary", id)
			}
		}
		if err == nil && len(cont) == 0 {
			err = fmt.Errorf("the continuation is empty: nothing to score")
		}
		if err != nil {
			p = &plan{Err: err.Error()}
		} else {
			// Row i of the steps predicts token i+1: the query's last row predicts cont[0].
			p = e.makePlan(t.Context, append(slices.Clone(t.Query), cont[:len(cont)-1]...), 0, s)
		}
	}
	t0 := time.Now()
	ss, err := e.start(t.Context, p)
	if err != nil {
		return nil, err
	}
	p = ss.p
	res := &ScoreResult{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: cont}
	res.Timings.Phase1 = time.Since(t0).Seconds()
	tq := time.Now()
	nq := len(p.Steps) - len(cont) + 1 // query tokens
	var logits []float32
	var rows []int
	if e.Rank() == 0 {
		for i := range cont {
			rows = append(rows, nq-1+i)
		}
		logits = make([]float32, len(rows)*V)
	}
	err = ss.step(p.Steps, p.Pos0, logits, rows)
	stats, serr := ss.finish(time.Since(tq))
	if err != nil {
		return nil, fmt.Errorf("phase 2: %w", err)
	}
	if serr != nil {
		return nil, serr
	}
	if e.distributed() {
		res.Ranks = stats
	}
	if e.Rank() != 0 {
		return res, nil
	}
	lp := make([]float32, V)
	var sum float64
	for i, id := range cont {
		layers.LogSoftmax(lp, logits[i*V:(i+1)*V])
		res.Logprobs = append(res.Logprobs, float64(lp[id]))
		sum -= float64(lp[id])
	}
	res.NLL = sum / float64(len(cont))
	res.Perplexity = expSafe(res.NLL)
	res.Timings.Total = time.Since(t0).Seconds()
	return res, nil
}
