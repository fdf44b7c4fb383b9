package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights/tokenizer"
)

// Rank 0 leads a run with a stream of messages; the other ranks follow
// them (Follow). A run is one or more documents, each encoded once
// (phase 1) and then asked one or more queries (phase 2):
//
//	doc(plan) → phase 1 on every rank, then an agreement
//	query(plan) → phase 2 on every rank; rank 0 samples and broadcasts
//	              each next token
//	end → every rank's stats reach rank 0
//
// In one process the messages are not sent; rank 0 does everything.

// docPlan is rank 0's plan for one document.
type docPlan struct {
	Attention string      `msgpack:"attention"`
	Merge     string      `msgpack:"merge"`
	Layout    rank.Layout `msgpack:"layout"`
	Anchor    []int       `msgpack:"anchor"`
	N         int         `msgpack:"n"` // context tokens
	Capacity  int         `msgpack:"capacity"`
	KVKey     string      `msgpack:"kv_key"` // names saved K/V files ("" : none)
}

// queryPlan is one query against the encoded document.
type queryPlan struct {
	Steps  []int `msgpack:"steps"`   // phase-2 tokens known up front
	MaxTok int   `msgpack:"max_tok"` // tokens to generate (0: score only)
}

// msg is one broadcast from rank 0.
type msg struct {
	Op    string     `msgpack:"op"` // "doc", "query", "end"
	Err   string     `msgpack:"err,omitempty"`
	Doc   *docPlan   `msgpack:"doc,omitempty"`
	Query *queryPlan `msgpack:"query,omitempty"`
}

// share broadcasts rank 0's m (ignored elsewhere) and returns it on every
// rank.
func (e *Engine) share(m *msg) (*msg, error) {
	if !e.distributed() {
		return m, nil
	}
	var b []byte
	if e.Rank() == 0 {
		var err error
		if b, err = msgpack.Marshal(m); err != nil {
			return nil, err
		}
	}
	b, err := bcastBytes(e.Comm, b)
	if err != nil {
		return nil, fmt.Errorf("broadcast from rank 0: %w", err)
	}
	var got msg
	if err := msgpack.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("decode message from rank 0: %w", err)
	}
	return &got, nil
}

// planDoc is rank 0's plan for context ctx under settings s.
func (e *Engine) planDoc(ctx []int, s Settings) (*docPlan, error) {
	if len(ctx) == 0 {
		return nil, fmt.Errorf("the context is empty")
	}
	if len(ctx) >= e.M.Cfg.SeqLen {
		return nil, fmt.Errorf("the context (%d tokens) does not fit the model's context length %d with a query; shorten it or pass --context-length if the model supports more",
			len(ctx), e.M.Cfg.SeqLen)
	}
	p := &docPlan{Attention: s.Attention, Merge: e.Merge, N: len(ctx)}
	switch s.Attention {
	case "global":
		p.Capacity = min(s.Chunk, len(ctx))
	case "star":
		lay, err := s.Layout(len(ctx))
		if err != nil {
			return nil, err
		}
		p.Layout, p.Anchor = lay, ctx[:lay.AnchorSize]
		p.Capacity = max(lay.MaxBlockLen(), s.Chunk)
		if e.KVDir != "" {
			p.KVKey = docKey(e.W.Fingerprint, ctx, lay)
		}
	case "ring":
		lay, err := rank.RingLayout(len(ctx), s.Ranks)
		if err != nil {
			return nil, err
		}
		p.Layout = lay
		p.Capacity = max(2*lay.BlockSize, s.Chunk)
	default:
		return nil, fmt.Errorf("unknown attention %q (use star, ring or global)", s.Attention)
	}
	return p, nil
}

// session is one rank's encoded document: the worker holding its KV
// caches, and the rank's stats.
type session struct {
	e      *Engine
	p      *docPlan
	w      *rank.Worker // nil on ranks with nothing to do (global mode)
	stats  RankStats
	bytes0 int64
}

// shared reports whether all ranks take part in phase 2.
func (ss *session) shared() bool { return ss.e.distributed() && ss.p.Attention != "global" }

// openDoc is the "doc" message on every rank: phase 1, then an agreement
// that every rank succeeded. ctx matters on rank 0 only.
func (e *Engine) openDoc(p *docPlan, ctx []int) (*session, error) {
	ss := &session{e: e, p: p, stats: RankStats{Rank: e.Rank()}}
	t0 := time.Now()
	e.phase("phase 1 (%s attention, %d context tokens)", p.Attention, p.N)
	err := ss.phase1(ctx)
	ss.stats.Phase1 = time.Since(t0).Seconds()
	e.phase("the agreement after phase 1")
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
		if err := e.checkMemory(p); err != nil {
			return err
		}
		w := rank.NewWorker(e.M, 0, true, p.Capacity)
		// the whole sequence lives in the query cache: size it once, so
		// that it never grows by reallocation (a transient second copy)
		w.ReserveQuery(min(p.N+QueryReserve, e.M.Cfg.SeqLen))
		prog := ss.progress()
		for i := 0; i < len(ctx); i += w.Capacity() {
			j := min(i+w.Capacity(), len(ctx))
			if err := w.Step(ctx[i:j], i, nil, nil); err != nil {
				return fmt.Errorf("global prefill: %w", err)
			}
			if prog != nil {
				prog(int64(j), int64(len(ctx)))
			}
		}
		ss.w = w
		return nil
	}
	toks, err := shareBlocks(e.Comm, p.Layout, ctx)
	if err != nil {
		return err
	}
	if err := e.checkMemory(p); err != nil {
		return err
	}
	w := rank.NewWorker(e.M, e.Rank(), e.Rank() == 0, p.Capacity)
	w.ReserveQuery(QueryReserve)
	w.Progress = ss.progress()
	if e.distributed() {
		if w.Comb, err = rank.NewCombiner(e.Comm, p.Merge); err != nil {
			return err
		}
	}
	mine := p.Layout.Of(e.Rank())
	var kvPath string
	var kvh rank.KVHeader
	if e.KVDir != "" && p.KVKey != "" && len(mine) > 0 {
		kvPath = rank.KVPath(e.KVDir, p.KVKey, e.Rank(), e.Ranks())
		kvh = rank.KVHeader{Fingerprint: e.W.Fingerprint, DocKey: p.KVKey, Rank: e.Rank(), Ranks: e.Ranks(),
			BlockSize: p.Layout.BlockSize, AnchorSize: p.Layout.AnchorSize}
		if err := w.LoadKV(kvPath, kvh, mine); err == nil {
			ss.stats.KVLoaded = true
		} else if !os.IsNotExist(err) && e.Log != nil {
			fmt.Fprintf(e.Log, "star: rank %d: recomputing phase 1: %v\n", e.Rank(), err)
		}
	}
	if p.Attention == "ring" {
		if err := w.EncodeRing(e.Comm, mine, toks); err != nil {
			return fmt.Errorf("phase 1 (ring): %w", err)
		}
	} else if !ss.stats.KVLoaded {
		if err := w.EncodeBlocks(p.Anchor, mine, toks); err != nil {
			return fmt.Errorf("phase 1: %w", err)
		}
		if kvPath != "" {
			if err := w.SaveKV(kvPath, kvh); err != nil && e.Log != nil {
				fmt.Fprintf(e.Log, "star: rank %d: could not save K/V (%v); the next job recomputes phase 1\n", e.Rank(), err)
			}
		}
	}
	ss.w = w
	ss.stats.Blocks = len(mine)
	for _, b := range mine {
		ss.stats.Tokens += b.Len
	}
	return nil
}

// progress is rank 0's phase-1 progress printer, or nil.
func (ss *session) progress() func(done, total int64) {
	if ss.e.Log == nil || ss.e.Rank() != 0 {
		return nil
	}
	return newPhase1Progress(ss.e.Log, 0, ss.e.ProgressEvery).update
}

// base is how many tokens of the host's query cache belong to the
// document (global attention keeps the context there).
func (ss *session) base() int {
	if ss.p.Attention == "global" {
		return ss.p.N
	}
	return 0
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

// Sampling is rank 0's part of a query: how to choose tokens and where
// to stream text.
type Sampling struct {
	Temperature float64
	TopP        float64
	Seed        uint64
	Stop        []string  // stop strings (the text is cut before them)
	Stream      io.Writer // nil: no streaming
}

// query runs one query plan on every rank: the host's query cache is reset
// to the document, so answers do not depend on earlier queries; the plan's
// steps run through phase 2; then, on rank 0, tokens are sampled and
// broadcast until a stop. rows/logits (rank 0, scoring) receive the logits
// of those step rows. res is filled on rank 0.
func (ss *session) query(q *queryPlan, smp *Sampling, rows []int, logits []float32, res *Result) error {
	e := ss.e
	host := e.Rank() == 0
	if !host && !ss.shared() {
		return nil
	}
	if host {
		ss.w.TruncateQuery(ss.base())
	}
	hook(e.Rank(), "phase2")
	e.phase("phase 2 (the query's %d tokens)", len(q.Steps))
	tq := time.Now()
	pos := ss.p.N
	if q.MaxTok <= 0 { // scoring: logits of the given rows
		if err := ss.step(q.Steps, pos, logits, rows); err != nil {
			return fmt.Errorf("phase 2: %w", err)
		}
		return nil
	}
	V := e.M.Cfg.VocabSize
	var last []float32
	if host {
		last = make([]float32, V)
	}
	if err := ss.step(q.Steps, pos, last, []int{len(q.Steps) - 1}); err != nil {
		return fmt.Errorf("phase 2 (query): %w", err)
	}
	pos += len(q.Steps)
	var sampler *Sampler
	var stops []int
	var dec *tokenizer.StreamDecoder
	var text []byte
	var held int // bytes of text not yet streamed (a stop string may be starting)
	if host {
		sampler = NewSampler(smp.Temperature, smp.TopP, smp.Seed)
		if e.Tok != nil { // benchmarks on dummy weights have no tokenizer
			stops = stopTokens(e.Tok)
			dec = tokenizer.NewStreamDecoder(e.Tok)
			dec.After(q.Steps[len(q.Steps)-1])
		}
		res.StopReason = "max_tokens"
	}
	var tFirst time.Time
	for i := 0; i < q.MaxTok; i++ {
		id, more := 0, false
		if host {
			var lp float64
			id, lp = sampler.Sample(last)
			if i == 0 {
				tFirst = time.Now()
				res.Timings.TTFT = tFirst.Sub(tq).Seconds()
			}
			if slices.Contains(stops, id) {
				res.StopReason = "eos"
			} else {
				res.Tokens = append(res.Tokens, id)
				res.Logprobs = append(res.Logprobs, lp)
				if dec != nil {
					text = append(text, dec.Add(id)...)
				}
				more = i < q.MaxTok-1
				if cut, hit := cutAtStop(text, smp.Stop); hit {
					text, more, res.StopReason = text[:cut], false, "stop"
				}
				held = streamText(smp.Stream, text, held, smp.Stop, more)
			}
		}
		if ss.shared() {
			var err error
			if id, more, err = shareNext(e.Comm, id, more); err != nil {
				return err
			}
		}
		if !more {
			break
		}
		e.phase("phase 2 (generated token %d)", i+1)
		if err := ss.step([]int{id}, pos, last, []int{0}); err != nil {
			return fmt.Errorf("phase 2 (token %d): %w", i, err)
		}
		pos++
	}
	if host {
		if res.StopReason != "stop" && dec != nil {
			text = append(text, dec.Flush()...)
		}
		streamText(smp.Stream, text, held, nil, false)
		res.Text = string(text)
		res.Timings.Decode = time.Since(tFirst).Seconds()
		if n := len(res.Tokens) - 1; n > 0 && res.Timings.Decode > 0 {
			res.Timings.DecodeTPS = float64(n) / res.Timings.Decode
		}
	}
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

// finish gathers every rank's stats of this document on every rank.
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

// Follow is what every rank but 0 runs: obey rank 0's messages until
// "end". It returns rank 0's final error, if any, as an agreed error.
func (e *Engine) Follow() error {
	var ss *session
	var t2 time.Duration
	for {
		e.phase("waiting for rank 0's next message")
		m, err := e.share(nil)
		if err != nil {
			return err
		}
		switch m.Op {
		case "doc":
			ss, t2 = nil, 0
			if m.Err != "" || m.Doc == nil {
				continue
			}
			s, err := e.openDoc(m.Doc, nil)
			if err != nil && !Agreed(err) {
				return err
			}
			ss = s // nil after an agreed phase-1 failure: rank 0 moves on
		case "query":
			if m.Err != "" || ss == nil || m.Query == nil {
				continue
			}
			t0 := time.Now()
			if err := ss.query(m.Query, nil, nil, nil, &Result{}); err != nil {
				return err
			}
			t2 += time.Since(t0)
		case "end":
			e.phase("the end of the run (gathering stats)")
			st := RankStats{Rank: e.Rank()}
			if ss != nil {
				if _, err := ss.finish(t2); err != nil {
					return err
				}
			} else if _, err := gatherStats(e.Comm, st); err != nil {
				return err
			}
			if m.Err != "" {
				return &agreedError{msg: m.Err, remote: true}
			}
			return nil
		default:
			return fmt.Errorf("unknown message %q from rank 0: are all ranks running the same star binary?", m.Op)
		}
	}
}

// leader is rank 0's side of a run.
type leader struct {
	e  *Engine
	ss *session
	t2 time.Duration
}

// doc encodes a document on every rank (p nil with err: tell the others
// this document is skipped).
func (l *leader) doc(ctx []int, p *docPlan, perr error) error {
	l.ss, l.t2 = nil, 0
	m := &msg{Op: "doc", Doc: p}
	if perr != nil {
		m.Err, m.Doc = perr.Error(), nil
	}
	if _, err := l.e.share(m); err != nil {
		return err
	}
	if perr != nil {
		return &agreedError{msg: perr.Error()}
	}
	ss, err := l.e.openDoc(p, ctx)
	if err != nil {
		return err
	}
	l.ss = ss
	return nil
}

// query runs one query on the open document.
func (l *leader) query(q *queryPlan, smp *Sampling, rows []int, logits []float32, res *Result) error {
	if _, err := l.e.share(&msg{Op: "query", Query: q}); err != nil {
		return err
	}
	t0 := time.Now()
	err := l.ss.query(q, smp, rows, logits, res)
	l.t2 += time.Since(t0)
	return err
}

// end finishes the run on every rank; final is rank 0's error (if any) for
// the other ranks to exit with.
func (l *leader) end(final error) ([]RankStats, error) {
	l.e.phase("the end of the run (gathering stats)")
	m := &msg{Op: "end"}
	if final != nil {
		m.Err = final.Error()
	}
	if _, err := l.e.share(m); err != nil {
		return nil, err
	}
	if l.ss != nil {
		return l.ss.finish(l.t2)
	}
	return gatherStats(l.e.Comm, RankStats{Rank: l.e.Rank()})
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
	l := &leader{e: e}
	t0 := time.Now()
	maxTok, err := e.CheckLength(t, s.MaxTokens)
	var p *docPlan
	if err == nil {
		p, err = e.planDoc(t.Context, s)
	}
	err = l.doc(t.Context, p, err)
	res.Timings.Phase1 = time.Since(t0).Seconds()
	if err == nil {
		smp := &Sampling{Temperature: s.Temperature, TopP: s.TopP, Seed: s.Seed, Stop: s.Stop, Stream: stream}
		err = l.query(&queryPlan{Steps: t.Query, MaxTok: max(maxTok, 0)}, smp, nil, nil, res)
		if err != nil && !Agreed(err) && e.distributed() {
			return nil, err // a local failure mid-run: the caller aborts the job
		}
	}
	stats, serr := l.end(err)
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	if maxTok <= 0 {
		res.StopReason = "max_tokens"
	}
	if e.distributed() {
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
	var p *docPlan
	if err == nil {
		p, err = e.planDoc(t.Context, s)
	}
	l := &leader{e: e}
	t0 := time.Now()
	err = l.doc(t.Context, p, err)
	res := &ScoreResult{ContextTokens: len(t.Context), QueryTokens: len(t.Query), Tokens: cont}
	res.Timings.Phase1 = time.Since(t0).Seconds()
	if err == nil {
		res.Logprobs, err = l.scoreTokens(t.Query, cont)
		if err != nil && !Agreed(err) && e.distributed() {
			return nil, err
		}
	}
	stats, serr := l.end(err)
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	if e.distributed() {
		res.Ranks = stats
	}
	res.NLL = meanNLL(res.Logprobs)
	res.Perplexity = expSafe(res.NLL)
	res.Timings.Total = time.Since(t0).Seconds()
	return res, nil
}

// scoreTokens teacher-forces cont after the query q on the open document
// and returns each continuation token's log-probability (rank 0). Row i
// of the steps predicts token i+1: the query's last row predicts cont[0].
func (l *leader) scoreTokens(q, cont []int) ([]float64, error) {
	V := l.e.M.Cfg.VocabSize
	steps := append(slices.Clone(q), cont[:len(cont)-1]...)
	rows := make([]int, len(cont))
	for i := range rows {
		rows[i] = len(q) - 1 + i
	}
	logits := make([]float32, len(rows)*V)
	if err := l.query(&queryPlan{Steps: steps}, nil, rows, logits, nil); err != nil {
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

// docKey names a document's saved K/V: model, context tokens and layout.
func docKey(fingerprint string, ctx []int, lay rank.Layout) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%d|%d|%d|", fingerprint, lay.N, lay.BlockSize, lay.AnchorSize, lay.Ranks)
	var b [4]byte
	for _, t := range ctx {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// checkMemory refuses, before allocating anything, a document whose share
// on this rank cannot fit in the memory available to it (the node's
// available memory divided by the ranks on the node). The weights are
// already loaded: only K/V and activations are still to come.
func (e *Engine) checkMemory(p *docPlan) error {
	avail := MemAvailable()
	if avail == 0 {
		return nil
	}
	local := max(e.LocalRanks, 1)
	var m Memory
	if p.Attention == "global" { // everything in rank 0's query cache
		m = Memory{Blocks: 1, BlockTokens: p.N, KVBytes: KVBytesPerToken(&e.M.Cfg) * int64(p.N+QueryReserve),
			ActivationBytes: e.M.StateBytes(p.Capacity) + 4*int64(e.M.Cfg.VocabSize)*2}
	} else {
		m = RankMemory(e.M, 0, p.Layout, e.Rank(), QueryReserve, p.Capacity)
	}
	need := m.KVBytes + m.AnchorBytes + m.ActivationBytes
	if need > avail/int64(local) {
		return MemoryRefusal(need, fmt.Sprintf("K/V of %d blocks, %d tokens: %.2f GiB; anchor %.2f GiB; activations %.2f GiB",
			m.Blocks, m.BlockTokens, gib(m.KVBytes), gib(m.AnchorBytes), gib(m.ActivationBytes)),
			avail/int64(local), local, "use more ranks, a smaller --block-size, or a shorter context")
	}
	return nil
}
