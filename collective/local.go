package collective

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// NewLocal returns n in-process ranks that talk through shared memory: a
// Comm per rank, to be driven by one goroutine each. Semantics follow MPI:
// every collective must be called by all ranks in the same order (a rank
// calling a different collective, root or length makes the call fail on
// every rank), reductions fold strictly in rank order (bitwise what an
// in-order fold gives), and point-to-point messages between a pair with
// one tag arrive in order. Sends never block (messages are copied).
// Abort on any rank closes the group: blocked and later calls on every
// rank return ErrClosed. Stats count bytes as MPI does.
func NewLocal(n int) []Comm {
	if n < 1 {
		panic(fmt.Sprintf("collective: NewLocal(%d): need at least one rank", n))
	}
	g := &localGroup{
		n:      n,
		rounds: map[uint64]*round{},
		boxes:  map[boxKey]*mailbox{},
		beats:  map[uint64]*beatRound{},
	}
	g.cond = sync.NewCond(&g.mu)
	comms := make([]Comm, n)
	for r := range comms {
		comms[r] = &local{g: g, rank: r}
	}
	return comms
}

// Single is a lone rank: Rank 0 of a group of size 1 (NewLocal(1)[0]).
func Single() Comm { return NewLocal(1)[0] }

type localGroup struct {
	n    int
	mu   sync.Mutex
	cond *sync.Cond // signalled when a round completes, a message arrives or the group closes

	closed    bool
	abortCode int

	rounds map[uint64]*round // collectives in progress, by sequence number
	boxes  map[boxKey]*mailbox
	beats  map[uint64]*beatRound // heartbeat rounds (watchdog), by number
}

// beatRound is one heartbeat round of a Local group.
type beatRound struct{ posted, closing, seen int }

// round is one collective call: every rank adds its part; the last to
// arrive runs finish over all parts while the others wait, so finish may
// read and write every rank's buffers.
type round struct {
	op        string // operation and root, which must agree across ranks
	parts     []any
	arrived   int
	err       error
	finishing bool
	done      bool
	result    any
}

type boxKey struct{ from, to, tag int }

// mailbox is a FIFO of messages from one rank to another with one tag.
// Each receive takes a ticket when it is posted, so receives match
// messages in posting order as in MPI.
type mailbox struct {
	msgs   map[uint64]any // []byte or []float32, by arrival number
	sent   uint64         // messages that arrived
	posted uint64         // receives that took a ticket
}

type local struct {
	g    *localGroup
	rank int
	seq  uint64 // collectives this rank has entered

	bytesSent atomic.Int64
	calls     atomic.Int64
}

var _ Comm = (*local)(nil)

func (c *local) Rank() int { return c.rank }
func (c *local) Size() int { return c.g.n }

func (c *local) Stats() Stats {
	return Stats{BytesSent: c.bytesSent.Load(), Calls: c.calls.Load()}
}

// Abort closes the whole group (Local cannot end the process): every
// blocked and later call on any rank returns ErrClosed. It returns.
func (c *local) Abort(code int) {
	g := c.g
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		g.abortCode = code
	}
	g.mu.Unlock()
	g.cond.Broadcast()
}

// collective enters the next round as this rank with part, and returns
// once every rank has entered and finish (run by the last to arrive over
// all parts, in rank order) is done.
func (c *local) collective(op string, part any, finish func(parts []any) (any, error)) (any, error) {
	c.calls.Add(1)
	g := c.g
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	seq := c.seq
	c.seq++
	r := g.rounds[seq]
	if r == nil {
		r = &round{op: op, parts: make([]any, g.n)}
		g.rounds[seq] = r
	} else if r.op != op && r.err == nil {
		r.err = fmt.Errorf("collective: mismatched collective #%d: rank %d called %s, another rank %s", seq, c.rank, op, r.op)
	}
	r.parts[c.rank] = part
	r.arrived++
	if r.arrived == g.n {
		delete(g.rounds, seq)
		r.finishing = true
		g.mu.Unlock()
		var res any
		var err error
		if r.err == nil {
			res, err = runFinish(finish, r.parts)
		}
		g.mu.Lock()
		if r.err == nil {
			r.result, r.err = res, err
		}
		r.done = true
		g.mu.Unlock()
		g.cond.Broadcast()
		return r.result, r.err
	}
	// Once finish has started it is waited for even if the group closes,
	// since it writes into this rank's buffers.
	for !r.done && (r.finishing || !g.closed) {
		g.cond.Wait()
	}
	defer g.mu.Unlock()
	if !r.done {
		return nil, ErrClosed
	}
	return r.result, r.err
}

// runFinish runs finish, turning a panic (e.g. in a ReduceFunc) into an
// error for every rank instead of leaving them waiting.
func runFinish(finish func([]any) (any, error), parts []any) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("collective: panic in collective: %v\n%s", p, debug.Stack())
		}
	}()
	return finish(parts)
}

func (c *local) checkRoot(root int) error {
	if root < 0 || root >= c.g.n {
		return fmt.Errorf("collective: root %d out of range [0,%d)", root, c.g.n)
	}
	return nil
}

func (c *local) Barrier() error {
	_, err := c.collective("Barrier", nil, func([]any) (any, error) { return nil, nil })
	return err
}

func (c *local) Bcast(buf []byte, root int) error {
	return bcastLocal(c, "Bcast", buf, root, 1)
}

func (c *local) BcastF32(buf []float32, root int) error {
	return bcastLocal(c, "BcastF32", buf, root, 4)
}

func bcastLocal[T byte | float32](c *local, name string, buf []T, root int, width int64) error {
	if err := c.checkRoot(root); err != nil {
		c.calls.Add(1)
		return err
	}
	_, err := c.collective(fmt.Sprintf("%s(root=%d)", name, root), buf, func(parts []any) (any, error) {
		src := parts[root].([]T)
		for r, p := range parts {
			if dst := p.([]T); len(dst) != len(src) {
				return nil, fmt.Errorf("collective: %s: rank %d has %d elements, root %d has %d", name, r, len(dst), root, len(src))
			}
		}
		for r, p := range parts {
			if r != root {
				copy(p.([]T), src)
			}
		}
		return nil, nil
	})
	if err == nil && c.rank == root {
		c.bytesSent.Add(width * int64(len(buf)) * int64(c.g.n-1))
	}
	return err
}

type gatherPart struct{ send, recv []float32 }

func (c *local) GatherF32(send, recv []float32, root int) error {
	if err := c.checkRoot(root); err != nil {
		c.calls.Add(1)
		return err
	}
	_, err := c.collective(fmt.Sprintf("GatherF32(root=%d)", root), gatherPart{send, recv}, func(parts []any) (any, error) {
		out := parts[root].(gatherPart).recv
		return nil, gatherInto(parts, "GatherF32", func(r int) []float32 {
			if r == root {
				return out
			}
			return nil
		})
	})
	if err == nil {
		c.bytesSent.Add(4 * int64(len(send)))
	}
	return err
}

func (c *local) AllgatherF32(send, recv []float32) error {
	_, err := c.collective("AllgatherF32", gatherPart{send, recv}, func(parts []any) (any, error) {
		return nil, gatherInto(parts, "AllgatherF32", func(r int) []float32 { return parts[r].(gatherPart).recv })
	})
	if err == nil {
		c.bytesSent.Add(4 * int64(len(send)))
	}
	return err
}

// gatherInto checks that all sends are equally long and concatenates them
// into out(r) for every rank r where that is non-nil.
func gatherInto(parts []any, name string, out func(r int) []float32) error {
	k := len(parts[0].(gatherPart).send)
	for r, p := range parts {
		if n := len(p.(gatherPart).send); n != k {
			return fmt.Errorf("collective: %s: rank %d sends %d floats, rank 0 sends %d", name, r, n, k)
		}
	}
	want := k * len(parts)
	for r := range parts {
		if dst := out(r); dst != nil && len(dst) != want {
			return fmt.Errorf("collective: %s: rank %d recv has %d floats, want %d", name, r, len(dst), want)
		}
	}
	for r := range parts {
		if dst := out(r); dst != nil {
			for s, p := range parts {
				copy(dst[s*k:(s+1)*k], p.(gatherPart).send)
			}
		}
	}
	return nil
}

func (c *local) AllgatherBytes(send []byte) ([][]byte, error) {
	res, err := c.collective("AllgatherBytes", send, func(parts []any) (any, error) {
		total := 0
		for _, p := range parts {
			total += len(p.([]byte))
		}
		// One shared, read-only copy; each rank hands out its own slices.
		buf := make([]byte, 0, total)
		ends := make([]int, len(parts))
		for r, p := range parts {
			buf = append(buf, p.([]byte)...)
			ends[r] = len(buf)
		}
		return allgathered{buf, ends}, nil
	})
	if err != nil {
		return nil, err
	}
	a := res.(allgathered)
	mine := make([]byte, len(a.buf))
	copy(mine, a.buf)
	out := make([][]byte, c.g.n)
	lo := 0
	for r, hi := range a.ends {
		out[r] = mine[lo:hi:hi]
		lo = hi
	}
	c.bytesSent.Add(int64(len(send)))
	return out, nil
}

type allgathered struct {
	buf  []byte
	ends []int
}

func (c *local) AllreduceF32(buf []float32, elem int, op ReduceFunc) error {
	if op == nil || elem <= 0 || len(buf)%elem != 0 {
		c.calls.Add(1)
		if op == nil {
			return errors.New("collective: AllreduceF32: nil ReduceFunc")
		}
		return fmt.Errorf("collective: AllreduceF32: %d floats is not a whole number of %d-wide elements", len(buf), elem)
	}
	_, err := c.collective(fmt.Sprintf("AllreduceF32(elem=%d)", elem), buf, func(parts []any) (any, error) {
		for r, p := range parts {
			if n := len(p.([]float32)); n != len(buf) {
				return nil, fmt.Errorf("collective: AllreduceF32: rank %d has %d floats, rank %d has %d", r, n, c.rank, len(buf))
			}
		}
		// acc = x0; acc = acc ⊕ x_r for r = 1..n-1, with ⊕ applied as
		// op(in=acc, inout=x_r) into a scratch copy of x_r.
		acc := make([]float32, len(buf))
		tmp := make([]float32, len(buf))
		copy(acc, parts[0].([]float32))
		for _, p := range parts[1:] {
			copy(tmp, p.([]float32))
			op(acc, tmp, elem)
			acc, tmp = tmp, acc
		}
		for _, p := range parts {
			copy(p.([]float32), acc)
		}
		return nil, nil
	})
	if err == nil {
		c.bytesSent.Add(4 * int64(len(buf)))
	}
	return err
}

// Point-to-point.

func (c *local) checkPeer(what string, r int) error {
	if r < 0 || r >= c.g.n {
		return fmt.Errorf("collective: %s %d out of range [0,%d)", what, r, c.g.n)
	}
	return nil
}

func checkTag(tag int) error {
	if tag < 0 {
		return fmt.Errorf("collective: tag %d is negative", tag)
	}
	return nil
}

func (g *localGroup) box(k boxKey) *mailbox {
	b := g.boxes[k]
	if b == nil {
		b = &mailbox{msgs: map[uint64]any{}}
		g.boxes[k] = b
	}
	return b
}

// post delivers a copy (made by the caller) of a message.
func (c *local) post(to, tag int, msg any) error {
	g := c.g
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	b := g.box(boxKey{c.rank, to, tag})
	b.msgs[b.sent] = msg
	b.sent++
	g.mu.Unlock()
	g.cond.Broadcast()
	return nil
}

// ticket reserves the next message from->c with tag for one receive.
func (c *local) ticket(from, tag int) (*mailbox, uint64, error) {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, 0, ErrClosed
	}
	b := g.box(boxKey{from, c.rank, tag})
	t := b.posted
	b.posted++
	return b, t, nil
}

// take waits for message number t of b.
func (c *local) take(b *mailbox, t uint64) (any, error) {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.closed {
			return nil, ErrClosed
		}
		if m, ok := b.msgs[t]; ok {
			delete(b.msgs, t)
			return m, nil
		}
		g.cond.Wait()
	}
}

func (c *local) SendBytes(buf []byte, to, tag int) error {
	c.calls.Add(1)
	if err := errors.Join(c.checkPeer("SendBytes: destination rank", to), checkTag(tag)); err != nil {
		return err
	}
	if err := c.post(to, tag, append([]byte{}, buf...)); err != nil {
		return err
	}
	c.bytesSent.Add(int64(len(buf)))
	return nil
}

func (c *local) RecvBytes(from, tag int) ([]byte, error) {
	c.calls.Add(1)
	if err := errors.Join(c.checkPeer("RecvBytes: source rank", from), checkTag(tag)); err != nil {
		return nil, err
	}
	b, t, err := c.ticket(from, tag)
	if err != nil {
		return nil, err
	}
	m, err := c.take(b, t)
	if err != nil {
		return nil, err
	}
	msg, ok := m.([]byte)
	if !ok {
		return nil, fmt.Errorf("collective: RecvBytes from %d tag %d: message holds %T, not bytes", from, tag, m)
	}
	return msg, nil
}

type doneRequest struct{}

func (doneRequest) Wait() error { return nil }

func (c *local) IsendF32(buf []float32, to, tag int) (Request, error) {
	c.calls.Add(1)
	if err := errors.Join(c.checkPeer("IsendF32: destination rank", to), checkTag(tag)); err != nil {
		return nil, err
	}
	if err := c.post(to, tag, append([]float32{}, buf...)); err != nil {
		return nil, err
	}
	c.bytesSent.Add(4 * int64(len(buf)))
	return doneRequest{}, nil
}

type localRecv struct {
	c         *local
	b         *mailbox
	t         uint64
	buf       []float32
	from, tag int
	done      bool
	err       error
}

// Wait receives the message this request was matched to (in posting
// order) into buf; exactly len(buf) floats must arrive.
func (r *localRecv) Wait() error {
	if r.done {
		return r.err
	}
	r.done = true
	m, err := r.c.take(r.b, r.t)
	if err != nil {
		r.err = err
		return err
	}
	msg, ok := m.([]float32)
	switch {
	case !ok:
		r.err = fmt.Errorf("collective: IrecvF32 from %d tag %d: message holds %T, not float32s", r.from, r.tag, m)
	case len(msg) != len(r.buf):
		r.err = fmt.Errorf("collective: IrecvF32 from %d tag %d: %d floats arrived, buffer holds %d", r.from, r.tag, len(msg), len(r.buf))
	default:
		copy(r.buf, msg)
	}
	return r.err
}

func (c *local) IrecvF32(buf []float32, from, tag int) (Request, error) {
	c.calls.Add(1)
	if err := errors.Join(c.checkPeer("IrecvF32: source rank", from), checkTag(tag)); err != nil {
		return nil, err
	}
	b, t, err := c.ticket(from, tag)
	if err != nil {
		return nil, err
	}
	return &localRecv{c: c, b: b, t: t, buf: buf, from: from, tag: tag}, nil
}

// localBeat runs one rank's heartbeat rounds in a Local group.
type localBeat struct {
	c   *local
	seq uint64
}

func (c *local) heartbeat() (heartbeat, error) { return &localBeat{c: c}, nil }

func (b *localBeat) post(closing bool) error {
	g := b.c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	r := g.beats[b.seq]
	if r == nil {
		r = &beatRound{}
		g.beats[b.seq] = r
	}
	r.posted++
	r.closing += boolInt(closing)
	return nil
}

func (b *localBeat) test() (done, allClosing bool, err error) {
	g := b.c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false, false, ErrClosed
	}
	r := g.beats[b.seq]
	if r.posted < g.n {
		return false, false, nil
	}
	if r.seen++; r.seen == g.n {
		delete(g.beats, b.seq)
	}
	b.seq++
	return true, r.closing == g.n, nil
}

func (b *localBeat) free() error { return nil }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
