package jobs

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights/tokenizer"
)

// Sampling is rank 0's part of a query: how to choose tokens and where
// to stream text.
type Sampling struct {
	Temperature float64
	TopP        float64
	Seed        uint64
	Stop        []string  // stop strings (the text is cut before them)
	Stream      io.Writer // nil: no streaming
}

// generation is rank 0's decode loop for one query, as a rank.Chooser:
// it samples each next token, stops at the model's end tokens, at a stop
// string or after maxTok tokens, and streams the text (never splitting a
// UTF-8 character, holding back what may start a stop string).
type generation struct {
	res     *Result
	smp     *Sampling
	maxTok  int
	sampler *Sampler
	stops   []int
	dec     *tokenizer.StreamDecoder // nil: no tokenizer (benchmarks)
	text    []byte
	held    int // bytes of text not yet streamed
	n       int // tokens chosen so far
	start   time.Time
	first   time.Time
}

func newGeneration(tok tokenizer.Tokenizer, res *Result, smp *Sampling, maxTok int, lastQuery int) *generation {
	g := &generation{res: res, smp: smp, maxTok: maxTok, sampler: NewSampler(smp.Temperature, smp.TopP, smp.Seed), start: time.Now()}
	if tok != nil { // benchmarks on dummy weights have no tokenizer
		g.stops = stopTokens(tok)
		g.dec = tokenizer.NewStreamDecoder(tok)
		g.dec.After(lastQuery)
	}
	res.StopReason = "max_tokens"
	return g
}

// choose is the rank.Chooser.
func (g *generation) choose(logits []float32) (int, bool) {
	res := g.res
	id, lp := g.sampler.Sample(logits)
	if g.n == 0 {
		g.first = time.Now()
		res.Timings.TTFT = g.first.Sub(g.start).Seconds()
	}
	g.n++
	if slices.Contains(g.stops, id) {
		res.StopReason = "eos"
		return id, false
	}
	res.Tokens = append(res.Tokens, id)
	res.Logprobs = append(res.Logprobs, lp)
	if g.dec != nil {
		g.text = append(g.text, g.dec.Add(id)...)
	}
	more := g.n < g.maxTok
	if cut, hit := cutAtStop(g.text, g.smp.Stop); hit {
		g.text, more, res.StopReason = g.text[:cut], false, "stop"
	}
	g.held = streamText(g.smp.Stream, g.text, g.held, g.smp.Stop, more)
	return id, more
}

// finish flushes the text and fills in the decode timings.
func (g *generation) finish() {
	res := g.res
	if res.StopReason != "stop" && g.dec != nil {
		g.text = append(g.text, g.dec.Flush()...)
	}
	streamText(g.smp.Stream, g.text, g.held, nil, false)
	res.Text = string(g.text)
	res.Timings.Decode = time.Since(g.first).Seconds()
	if n := len(res.Tokens) - 1; n > 0 && res.Timings.Decode > 0 {
		res.Timings.DecodeTPS = float64(n) / res.Timings.Decode
	}
}

// generate runs one query on the open document: steps, then up to maxTok
// tokens chosen as smp says (rank 0; res is filled in).
func (e *Engine) generate(l *rank.Leader, steps []int, maxTok int, smp *Sampling, res *Result) error {
	if maxTok <= 0 {
		return l.Generate(steps, 0, nil)
	}
	g := newGeneration(e.Tok, res, smp, maxTok, steps[len(steps)-1])
	if err := l.Generate(steps, maxTok, g.choose); err != nil {
		return err
	}
	g.finish()
	return nil
}

// cutAtStop finds the first stop string in text.
func cutAtStop(text []byte, stops []string) (int, bool) {
	best := -1
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := bytes.Index(text, []byte(s)); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best, best >= 0
}

// streamText writes text[done:] to w, holding back a tail that could be
// the start of a stop string while more text may follow. It returns the
// new count of bytes written.
func streamText(w io.Writer, text []byte, done int, stops []string, more bool) int {
	if w == nil {
		return len(text)
	}
	end := len(text)
	if more {
		for _, s := range stops {
			for k := min(len(s)-1, end-done); k > 0; k-- {
				if string(text[end-k:]) == s[:k] {
					end = min(end, len(text)-k)
					break
				}
			}
		}
	}
	if end > done {
		io.WriteString(w, string(text[done:end]))
		return end
	}
	return done
}

// Generate runs phase 1, the query and up to s.MaxTokens generated tokens.
// On rank 0 it leads the run and returns the Result; on other ranks it
// follows rank 0 and returns nil. Each generated piece of text is written
// to stream as soon as it is complete UTF-8 (stream may be nil).
func (e *Engine) Generate(t Tokens, s Settings, stream io.Writer) (*Result, error) {
	if e.Rank() != 0 {
		return nil, e.Follow()
	}
	s.Defaults()
	s.Ranks = e.Ranks()
	res := &Result{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: []int{}, Logprobs: []float64{}}
	l := e.Lead()
	t0 := time.Now()
	maxTok, err := e.CheckLength(t, s.MaxTokens)
	var p *rank.Plan
	if err == nil {
		p, err = e.PlanDoc(t.Context, s.Settings)
	}
	err = l.Doc(t.Context, p, err)
	res.Timings.Phase1 = time.Since(t0).Seconds()
	if err == nil {
		smp := &Sampling{Temperature: s.Temperature, TopP: s.TopP, Seed: s.Seed, Stop: s.Stop, Stream: stream}
		err = e.generate(l, t.Query, max(maxTok, 0), smp, res)
		if err != nil && !rank.Agreed(err) && e.Distributed() {
			return nil, err // a local failure mid-run: the caller aborts the job
		}
	}
	stats, serr := l.End(err)
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	if maxTok <= 0 {
		res.StopReason = "max_tokens"
	}
	if e.Distributed() {
		res.Ranks = stats
	}
	res.Timings.Total = time.Since(t0).Seconds()
	res.Timings.TTFT += res.Timings.Phase1
	return res, nil
}

// Score teacher-forces cont after the query and returns each continuation
// token's log-probability and their mean negative log-likelihood. On
// ranks other than 0 it follows rank 0 and returns nil.
func (e *Engine) Score(t Tokens, cont []int, s Settings) (*ScoreResult, error) {
	if e.Rank() != 0 {
		return nil, e.Follow()
	}
	s.Defaults()
	s.Ranks = e.Ranks()
	V := e.M.Cfg.VocabSize
	_, err := e.CheckLength(Tokens{Context: t.Context, Query: append(slices.Clone(t.Query), cont...)}, 0)
	for _, id := range cont {
		if err == nil && (id < 0 || id >= V) {
			err = fmt.Errorf("continuation token %d is outside the vocabulary", id)
		}
	}
	if err == nil && len(cont) == 0 {
		err = fmt.Errorf("the continuation is empty: nothing to score")
	}
	var p *rank.Plan
	if err == nil {
		p, err = e.PlanDoc(t.Context, s.Settings)
	}
	l := e.Lead()
	t0 := time.Now()
	err = l.Doc(t.Context, p, err)
	res := &ScoreResult{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: cont}
	res.Timings.Phase1 = time.Since(t0).Seconds()
	if err == nil {
		res.Logprobs, err = e.scoreTokens(l, t.Query, cont)
		if err != nil && !rank.Agreed(err) && e.Distributed() {
			return nil, err
		}
	}
	stats, serr := l.End(err)
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	if e.Distributed() {
		res.Ranks = stats
	}
	res.NLL = meanNLL(res.Logprobs)
	res.Perplexity = expSafe(res.NLL)
	res.Timings.Total = time.Since(t0).Seconds()
	return res, nil
}

// ScoreOpen teacher-forces cont after the query q on the document open
// in l (rank 0 leads; the other ranks Follow) and returns each
// continuation token's log-probability. Callers that score many
// documents in one run (perplexity over windows) open each with l.Doc.
func (e *Engine) ScoreOpen(l *rank.Leader, q, cont []int) ([]float64, error) {
	if len(q) == 0 || len(cont) == 0 {
		return nil, fmt.Errorf("scoring needs a query and a continuation (got %d and %d tokens)", len(q), len(cont))
	}
	return e.scoreTokens(l, q, cont)
}

// scoreTokens teacher-forces cont after the query q on the open document
// and returns each continuation token's log-probability (rank 0). Row i
// of the steps predicts token i+1: the query's last row predicts cont[0].
func (e *Engine) scoreTokens(l *rank.Leader, q, cont []int) ([]float64, error) {
	V := e.M.Cfg.VocabSize
	steps := append(slices.Clone(q), cont[:len(cont)-1]...)
	rows := make([]int, len(cont))
	for i := range rows {
		rows[i] = len(q) - 1 + i
	}
	logits := make([]float32, len(rows)*V)
	if err := l.Logits(steps, rows, logits); err != nil {
		return nil, err
	}
	lp := make([]float32, V)
	out := make([]float64, len(cont))
	for i, id := range cont {
		layers.LogSoftmax(lp, logits[i*V:(i+1)*V])
		out[i] = float64(lp[id])
	}
	return out, nil
}

// meanNLL is the mean negative log-likelihood of tokens with log-probabilities lp.
func meanNLL(lp []float64) float64 {
	var sum float64
	for _, x := range lp {
		sum -= x
	}
	return sum / float64(len(lp))
}
