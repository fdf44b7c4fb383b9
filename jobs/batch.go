package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// BatchOptions describe a batch job (`star jobs run`).
type BatchOptions struct {
	Input       string   // path of the records ("-": stdin)
	InputFormat string   // "auto", "jsonl", "msgpack"
	Output      string   // results path ("-": stdout)
	Settings    Settings // defaults for every query
	Chat        bool     // wrap documents and queries in the chat format
	Logprobs    bool     // include logprobs in results unless a query says otherwise
	// RedoChanged answers again the queries whose record changed since
	// their results were written (by default the job refuses to resume).
	RedoChanged bool
	// ContextRoot is the folder every context_file must lie in, symbolic
	// links resolved ("": the input file's folder; the working folder for
	// stdin). Relative context_file paths resolve against the input
	// file's folder.
	ContextRoot string
	Progress    io.Writer
	Interval    time.Duration // between plain progress lines (not a terminal)
	Terminal    bool          // Progress is a terminal: draw a bar
	// Stop asks the job to end (a signal): rank 0 acts on it after the
	// query in flight, or at once while it waits for input. nil: never.
	Stop *Stop
}

// BatchSummary counts what a batch did. Every count of results is of
// lines on disk.
type BatchSummary struct {
	Records     int           // records read
	Queries     int           // results written in this run
	Failed      int           // of which errors
	Skipped     int           // results already in the output (resumed)
	FailedEarly int           // of which errors
	Redone      int           // results dropped because their record changed (--redo-changed)
	Orphans     int           // results in the output that no record of the input asks for
	Tokens      int           // generated tokens
	Repaired    bool          // a truncated last line was cut from the output
	Interrupted bool          // stopped by a signal before the end
	Elapsed     time.Duration // wall time
	EncodeSaved time.Duration // phase-1 time not spent thanks to encoding once per document
	KVLoaded    int           // documents whose phase 1 rank 0 read from --kv-dir
}

// ErrInterrupted ends a batch stopped by a signal at a record boundary.
var ErrInterrupted = errors.New("interrupted")

// ChangedError refuses to resume a job whose input changed under results
// already written.
type ChangedError struct {
	Output string
	N      int      // results whose record changed
	IDs    []string // their ids (id#query), the first few
}

func (e *ChangedError) Error() string {
	ids := strings.Join(e.IDs, ", ")
	if e.N > len(e.IDs) {
		ids += fmt.Sprintf(" and %d more", e.N-len(e.IDs))
	}
	return fmt.Sprintf("%d result(s) in %s were made from a record, document, query, model or setting that has changed since (%s): rerun with --redo-changed to answer them again, or give a new --output",
		e.N, e.Output, ids)
}

// batch is one `jobs run` on rank 0.
type batch struct {
	e    *Engine
	l    *rank.Leader
	o    BatchOptions
	rf   *ResultFile
	sum  *BatchSummary
	ids  idAssigner
	base string // relative context_file paths resolve here
	root string // context files must lie under it (symlinks resolved)
	// maxDoc is the longest document in bytes that could fit the model's
	// context at any tokenization.
	maxDoc int64
	asked  map[key]bool // every (id, query) the input asks for so far
}

// RunBatch is `star jobs run` on rank 0; other ranks call Follow. Every
// record's document is encoded once; each of its queries then runs with
// the host's query cache reset, and its result is appended to the output
// before the next starts. A bad record gets an error result and the job
// goes on.
//
// The input is read once, as a stream, except that a regular file is read
// a first time to count its records and, when the output already holds
// results, to check that their records have not changed.
func (e *Engine) RunBatch(o BatchOptions) (*BatchSummary, error) {
	if e.Rank() != 0 {
		return nil, e.Follow()
	}
	b := &batch{e: e, l: e.Lead(), o: o, sum: &BatchSummary{}, asked: map[key]bool{}}
	t0 := time.Now()
	err := b.run()
	b.sum.Elapsed = time.Since(t0)
	if _, serr := b.l.End(err); serr != nil {
		if err == nil {
			err = serr
		}
		return b.sum, err // the end message did not go out: not agreed
	}
	return b.sum, rank.Shared(err)
}

// run opens the input and the output, then answers record after record
// until the input ends or a stop comes.
func (b *batch) run() error {
	in, err := b.open()
	if err != nil {
		return err
	}
	defer in.Close()
	defer b.rf.Close()
	total := -1
	if in.regular {
		if total, err = b.survey(in); err != nil {
			return err
		}
	}
	o, sum := b.o, b.sum
	recs, quit := readRecords(in.r, o.InputFormat, b.maxRecord())
	defer close(quit)
	prog := newProgress(o.Progress, o.Terminal, o.Interval, total)
	defer prog.done()
	for {
		if o.Stop.Requested() && !b.atEnd(recs, total) {
			sum.Interrupted = true
			return ErrInterrupted
		}
		b.e.Doing("reading record %d of the input", sum.Records+1)
		var nx nextRecord
		select {
		case nx = <-recs:
		case <-o.Stop.Done():
			continue // the top of the loop decides
		}
		if nx.err == io.EOF {
			break
		}
		if nx.err != nil {
			return fmt.Errorf("read %s: %w", o.Input, nx.err)
		}
		sum.Records++
		b.ids.assign(nx.rec)
		complete, err := b.record(nx.rec)
		if err != nil {
			return err
		}
		prog.update(sum)
		if !complete { // stopped between two of its queries
			sum.Interrupted = true
			return ErrInterrupted
		}
	}
	for k := range b.rf.done {
		if !b.asked[k] {
			sum.Orphans++
		}
	}
	return nil
}

// open checks and opens the input, then the output (a results file of
// ours, locked for the job's life).
func (b *batch) open() (*source, error) {
	o := b.o
	if err := checkFormat(o.InputFormat); err != nil {
		return nil, err
	}
	in, err := openSource(o.Input)
	if err != nil {
		return nil, err
	}
	if err = in.notSame(o.Output); err == nil {
		err = b.contextFolders(in)
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	b.maxDoc = MaxContextBytes(b.e.Tok, b.e.M.Cfg.SeqLen-2)
	if b.rf, b.sum.Repaired, err = OpenResults(o.Output); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// atEnd tells, once a stop is asked for, whether the input is already
// read to its end (then the job is complete, not interrupted): a file's
// record count is known; a stream's end is seen if the reader has
// already met it.
func (b *batch) atEnd(recs <-chan nextRecord, total int) bool {
	if total >= 0 {
		return b.sum.Records >= total
	}
	select {
	case nx := <-recs:
		return nx.err == io.EOF
	default:
		return false
	}
}

// nextRecord is what the input reader hands the job: a record or the
// error (io.EOF at the end) that ended the input.
type nextRecord struct {
	rec *Record
	err error
}

// readRecords reads rr on its own goroutine, so that a job waiting for
// input (a pipe, a FIFO) still ends on a signal. Closing quit lets the
// goroutine go once its read returns.
func readRecords(r io.Reader, format string, maxRec int64) (<-chan nextRecord, chan struct{}) {
	recs, quit := make(chan nextRecord), make(chan struct{})
	go func() {
		rr, err := NewRecordReader(r, format) // sniffing reads: here too
		if err != nil {
			select {
			case recs <- nextRecord{nil, err}:
			case <-quit:
			}
			return
		}
		rr.MaxRecord = maxRec
		for {
			rec, err := rr.Next()
			select {
			case recs <- nextRecord{rec, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return recs, quit
}

// idAssigner makes record ids unique: a repeated id is an error record
// under a new id, "<id>@record-<n>".
type idAssigner struct{ seen map[string]int }

func (a *idAssigner) assign(rec *Record) {
	if a.seen == nil {
		a.seen = map[string]int{}
	}
	if prev, dup := a.seen[rec.ID]; dup && rec.Err == nil {
		rec.Err = fmt.Errorf("%s: id %q repeats record %d's; ids must be unique", rec.where(), rec.ID, prev+1)
		rec.ID = fmt.Sprintf("%s@record-%d", rec.ID, rec.Index+1)
	}
	a.seen[rec.ID] = rec.Index
}

// maxRecord bounds one input record: the longest document inline plus
// room for the queries.
func (b *batch) maxRecord() int64 {
	return min(2*b.maxDoc+1<<20, maxRecord)
}

// survey reads a regular input file once before the run: it counts the
// records and checks every result already in the output against its
// record as it reads now. Changed ones refuse the job, or with
// RedoChanged are removed from the output to be answered again. The
// input is rewound for the run.
func (b *batch) survey(in *source) (int, error) {
	rr, err := NewRecordReader(in.r, b.o.InputFormat)
	if err != nil {
		return 0, err
	}
	rr.MaxRecord = b.maxRecord()
	var ids idAssigner
	changed := map[key]bool{}
	var names []string
	n := 0
	for ; ; n++ {
		if b.o.Stop.Requested() {
			return 0, ErrInterrupted
		}
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", b.o.Input, err)
		}
		ids.assign(rec)
		if b.rf.Count() == 0 {
			continue
		}
		for _, k := range b.changed(rec) {
			if !changed[k] {
				changed[k] = true
				names = append(names, k.String())
			}
		}
	}
	if err := b.redo(changed, names); err != nil {
		return 0, err
	}
	return n, b.rewindErr(in)
}

func (b *batch) rewindErr(in *source) error {
	if err := in.rewind(); err != nil {
		return fmt.Errorf("read %s again: %w", b.o.Input, err)
	}
	return nil
}

// changed lists the queries of rec whose results in the output were made
// from something else than rec as it is now.
func (b *batch) changed(rec *Record) []key {
	var fps []string
	var out []key
	for q := 0; q < max(len(rec.Queries), 1); q++ {
		have, ok := b.rf.Prior(rec.ID, q)
		if !ok {
			continue
		}
		if fps == nil {
			doc, derr := b.document(rec)
			fps = b.fingerprints(rec, doc, derr)
		}
		if have != fps[q] {
			out = append(out, key{rec.ID, q})
		}
	}
	return out
}

// redo refuses changed results, or removes them from the output with
// RedoChanged.
func (b *batch) redo(changed map[key]bool, names []string) error {
	if len(changed) == 0 {
		return nil
	}
	if !b.o.RedoChanged {
		sort.Strings(names)
		return &ChangedError{Output: b.o.Output, N: len(changed), IDs: names[:min(len(names), 10)]}
	}
	if err := b.rf.Remove(changed); err != nil {
		return err
	}
	b.sum.Redone += len(changed)
	if b.e.Log != nil {
		sort.Strings(names)
		fmt.Fprintf(b.e.Log, "star jobs: %d result(s) made from a record that has changed since are answered again (--redo-changed): %s\n",
			len(changed), strings.Join(names[:min(len(names), 10)], ", "))
	}
	return nil
}

// record answers every query of rec not yet answered from rec as it is
// now. complete is false when a stop came between two of its queries (the
// rest run on resume). Only errors that end the job (output,
// communication, a changed record without RedoChanged) are returned.
func (b *batch) record(rec *Record) (complete bool, err error) {
	doc, derr := []byte(nil), error(nil)
	if rec.Err == nil {
		doc, derr = b.document(rec)
	}
	fps := b.fingerprints(rec, doc, derr)
	pending, err := b.pending(rec, fps)
	if err != nil || len(pending) == 0 {
		return err == nil, err
	}
	w := &recordWriter{b: b, rec: rec, fps: fps}
	switch {
	case rec.Err != nil:
		return true, w.fail(pending, rec.Err)
	case derr != nil:
		return true, w.fail(pending, derr)
	}
	return b.answer(rec, string(doc), pending, w)
}

// pending lists rec's queries to answer now: those without a result, and
// those whose result was made from something else than rec as it is now
// (refused, or removed with RedoChanged). The others count as done.
func (b *batch) pending(rec *Record, fps []string) ([]int, error) {
	changed := map[key]bool{}
	var names []string
	var pending []int
	for q := range fps {
		k := key{rec.ID, q}
		b.asked[k] = true
		have, ok := b.rf.done[k]
		switch {
		case !ok:
			pending = append(pending, q)
		case have.fp != fps[q]:
			changed[k] = true
			names = append(names, k.String())
			pending = append(pending, q)
		default:
			b.sum.Skipped++
			b.sum.FailedEarly += boolInt(have.failed)
		}
	}
	return pending, b.redo(changed, names)
}

// recordWriter writes one record's results, each with its fingerprint,
// and counts them once they are on disk.
type recordWriter struct {
	b   *batch
	rec *Record
	fps []string
}

func (w *recordWriter) write(out *Output) error {
	out.Fingerprint = w.fps[out.QueryIndex]
	if err := w.b.rf.Write(out); err != nil {
		return err
	}
	sum := w.b.sum
	sum.Queries++
	sum.Failed += boolInt(out.Error != "")
	sum.Tokens += len(out.Tokens)
	return nil
}

// fail writes err as the result of each query of qs.
func (w *recordWriter) fail(qs []int, err error) error {
	for _, q := range qs {
		if werr := w.write(&Output{ID: w.rec.ID, QueryIndex: q, Tokens: []int{}, Error: err.Error()}); werr != nil {
			return werr
		}
	}
	return nil
}

// answer encodes the document once on every rank, then answers the
// pending queries one after another.
func (b *batch) answer(rec *Record, text string, pending []int, w *recordWriter) (complete bool, err error) {
	e, o, sum := b.e, b.o, b.sum
	s := o.Settings
	s.Defaults()
	s.Ranks = e.Ranks()
	ctx, err := e.encodeContext(text, o.Chat)
	var p *rank.Plan
	if err == nil {
		p, err = e.PlanDoc(ctx, s.Settings)
	}
	t1 := time.Now()
	if err := b.l.Doc(ctx, p, err); err != nil {
		if !rank.Agreed(err) {
			return false, err
		}
		return true, w.fail(pending, fmt.Errorf("%s: %v", rec.where(), err))
	}
	phase1 := time.Since(t1)
	if ss := b.l.Session(); ss != nil && ss.Stats.KVLoaded {
		sum.KVLoaded++
	}
	sum.EncodeSaved += phase1 * time.Duration(len(pending)-1)
	for i, q := range pending {
		if i > 0 && o.Stop.Requested() {
			return false, nil // the rest of this record runs on resume
		}
		out, err := e.runQuery(b.l, rec, q, text, ctx, o, s)
		if err != nil {
			if !rank.Agreed(err) {
				return false, err
			}
			out = &Output{ID: rec.ID, QueryIndex: q, Tokens: []int{}, Error: err.Error()}
		}
		if i == 0 && out.Timings != nil {
			out.Timings.Phase1 = phase1.Seconds()
			out.Timings.TTFT += phase1.Seconds()
		}
		if err := w.write(out); err != nil {
			return false, err
		}
	}
	return true, nil
}

// querySettings are the settings one query of a record runs with: the
// query's own, else the record's, else the command line's.
type querySettings struct {
	MaxTokens int
	Sampling  Sampling
	Logprobs  bool
}

func resolveQuery(qq Query, s Settings, logprobs bool) querySettings {
	qs := querySettings{MaxTokens: s.MaxTokens, Logprobs: logprobs,
		Sampling: Sampling{Temperature: s.Temperature, TopP: s.TopP, Seed: s.Seed, Stop: s.Stop}}
	if qq.MaxTokens != nil {
		qs.MaxTokens = *qq.MaxTokens
	}
	if qq.Temperature != nil {
		qs.Sampling.Temperature = *qq.Temperature
	}
	if qq.TopP != nil {
		qs.Sampling.TopP = *qq.TopP
	}
	if qq.Seed != nil {
		qs.Sampling.Seed = *qq.Seed
	}
	if qq.Stop != nil {
		qs.Sampling.Stop = qq.Stop
	}
	if qq.Logprobs != nil {
		qs.Logprobs = *qq.Logprobs
	}
	return qs
}

// fingerprints are, for each query of rec, a hash of everything its answer
// depends on: the model, the document (its bytes, or why it could not be
// read), the chat format, the query and its settings, the attention
// layout asked for and the K/V dtype. A record that could not be parsed is hashed by its
// bytes.
func (b *batch) fingerprints(rec *Record, doc []byte, derr error) []string {
	nq := max(len(rec.Queries), 1)
	out := make([]string, nq)
	s := b.o.Settings
	s.Defaults()
	var docSum [32]byte
	if derr == nil {
		docSum = sha256.Sum256(doc)
	}
	for q := range out {
		h := sha256.New()
		fmt.Fprintf(h, "star-result/1\x00model %s\x00", b.e.W.Fingerprint)
		switch {
		case rec.Err != nil:
			fmt.Fprintf(h, "bad record %x\x00", rec.Sum)
		case derr != nil:
			fmt.Fprintf(h, "unreadable document %q\x00", derr.Error())
		default:
			fmt.Fprintf(h, "document %x\x00", docSum)
		}
		if rec.Err == nil {
			qs := resolveQuery(rec.Queries[q], s, b.o.Logprobs)
			fmt.Fprintf(h, "chat %t\x00query %q\x00max_tokens %d\x00temperature %v\x00top_p %v\x00seed %d\x00stop %q\x00logprobs %t\x00",
				b.o.Chat, rec.Queries[q].Text, qs.MaxTokens, qs.Sampling.Temperature, qs.Sampling.TopP, qs.Sampling.Seed, qs.Sampling.Stop, qs.Logprobs)
			if p := rec.Queries[q].AnswerPrefix; p != "" { // absent before answer prefixes existed: older results keep their fingerprints
				fmt.Fprintf(h, "answer_prefix %q\x00", p)
			}
			fmt.Fprintf(h, "attention %s\x00block %d\x00anchor %d\x00", s.Attention, s.BlockSize, s.AnchorSize)
			if kv := b.e.KVDType; kv != weights.F32 { // absent for float32 K/V, which every result had before the K/V dtype was chosen: older results keep their fingerprints
				fmt.Fprintf(h, "kv_dtype %s\x00", layers.KVDTypeName(kv))
			}
			if s.Attention == "star" && s.BlockSize <= 0 { // the layout follows the rank count
				fmt.Fprintf(h, "ranks %d\x00", b.e.Ranks())
			}
		}
		out[q] = hex.EncodeToString(h.Sum(nil)[:16])
	}
	return out
}

// runQuery answers query q of rec on the encoded document ctx.
func (e *Engine) runQuery(l *rank.Leader, rec *Record, q int, text string, ctx []int, o BatchOptions, s Settings) (*Output, error) {
	qq := rec.Queries[q]
	qt, err := EncodeQueryAnswer(e.Tok, text, qq.Text, qq.AnswerPrefix, o.Chat)
	if err != nil {
		return nil, rank.Shared(fmt.Errorf("%s query %d: %v", rec.where(), q, err))
	}
	qs := resolveQuery(qq, s, o.Logprobs)
	maxTok, err := e.CheckLength(Tokens{Context: ctx, Query: qt}, qs.MaxTokens)
	if err != nil {
		return nil, rank.Shared(fmt.Errorf("%s query %d: %v", rec.where(), q, err))
	}
	smp := qs.Sampling
	res := &Result{Tokens: []int{}, Logprobs: []float64{}}
	tq := time.Now()
	if err := e.generate(l, qt, maxTok, &smp, res); err != nil {
		return nil, err
	}
	res.Timings.Total = time.Since(tq).Seconds()
	out := &Output{ID: rec.ID, QueryIndex: q, Text: res.Text, Tokens: res.Tokens, StopReason: res.StopReason,
		ContextTokens: len(ctx), QueryTokens: len(qt), Timings: &res.Timings}
	if maxTok == 0 {
		out.StopReason = "max_tokens"
	}
	if qs.Logprobs {
		out.Logprobs = res.Logprobs
	}
	return out, nil
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
