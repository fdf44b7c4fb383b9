package jobs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// BatchOptions describe a batch job (`star jobs run`).
type BatchOptions struct {
	Input       string   // path of the records ("-": stdin)
	InputFormat string   // "auto", "jsonl", "msgpack"
	Output      string   // results path ("-": stdout)
	Settings    Settings // defaults for every query
	Chat        bool     // wrap documents and queries in the chat format
	Logprobs    bool     // include logprobs in results unless a query says otherwise
	Progress    io.Writer
	Interval    time.Duration // between plain progress lines (not a terminal)
	Terminal    bool          // Progress is a terminal: draw a bar
	// Stop is set (by a signal handler) to ask the job to end at the next
	// query boundary; rank 0 reads it.
	Stop *atomic.Bool
}

// BatchSummary counts what a batch did.
type BatchSummary struct {
	Records     int           // records read
	Queries     int           // results written in this run
	Failed      int           // of which errors
	Skipped     int           // results already in the output (resumed)
	FailedEarly int           // of which errors
	Tokens      int           // generated tokens
	Repaired    bool          // a truncated last line was cut from the output
	Interrupted bool          // stopped by a signal before the end
	Elapsed     time.Duration // wall time
	EncodeSaved time.Duration // phase-1 time not spent thanks to encoding once per document
	KVLoaded    int           // documents whose phase 1 rank 0 read from --kv-dir
}

// ErrInterrupted ends a batch stopped by a signal at a record boundary.
var ErrInterrupted = errors.New("interrupted")

// RunBatch is `star jobs run` on rank 0; other ranks call Follow. Every
// record's document is encoded once; each of its queries then runs with
// the host's query cache reset, and its result is appended to the output
// before the next starts. A bad record gets an error result and the job
// goes on.
func (e *Engine) RunBatch(o BatchOptions) (*BatchSummary, error) {
	if e.Rank() != 0 {
		return nil, e.Follow()
	}
	sum := &BatchSummary{}
	t0 := time.Now()
	l := &leader{e: e}
	final := func(err error) (*BatchSummary, error) {
		sum.Elapsed = time.Since(t0)
		if _, serr := l.end(err); serr != nil && err == nil {
			err = serr
		}
		return sum, err
	}
	rf, repaired, err := OpenResults(o.Output)
	if err != nil {
		return final(err)
	}
	defer rf.Close()
	sum.Repaired, sum.Skipped, sum.FailedEarly = repaired, rf.Count(), rf.Failed()
	total := -1
	if o.Input != "-" {
		if total, err = countRecords(o.Input, o.InputFormat); err != nil {
			return final(err)
		}
	}
	in, closeIn, err := openInput(o.Input)
	if err != nil {
		return final(err)
	}
	defer closeIn()
	rr, err := NewRecordReader(in, o.InputFormat)
	if err != nil {
		return final(err)
	}
	prog := newProgress(o.Progress, o.Terminal, o.Interval, total)
	defer prog.done()
	seen := map[string]int{}
	for {
		if o.Stop != nil && o.Stop.Load() {
			sum.Interrupted = true
			return final(ErrInterrupted)
		}
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return final(fmt.Errorf("read %s: %w", o.Input, err))
		}
		sum.Records++
		if prev, dup := seen[rec.ID]; dup && rec.Err == nil {
			rec.Err = fmt.Errorf("%s: id %q repeats record %d's; ids must be unique", rec.where(), rec.ID, prev+1)
			rec.ID = fmt.Sprintf("%s@record-%d", rec.ID, rec.Index+1)
		}
		seen[rec.ID] = rec.Index
		if err := e.runRecord(l, rec, o, rf, sum); err != nil {
			return final(err)
		}
		prog.update(sum)
		if o.Stop != nil && o.Stop.Load() && sum.Records != total {
			sum.Interrupted = true
			return final(ErrInterrupted)
		}
	}
	return final(nil)
}

// runRecord answers every not-yet-answered query of one record. Only
// errors that end the job (output, communication) are returned.
func (e *Engine) runRecord(l *leader, rec *Record, o BatchOptions, rf *ResultFile, sum *BatchSummary) error {
	nq := max(len(rec.Queries), 1)
	var pending []int
	for q := 0; q < nq; q++ {
		if !rf.Done(rec.ID, q) {
			pending = append(pending, q)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	fail := func(qs []int, err error) error {
		for _, q := range qs {
			sum.Queries++
			sum.Failed++
			if werr := rf.Write(&Output{ID: rec.ID, QueryIndex: q, Tokens: []int{}, Error: err.Error()}); werr != nil {
				return werr
			}
		}
		return nil
	}
	if rec.Err != nil {
		return fail(pending, rec.Err)
	}
	text := rec.Context
	if rec.ContextFile != "" {
		path := rec.ContextFile
		if !filepath.IsAbs(path) && o.Input != "-" {
			path = filepath.Join(filepath.Dir(o.Input), path) // relative to the input file
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fail(pending, fmt.Errorf("%s: cannot read context_file: %v", rec.where(), err))
		}
		text = string(b)
	}
	s := o.Settings
	s.Defaults()
	s.Ranks = e.Ranks()
	ctx, err := e.encodeContext(text, o.Chat)
	var p *docPlan
	if err == nil {
		p, err = e.planDoc(ctx, s)
	}
	t1 := time.Now()
	if err := l.doc(ctx, p, err); err != nil {
		if !Agreed(err) {
			return err
		}
		return fail(pending, fmt.Errorf("%s: %v", rec.where(), err))
	}
	phase1 := time.Since(t1)
	if l.ss != nil && l.ss.stats.KVLoaded {
		sum.KVLoaded++
	}
	sum.EncodeSaved += phase1 * time.Duration(len(pending)-1)
	for i, q := range pending {
		if i > 0 && o.Stop != nil && o.Stop.Load() {
			return nil // the rest of this record runs on resume
		}
		out, err := e.runQuery(l, rec, q, text, ctx, o, s)
		if err != nil {
			if !Agreed(err) {
				return err
			}
			out = &Output{ID: rec.ID, QueryIndex: q, Tokens: []int{}, Error: err.Error()}
		}
		if i == 0 && out.Timings != nil {
			out.Timings.Phase1 = phase1.Seconds()
			out.Timings.TTFT += phase1.Seconds()
		}
		sum.Queries++
		if out.Error != "" {
			sum.Failed++
		}
		sum.Tokens += len(out.Tokens)
		if err := rf.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// runQuery answers query q of rec on the encoded document ctx.
func (e *Engine) runQuery(l *leader, rec *Record, q int, text string, ctx []int, o BatchOptions, s Settings) (*Output, error) {
	qq := rec.Queries[q]
	qt, err := EncodeQuery(e.Tok, text, qq.Text, o.Chat)
	if err != nil {
		return nil, &agreedError{msg: fmt.Sprintf("%s query %d: %v", rec.where(), q, err)}
	}
	maxTok := s.MaxTokens
	if qq.MaxTokens != nil {
		maxTok = *qq.MaxTokens
	}
	maxTok, err = e.CheckLength(Tokens{Context: ctx, Query: qt}, maxTok)
	if err != nil {
		return nil, &agreedError{msg: fmt.Sprintf("%s query %d: %v", rec.where(), q, err)}
	}
	smp := &Sampling{Temperature: s.Temperature, TopP: s.TopP, Seed: s.Seed, Stop: s.Stop}
	if qq.Temperature != nil {
		smp.Temperature = *qq.Temperature
	}
	if qq.TopP != nil {
		smp.TopP = *qq.TopP
	}
	if qq.Seed != nil {
		smp.Seed = *qq.Seed
	}
	if qq.Stop != nil {
		smp.Stop = qq.Stop
	}
	res := &Result{Tokens: []int{}, Logprobs: []float64{}}
	tq := time.Now()
	if err := l.query(&queryPlan{Steps: qt, MaxTok: maxTok}, smp, nil, nil, res); err != nil {
		return nil, err
	}
	res.Timings.Total = time.Since(tq).Seconds()
	out := &Output{ID: rec.ID, QueryIndex: q, Text: res.Text, Tokens: res.Tokens, StopReason: res.StopReason,
		ContextTokens: len(ctx), QueryTokens: len(qt), Timings: &res.Timings}
	if maxTok == 0 {
		out.StopReason = "max_tokens"
	}
	lp := o.Logprobs
	if qq.Logprobs != nil {
		lp = *qq.Logprobs
	}
	if lp {
		out.Logprobs = res.Logprobs
	}
	return out, nil
}

func openInput(path string) (io.Reader, func(), error) {
	if path == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open input: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// countRecords reads the input once to count its records (for progress).
func countRecords(path, format string) (int, error) {
	in, closeIn, err := openInput(path)
	if err != nil {
		return 0, err
	}
	defer closeIn()
	rr, err := NewRecordReader(in, format)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		_, err := rr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		n++
	}
}

// progress reports a batch's advance on stderr: a redrawn bar on a
// terminal, a plain line every interval otherwise (as under Slurm).
type progress struct {
	w        io.Writer
	term     bool
	interval time.Duration
	total    int
	start    time.Time
	last     time.Time
	sum      *BatchSummary
}

func newProgress(w io.Writer, term bool, interval time.Duration, total int) *progress {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	now := time.Now()
	return &progress{w: w, term: term, interval: interval, total: total, start: now, last: now}
}

func (p *progress) line(s *BatchSummary) string {
	el := time.Since(p.start)
	tps := float64(s.Tokens) / max(el.Seconds(), 1e-9)
	tot, eta := "?", "?"
	if p.total >= 0 {
		tot = fmt.Sprint(p.total)
		if s.Records > 0 {
			left := time.Duration(float64(el) / float64(s.Records) * float64(p.total-s.Records))
			eta = left.Round(time.Second).String()
		}
	}
	return fmt.Sprintf("%d/%s records, %d results (%d failed, %d resumed), %.1f tok/s, %s elapsed, ETA %s",
		s.Records, tot, s.Queries, s.Failed, s.Skipped, tps, el.Round(time.Second), eta)
}

func (p *progress) update(s *BatchSummary) {
	if p.w == nil {
		return
	}
	p.sum = s
	if p.term {
		bar := ""
		if p.total > 0 {
			const width = 24
			k := s.Records * width / p.total
			bar = "[" + strings.Repeat("#", k) + strings.Repeat(".", width-k) + "] "
		}
		fmt.Fprintf(p.w, "\r\033[K%s%s", bar, p.line(s))
		return
	}
	if time.Since(p.last) >= p.interval {
		p.last = time.Now()
		fmt.Fprintf(p.w, "star jobs: %s\n", p.line(s))
	}
}

func (p *progress) done() {
	if p.w != nil && p.term && p.sum != nil {
		fmt.Fprintln(p.w)
	}
}

// ResumeHint tells the user how to finish an interrupted job.
func ResumeHint(output string) string {
	return fmt.Sprintf("rerun the same command to resume: results already in %s are kept and skipped", filepath.Clean(output))
}
