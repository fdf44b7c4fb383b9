package collective

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A Watchdog ends a job whose ranks stop answering: a rank stopped (kill
// -STOP), hung in the kernel or cut off the network would otherwise leave
// every other rank waiting in a collective forever, burning the
// allocation.
//
// Every rank runs heartbeat rounds on a goroutine of its own, apart from
// the ranks' work: each round is a tiny collective (on a communicator of
// its own) that completes once every rank has posted it, so a round
// completes while ranks compute or wait; only a rank that cannot run at
// all stops it. A rank whose current round has not completed within the
// timeout reports what it was doing (the Comm step it waited in, from
// Watch, and the phase its caller set) to OnHang, which ends the job.
//
// Ending the watch (Close) is collective too: rounds go on until every
// rank asked to close, so no round is left half done.
type Watchdog struct {
	timeout  time.Duration
	interval time.Duration
	hb       heartbeat
	onHang   func(Hang)

	phase     atomic.Pointer[string]
	step      atomic.Pointer[string]
	stepSince atomic.Int64 // unix nanoseconds when step began

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
	err       error // why the watch ended early (read after done)
}

// Hang is what a rank knows when its heartbeat round did not complete.
type Hang struct {
	Rank    int
	Waited  time.Duration // since this rank posted the round
	Step    string        // the Comm call this rank is in ("" : none)
	InStep  time.Duration // how long it has been in Step
	Phase   string        // what the caller said it was doing
	Timeout time.Duration
}

func (h Hang) String() string {
	what := "while computing"
	if h.Step != "" {
		what = fmt.Sprintf("while waiting %s in %s", h.InStep.Round(time.Second), h.Step)
	}
	if h.Phase != "" {
		what += " during " + h.Phase
	}
	return fmt.Sprintf("no heartbeat from the other ranks for %s %s: a rank is stopped, hung or cut off", h.Waited.Round(time.Second), what)
}

// heartbeat runs rounds: post starts one, saying whether this rank wants
// to close; test reports whether it completed and whether every rank
// wanted to close.
type heartbeat interface {
	post(closing bool) error
	test() (done, allClosing bool, err error)
	free() error
}

// ErrNoHeartbeat is returned by NewWatchdog when the transport cannot run
// heartbeats beside the ranks' own calls.
var ErrNoHeartbeat = errors.New("collective: this transport cannot run a watchdog")

// NewWatchdog starts watching comm's ranks (a collective call: every rank
// must make it, and later call Close). onHang is called at most once, from
// the watchdog's goroutine, and should end the job (Abort). It returns
// ErrNoHeartbeat for comms that cannot run heartbeats (MPI below
// MPI_THREAD_MULTIPLE).
func NewWatchdog(comm Comm, timeout time.Duration, onHang func(Hang)) (*Watchdog, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("collective: watchdog timeout %v must be positive", timeout)
	}
	var hb heartbeat
	var err error
	switch c := comm.(type) {
	case heartbeater:
		hb, err = c.heartbeat()
	case *Watched:
		return NewWatchdog(c.Comm, timeout, onHang)
	default:
		return nil, ErrNoHeartbeat
	}
	if err != nil {
		return nil, err
	}
	w := &Watchdog{timeout: timeout, interval: min(time.Second, timeout/4), hb: hb, onHang: onHang,
		closing: make(chan struct{}), done: make(chan struct{})}
	go w.run(comm.Rank())
	return w, nil
}

// heartbeater is a Comm that can run heartbeat rounds.
type heartbeater interface {
	heartbeat() (heartbeat, error)
}

// SetPhase names what this rank is doing, for the report of a hang.
func (w *Watchdog) SetPhase(p string) {
	if w != nil {
		w.phase.Store(&p)
	}
}

func (w *Watchdog) enter(step string) {
	w.step.Store(&step)
	w.stepSince.Store(time.Now().UnixNano())
}

func (w *Watchdog) leave() { w.step.Store(nil) }

func (w *Watchdog) run(rank int) {
	runtime.LockOSThread() // one thread for this goroutine's MPI calls
	defer runtime.UnlockOSThread()
	defer close(w.done)
	closing := false
	for {
		select {
		case <-w.closing:
			closing = true
		default:
		}
		if err := w.hb.post(closing); err != nil {
			w.err = fmt.Errorf("heartbeat: %w", err)
			return
		}
		posted := time.Now()
		for {
			done, all, err := w.hb.test()
			if err != nil {
				w.err = fmt.Errorf("heartbeat: %w", err)
				return
			}
			if done {
				if all {
					w.err = w.hb.free()
					return
				}
				break
			}
			if waited := time.Since(posted); waited > w.timeout {
				h := Hang{Rank: rank, Waited: waited, Timeout: w.timeout}
				if p := w.phase.Load(); p != nil {
					h.Phase = *p
				}
				if s := w.step.Load(); s != nil {
					h.Step = *s
					h.InStep = time.Since(time.Unix(0, w.stepSince.Load()))
				}
				w.onHang(h)
				w.err = fmt.Errorf("%s", h)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !closing {
			select {
			case <-time.After(w.interval):
			case <-w.closing:
			}
		}
	}
}

// Close ends the watch on every rank (collective). It waits until every
// rank has asked to close, at most the timeout (then it reports so).
func (w *Watchdog) Close() error {
	if w == nil {
		return nil
	}
	w.closeOnce.Do(func() { close(w.closing) })
	select {
	case <-w.done:
		return w.err
	case <-time.After(w.timeout + 2*w.interval):
		return fmt.Errorf("collective: watchdog: the other ranks did not end their watch within %v", w.timeout)
	}
}

// Watched is a Comm whose calls a Watchdog sees: a hang report names the
// call a rank waited in.
type Watched struct {
	Comm
	W *Watchdog
}

// Watch wraps c so that w knows which call each rank is in. A nil w
// returns c itself.
func Watch(c Comm, w *Watchdog) Comm {
	if w == nil || c == nil {
		return c
	}
	return &Watched{Comm: c, W: w}
}

func (c *Watched) do(step string, f func() error) error {
	c.W.enter(step)
	defer c.W.leave()
	return f()
}

func (c *Watched) Barrier() error { return c.do("Barrier", c.Comm.Barrier) }
func (c *Watched) Bcast(buf []byte, root int) error {
	return c.do(fmt.Sprintf("Bcast from rank %d", root), func() error { return c.Comm.Bcast(buf, root) })
}
func (c *Watched) BcastF32(buf []float32, root int) error {
	return c.do(fmt.Sprintf("BcastF32 from rank %d", root), func() error { return c.Comm.BcastF32(buf, root) })
}
func (c *Watched) GatherF32(send, recv []float32, root int) error {
	return c.do(fmt.Sprintf("GatherF32 to rank %d", root), func() error { return c.Comm.GatherF32(send, recv, root) })
}
func (c *Watched) AllgatherF32(send, recv []float32) error {
	return c.do("AllgatherF32", func() error { return c.Comm.AllgatherF32(send, recv) })
}
func (c *Watched) AllgatherBytes(send []byte) (out [][]byte, err error) {
	err = c.do("AllgatherBytes", func() error { out, err = c.Comm.AllgatherBytes(send); return err })
	return out, err
}
func (c *Watched) AllreduceF32(buf []float32, elem int, op ReduceFunc) error {
	return c.do("AllreduceF32", func() error { return c.Comm.AllreduceF32(buf, elem, op) })
}
func (c *Watched) SendBytes(buf []byte, to, tag int) error {
	return c.do(fmt.Sprintf("SendBytes to rank %d", to), func() error { return c.Comm.SendBytes(buf, to, tag) })
}
func (c *Watched) RecvBytes(from, tag int) (out []byte, err error) {
	err = c.do(fmt.Sprintf("RecvBytes from rank %d", from), func() error { out, err = c.Comm.RecvBytes(from, tag); return err })
	return out, err
}
func (c *Watched) IsendF32(buf []float32, to, tag int) (Request, error) {
	r, err := c.Comm.IsendF32(buf, to, tag)
	if err != nil {
		return nil, err
	}
	return &watchedRequest{r, c.W, fmt.Sprintf("Wait for a send to rank %d", to)}, nil
}
func (c *Watched) IrecvF32(buf []float32, from, tag int) (Request, error) {
	r, err := c.Comm.IrecvF32(buf, from, tag)
	if err != nil {
		return nil, err
	}
	return &watchedRequest{r, c.W, fmt.Sprintf("Wait for a message from rank %d", from)}, nil
}

type watchedRequest struct {
	Request
	w    *Watchdog
	step string
}

func (r *watchedRequest) Wait() error {
	r.w.enter(r.step)
	defer r.w.leave()
	return r.Request.Wait()
}
