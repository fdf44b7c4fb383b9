package rank

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Rank 0 leads a run with a stream of messages; the other ranks follow
// them (Follow). A run is one or more documents, each encoded once
// (phase 1) and then asked one or more queries (phase 2):
//
//	doc(plan) → phase 1 on every rank, then an agreement
//	query(plan) → phase 2 on every rank; rank 0 chooses and broadcasts
//	              each next token
//	end → every rank's stats reach rank 0
//
// In one process the messages are not sent; rank 0 does everything.

// Plan is rank 0's plan for one document.
type Plan struct {
	Attention Attention `msgpack:"attention"`
	Merge     MergeMode `msgpack:"merge"`
	Layout    Layout    `msgpack:"layout"`
	Anchor    []int     `msgpack:"anchor"`
	N         int       `msgpack:"n"`        // context tokens
	Capacity  int       `msgpack:"capacity"` // tokens per forward
	Chunk     int       `msgpack:"chunk"`    // phase-2 tokens per step
	KVKey     string    `msgpack:"kv_key"`   // names saved K/V files ("" : none)
	// KVDType is the K/V caches' element type on every rank (rank 0's
	// Engine.KVDType).
	KVDType weights.DType `msgpack:"kv_dtype"`
	// RandomKV skips phase 1: every rank's caches hold random finite K/V
	// for its share of the context (benchmarks of decode after a long
	// context; see Worker.FillRandom).
	RandomKV bool `msgpack:"random_kv"`
}

// QueryPlan is one query against the encoded document.
type QueryPlan struct {
	Steps  []int `msgpack:"steps"`   // phase-2 tokens known up front
	MaxTok int   `msgpack:"max_tok"` // tokens to generate (0: score only)
}

// msg is one broadcast from rank 0.
type msg struct {
	Op    string     `msgpack:"op"` // "doc", "query", "end"
	Err   string     `msgpack:"err,omitempty"`
	Doc   *Plan      `msgpack:"doc,omitempty"`
	Query *QueryPlan `msgpack:"query,omitempty"`
}

// share broadcasts rank 0's m (ignored elsewhere) and returns it on every
// rank.
func (e *Engine) share(m *msg) (*msg, error) {
	if !e.Distributed() {
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

// PlanDoc is rank 0's plan for context ctx under settings s.
func (e *Engine) PlanDoc(ctx []int, s Settings) (*Plan, error) {
	s.Defaults()
	if len(ctx) == 0 {
		return nil, fmt.Errorf("the context is empty")
	}
	if len(ctx) >= e.M.Cfg.SeqLen {
		return nil, fmt.Errorf("the context (%d tokens) does not fit the model's context length %d with a query; shorten it or pass --context-length if the model supports more",
			len(ctx), e.M.Cfg.SeqLen)
	}
	if !slices.Contains(layers.KVDTypes, e.KVDType) {
		return nil, fmt.Errorf("K/V dtype %v: use f32, f16 or bf16", e.KVDType)
	}
	p := &Plan{Attention: s.Attention, Merge: e.Merge, N: len(ctx), Chunk: s.Chunk, KVDType: e.KVDType}
	switch s.Attention {
	case Global:
		p.Capacity = min(s.Chunk, len(ctx))
	case Star:
		lay, err := s.Layout(len(ctx))
		if err != nil {
			return nil, err
		}
		p.Layout, p.Anchor = lay, ctx[:lay.AnchorSize]
		p.Capacity = Capacity(lay, s.Chunk)
		if e.KVDir != "" {
			p.KVKey = docKey(e.W.Fingerprint, ctx, lay, e.KVDType)
		}
	case Ring:
		lay, err := RingLayout(len(ctx), s.Ranks)
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

// docKey names a document's saved K/V: model, K/V dtype, context tokens
// and layout.
func docKey(fingerprint string, ctx []int, lay Layout, kv weights.DType) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%d|%d|%d|", fingerprint, layers.KVDTypeName(kv), lay.N, lay.BlockSize, lay.AnchorSize, lay.Ranks)
	var b [4]byte
	for _, t := range ctx {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// Session is one rank's encoded document: the worker holding its K/V
// caches, and the rank's stats.
type Session struct {
	e      *Engine
	p      *Plan
	w      *Worker // nil on ranks with nothing to do (global mode)
	Stats  RankStats
	bytes0 int64
}

// shared reports whether all ranks take part in phase 2.
func (ss *Session) shared() bool { return ss.e.Distributed() && ss.p.Attention != Global }

// open is the "doc" message on every rank: phase 1, then an agreement
// that every rank succeeded. ctx matters on rank 0 only.
func (e *Engine) open(p *Plan, ctx []int) (*Session, error) {
	ss := &Session{e: e, p: p, Stats: RankStats{Rank: e.Rank()}}
	t0 := time.Now()
	e.Doing("phase 1 (%s attention, %d context tokens)", p.Attention, p.N)
	err := ss.phase1(ctx)
	ss.Stats.Phase1 = time.Since(t0).Seconds()
	e.Doing("the agreement after phase 1")
	if err := agree(e.Comm, err, status{}); err != nil {
		ss.Close()
		return nil, err
	}
	if e.Comm != nil {
		ss.bytes0 = e.Comm.Stats().BytesSent
	}
	return ss, nil
}

func (ss *Session) phase1(ctx []int) error {
	e, p := ss.e, ss.p
	e.hook("phase1")
	if p.RandomKV {
		return ss.fillRandom()
	}
	if p.Attention == Global {
		return ss.prefillGlobal(ctx)
	}
	toks, err := shareBlocks(e.Comm, p.Layout, ctx)
	if err != nil {
		return err
	}
	if err := e.checkMemory(p); err != nil {
		return err
	}
	w, err := NewWorkerFor(e.Backend(), p.Layout, e.Rank(), p.Capacity, p.Chunk, QueryReserve, p.KVDType)
	if err != nil {
		return err
	}
	ss.w = w // from here on the session owns it (and frees it)
	w.Progress = ss.progress()
	if e.Distributed() {
		if err := ss.joinRanks(w); err != nil {
			return err
		}
	}
	mine := p.Layout.Of(e.Rank())
	if p.Attention == Ring {
		if err := w.EncodeRing(e.Comm, mine, toks); err != nil {
			return fmt.Errorf("phase 1 (ring): %w", err)
		}
	} else if err := ss.encodeStar(w, mine, toks); err != nil {
		return err
	}
	ss.Stats.Blocks = len(mine)
	for _, b := range mine {
		ss.Stats.Tokens += b.Len
	}
	return nil
}

// fillRandom stands for phase 1 when the plan asks for random K/V: this
// rank's blocks of the layout (global attention: rank 0's query cache of
// the whole context) are filled, not encoded.
func (ss *Session) fillRandom() error {
	e, p := ss.e, ss.p
	lay, reserve, n0 := p.Layout, QueryReserve, 0
	if p.Attention == Global {
		if e.Rank() != 0 {
			return nil
		}
		lay, reserve, n0 = Layout{}, globalReserve(p.N, e.M.Cfg.SeqLen), p.N
	}
	if err := e.checkMemory(p); err != nil {
		return err
	}
	w, err := NewWorkerFor(e.Backend(), lay, e.Rank(), p.Capacity, p.Chunk, reserve, p.KVDType)
	if err != nil {
		return err
	}
	ss.w = w
	if e.Distributed() && p.Attention != Global {
		if err := ss.joinRanks(w); err != nil {
			return err
		}
	}
	mine := lay.Of(e.Rank())
	if err := w.FillRandom(mine, n0, 1); err != nil {
		return err
	}
	ss.Stats.Blocks = len(mine)
	for _, b := range mine {
		ss.Stats.Tokens += b.Len
	}
	return nil
}

// prefillGlobal is phase 1 of exact global attention: the whole context
// through rank 0's query cache (the other ranks idle).
func (ss *Session) prefillGlobal(ctx []int) error {
	e, p := ss.e, ss.p
	if e.Rank() != 0 {
		return nil
	}
	if err := e.checkMemory(p); err != nil {
		return err
	}
	// the whole sequence lives in the query cache: sized once, so that
	// it never grows by reallocation (a transient second copy)
	w, err := NewWorkerFor(e.Backend(), Layout{}, 0, p.Capacity, p.Chunk, globalReserve(p.N, e.M.Cfg.SeqLen), p.KVDType)
	if err != nil {
		return err
	}
	ss.w = w
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
	return nil
}

// encodeStar is phase 1 of Star Attention on this rank's blocks, or their
// K/V read back from --kv-dir when a saved file matches.
func (ss *Session) encodeStar(w *Worker, mine []Block, toks [][]int) error {
	e, p := ss.e, ss.p
	var kvPath string
	var kvh KVHeader
	if e.KVDir != "" && p.KVKey != "" && len(mine) > 0 {
		kvPath = KVPath(e.KVDir, p.KVKey, e.Rank(), e.Ranks())
		kvh = KVHeader{Fingerprint: e.W.Fingerprint, DocKey: p.KVKey, Rank: e.Rank(), Ranks: e.Ranks(),
			BlockSize: p.Layout.BlockSize, AnchorSize: p.Layout.AnchorSize}
		if err := w.LoadKV(kvPath, kvh, mine); err == nil {
			ss.Stats.KVLoaded = true
			return nil
		} else if !os.IsNotExist(err) && e.Log != nil {
			fmt.Fprintf(e.Log, "star: rank %d: recomputing phase 1: %v\n", e.Rank(), err)
		}
	}
	if err := w.EncodeBlocks(p.Anchor, mine, toks); err != nil {
		return fmt.Errorf("phase 1: %w", err)
	}
	if kvPath != "" {
		if err := w.SaveKV(kvPath, kvh); err != nil && e.Log != nil {
			fmt.Fprintf(e.Log, "star: rank %d: could not save K/V (%v); the next job recomputes phase 1\n", e.Rank(), err)
		}
	}
	return nil
}

// progress is rank 0's phase-1 progress printer, or nil.
func (ss *Session) progress() func(done, total int64) {
	if ss.e.Log == nil || ss.e.Rank() != 0 {
		return nil
	}
	return newPhase1Progress(ss.e.Log, 0, ss.e.ProgressEvery).update
}

// base is how many tokens of the host's query cache belong to the
// document (global attention keeps the context there).
func (ss *Session) base() int {
	if ss.p.Attention == Global {
		return ss.p.N
	}
	return 0
}

// step runs toks (at pos0..) through phase 2 on this rank in chunks; on
// rank 0, out receives the logits of rows (indices into toks).
func (ss *Session) step(toks []int, pos0 int, out []float32, rows []int) error {
	if ss.w == nil {
		return nil
	}
	V := ss.e.M.Cfg.VocabSize
	c := min(ss.w.Capacity(), ss.p.Chunk) // the partials are sized for a chunk
	ss.Stats.Steps += len(toks)
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

// Chooser is rank 0's decision after each step of generation: from the
// logits of the last position ([VocabSize]), the next token and whether
// generation goes on after it.
type Chooser func(logits []float32) (next int, more bool)

// query runs one query plan on every rank: the host's query cache is reset
// to the document, so answers do not depend on earlier queries; the plan's
// steps run through phase 2. With q.MaxTok > 0, rank 0 then chooses
// (choose) and broadcasts each next token, at most MaxTok of them, until
// it says stop. With MaxTok 0 (scoring), rank 0's logits receive the
// logits of the step rows listed in rows.
func (ss *Session) query(q *QueryPlan, choose Chooser, rows []int, logits []float32) error {
	e := ss.e
	host := e.Rank() == 0
	if !host && !ss.shared() {
		return nil
	}
	if host {
		ss.w.TruncateQuery(ss.base())
	}
	e.hook("phase2")
	e.Doing("phase 2 (the query's %d tokens)", len(q.Steps))
	pos := ss.p.N
	if q.MaxTok <= 0 {
		if err := ss.step(q.Steps, pos, logits, rows); err != nil {
			return fmt.Errorf("phase 2: %w", err)
		}
		return nil
	}
	var last []float32
	if host {
		last = ss.w.Logits()
	}
	if err := ss.step(q.Steps, pos, last, []int{len(q.Steps) - 1}); err != nil {
		return fmt.Errorf("phase 2 (query): %w", err)
	}
	pos += len(q.Steps)
	for i := 0; i < q.MaxTok; i++ {
		id, more := 0, false
		if host {
			id, more = choose(last)
			more = more && i < q.MaxTok-1
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
		e.Doing("phase 2 (generated token %d)", i+1)
		if err := ss.step([]int{id}, pos, last, []int{0}); err != nil {
			return fmt.Errorf("phase 2 (token %d): %w", i, err)
		}
		pos++
	}
	return nil
}

// joinRanks sets how w merges its phase-2 partials with the other ranks':
// the engine's Exchanger (NCCL between GPUs), else through Comm from the
// host in the plan's merge mode.
func (ss *Session) joinRanks(w *Worker) error {
	e := ss.e
	ss.Stats.Device = e.Backend().Name()
	if e.Exchange != nil {
		w.X, ss.Stats.Exchange = e.Exchange, e.Exchange.Name()
		return nil
	}
	var err error
	w.Comb, err = NewCombiner(e.Comm, ss.p.Merge)
	ss.Stats.Exchange = "mpi-" + string(ss.p.Merge)
	return err
}

// Close frees what the session's worker holds on its backend (device
// memory); the session is not used afterwards. Nil-safe.
func (ss *Session) Close() {
	if ss != nil && ss.w != nil {
		ss.w.Close()
		ss.w = nil
	}
}

// finish gathers every rank's stats of this document on every rank.
func (ss *Session) finish(phase2 time.Duration) ([]RankStats, error) {
	ss.Stats.Phase2 = phase2.Seconds()
	if ss.w != nil {
		ss.Stats.KVBytes = ss.w.CacheBytes()
	}
	if c := ss.e.Comm; c != nil {
		st := c.Stats()
		ss.Stats.BytesSent = st.BytesSent
		ss.Stats.Phase2B = st.BytesSent - ss.bytes0
	}
	return gatherStats(ss.e.Comm, ss.Stats)
}

// Follow is what every rank but 0 runs: obey rank 0's messages until
// "end". It returns rank 0's final error, if any, as an agreed error.
func (e *Engine) Follow() error {
	var ss *Session
	var t2 time.Duration
	for {
		e.Doing("waiting for rank 0's next message")
		m, err := e.share(nil)
		if err != nil {
			return err
		}
		switch m.Op {
		case "doc":
			ss.Close()
			ss, t2 = nil, 0
			if m.Err != "" || m.Doc == nil {
				continue
			}
			s, err := e.open(m.Doc, nil)
			if err != nil && !Agreed(err) {
				return err
			}
			ss = s // nil after an agreed phase-1 failure: rank 0 moves on
		case "query":
			if m.Err != "" || ss == nil || m.Query == nil {
				continue
			}
			t0 := time.Now()
			if err := ss.query(m.Query, nil, nil, nil); err != nil {
				return err
			}
			t2 += time.Since(t0)
		case "end":
			e.Doing("the end of the run (gathering stats)")
			if ss != nil {
				_, err := ss.finish(t2)
				ss.Close()
				if err != nil {
					return err
				}
			} else if _, err := gatherStats(e.Comm, RankStats{Rank: e.Rank()}); err != nil {
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

// Leader is rank 0's side of a run: each call tells the other ranks what
// to do, then does it here.
type Leader struct {
	e  *Engine
	ss *Session
	t2 time.Duration
}

// Lead starts a run on rank 0.
func (e *Engine) Lead() *Leader { return &Leader{e: e} }

// Doc encodes a document on every rank (p nil with perr: tell the others
// this document is skipped, and return perr as an agreed error).
func (l *Leader) Doc(ctx []int, p *Plan, perr error) error {
	l.ss.Close()
	l.ss, l.t2 = nil, 0
	m := &msg{Op: "doc", Doc: p}
	if perr != nil {
		m.Err, m.Doc = perr.Error(), nil
	}
	if _, err := l.e.share(m); err != nil {
		return err
	}
	if perr != nil {
		return &agreedError{msg: perr.Error(), cause: perr}
	}
	ss, err := l.e.open(p, ctx)
	if err != nil {
		return err
	}
	l.ss = ss
	return nil
}

// Session is the open document's session on rank 0 (nil before Doc or
// after a failed one).
func (l *Leader) Session() *Session { return l.ss }

// Drop forgets the open document (its caches go with it).
func (l *Leader) Drop() {
	l.ss.Close()
	l.ss = nil
}

// Generate runs the query's steps, then generates on every rank: choose
// picks each next token on rank 0, at most maxTok of them.
func (l *Leader) Generate(steps []int, maxTok int, choose Chooser) error {
	return l.run(&QueryPlan{Steps: steps, MaxTok: maxTok}, choose, nil, nil)
}

// Logits runs steps through phase 2 on every rank and gives, on rank 0,
// the logits of the step rows listed in rows ([len(rows), VocabSize]).
func (l *Leader) Logits(steps, rows []int, logits []float32) error {
	return l.run(&QueryPlan{Steps: steps}, nil, rows, logits)
}

func (l *Leader) run(q *QueryPlan, choose Chooser, rows []int, logits []float32) error {
	if l.ss == nil {
		return fmt.Errorf("no document is open")
	}
	if _, err := l.e.share(&msg{Op: "query", Query: q}); err != nil {
		return err
	}
	t0 := time.Now()
	err := l.ss.query(q, choose, rows, logits)
	l.t2 += time.Since(t0)
	return err
}

// End finishes the run on every rank; final is rank 0's error (if any) for
// the other ranks to exit with. It returns every rank's stats of the last
// document.
func (l *Leader) End(final error) ([]RankStats, error) {
	l.e.Doing("the end of the run (gathering stats)")
	m := &msg{Op: "end"}
	if final != nil {
		m.Err = final.Error()
	}
	if _, err := l.e.share(m); err != nil {
		return nil, err
	}
	if l.ss != nil {
		st, err := l.ss.finish(l.t2)
		l.ss.Close()
		l.ss = nil
		return st, err
	}
	return gatherStats(l.e.Comm, RankStats{Rank: l.e.Rank()})
}

// globalReserve is the query cache of global attention: the context,
// the query and generated tokens.
func globalReserve(n, seqLen int) int { return min(n+QueryReserve, seqLen) }

// checkMemory refuses, before allocating anything, a document whose share
// on this rank cannot fit in the memory available to it: the node's
// available memory divided by the ranks on the node, or on a device
// backend (layers.Device) the device's free memory divided by the ranks
// sharing it. The weights are already loaded: only K/V and activations
// are still to come.
func (e *Engine) checkMemory(p *Plan) error {
	lay, reserve := p.Layout, QueryReserve
	if p.Attention == Global { // everything in rank 0's query cache
		lay, reserve = Layout{N: p.N}, globalReserve(p.N, e.M.Cfg.SeqLen)
	}
	m := Footprint(e.M, 0, lay, e.Rank(), reserve, p.Capacity, p.Chunk, p.KVDType)
	advice := func(more string) string {
		if p.KVDType == weights.F32 {
			return "use --kv-dtype f16, " + more + ", a smaller --block-size, or a shorter context"
		}
		return "use " + more + ", a smaller --block-size, or a shorter context"
	}
	if dev, ok := e.Backend().(layers.Device); ok {
		// the weights are on the device already
		free, _, err := dev.MemInfo()
		if err != nil {
			return fmt.Errorf("device memory: %w", err)
		}
		share := int64(max(dev.Sharing(), 1))
		wp := planWorker(lay, e.Rank(), p.Capacity, p.Chunk, reserve, p.KVDType)
		acts := DeviceActivationBytes(&e.M.Cfg, wp.capacity, wp.parts, wp.chunk, Wide16(e.W))
		if need := m.KVBytes + m.AnchorBytes + acts; need > free/share {
			return fmt.Errorf("needs %s of device memory (%s K/V of %d blocks, %d tokens: %s; anchor %s; activations %s) but %s has %s free for each of its %d rank(s): %s",
				size(need), m.KVDType, m.Blocks, m.BlockTokens, size(m.KVBytes), size(m.AnchorBytes), size(acts), e.Backend().Name(),
				size(free/share), share, advice("more ranks or GPUs"))
		}
		return nil
	}
	avail := MemAvailable()
	if avail == 0 {
		return nil
	}
	local := max(e.LocalRanks, 1)
	if need := m.KVBytes + m.AnchorBytes + m.ActivationBytes; need > avail/int64(local) {
		return MemoryRefusal(need, fmt.Sprintf("%s K/V of %d blocks, %d tokens: %.2f GiB; anchor %.2f GiB; activations %.2f GiB",
			m.KVDType, m.Blocks, m.BlockTokens, gib(m.KVBytes), gib(m.AnchorBytes), gib(m.ActivationBytes)),
			avail/int64(local), local, advice("more ranks"))
	}
	return nil
}
