package layers

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Tuning of the SIMD MatMul (kern_amd64.go). Variables only so that tests
// can reach every code path and benchmarks can tune them (STAR_BENCH_GEMM,
// SetMatMulTuning in export_test.go): nothing else assigns them.
var (
	// GEMM blocking: kc columns of x and w per packed panel (the packed
	// weight micro-panel stays in L1), mc rows of x per block (in L2), nc
	// output columns (weight rows) per work item.
	gemmKC, gemmMC, gemmNC = 256, 96, 128
	// gemvMaxN: products with at most this many rows of x stream the
	// weights without packing them.
	gemvMaxN = 8
)

// task is work split over threads: run(tid) is called for some of the tids
// in [0, nt), concurrently: tid 0 (the caller) always, a worker only if it
// starts before the caller has finished its own share. So a task must hand
// out its work dynamically (an atomic counter), never by tid, and its runs
// must not wait for each other.
type task interface{ run(tid int) }

// workerPool is a persistent set of goroutines: the caller of run is thread
// 0 and threads-1 parked workers are threads 1.., so a CPU never has more
// than Threads() goroutines computing for it and hot loops start none.
//
// On a machine shared with other processes a woken worker may not get a
// core for milliseconds; the caller does not wait for workers that have
// not started by the time it runs out of work, it cancels them.
//
// mu is held by whoever is using the pool (and the per-pool resources that
// go with it); callers that find it held (nested or concurrent use) fall
// back to running on their own goroutine.
type workerPool struct {
	mu      sync.Mutex
	threads int
	once    sync.Once
	workers []*poolWorker
	done    chan struct{}
}

type poolWorker struct {
	state  atomic.Int32 // idle, assigned (t set, not started) or running
	parked atomic.Bool  // blocked on wake (else spinning or running)
	t      task
	wake   chan struct{}
}

const (
	workerIdle = iota
	workerAssigned
	workerRunning
)

// poolSpin is how long a worker polls for its next task, and the caller
// for the workers' completion, before blocking: waking a blocked thread
// costs tens of microseconds (more on a virtual machine), as much as a
// whole matrix-vector product of a small layer.
const poolSpin = 100 * time.Microsecond

// spinUntil polls cond for up to poolSpin, yielding now and then so that
// spinning never keeps a runnable goroutine (the caller, when GOMAXPROCS is
// below the thread count) off its processor.
func spinUntil(cond func() bool) bool {
	deadline := time.Now().Add(poolSpin)
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if i%64 == 63 {
			if time.Now().After(deadline) {
				return false
			}
			if i%1024 == 1023 {
				runtime.Gosched()
			}
		}
	}
}

func newWorkerPool(threads int) *workerPool {
	return &workerPool{threads: threads}
}

func (p *workerPool) start() {
	p.once.Do(func() {
		p.done = make(chan struct{}, p.threads)
		for i := 1; i < p.threads; i++ {
			w := &poolWorker{wake: make(chan struct{}, 1)}
			p.workers = append(p.workers, w)
			go w.loop(p, i)
		}
	})
}

func (w *poolWorker) loop(p *workerPool, tid int) {
	assigned := func() bool { return w.state.Load() == workerAssigned }
	for {
		if !spinUntil(assigned) {
			// Block. The dispatcher stores state before reading parked, we
			// store parked before reading state: one of us sees the other.
			w.parked.Store(true)
			if !assigned() {
				if _, ok := <-w.wake; !ok {
					return
				}
			}
			w.parked.Store(false)
		}
		if w.state.CompareAndSwap(workerAssigned, workerRunning) {
			w.t.run(tid)
			w.state.Store(workerIdle)
			p.done <- struct{}{}
		}
	}
}

// run calls t.run(0) on the caller and t.run(tid) on the workers 1..nt-1
// that start in time (nt <= threads), and returns when all runs are done.
// The caller holds mu.
func (p *workerPool) run(nt int, t task) {
	if nt <= 1 {
		t.run(0)
		return
	}
	p.start()
	ws := p.workers[:nt-1]
	for _, w := range ws {
		w.t = t
		w.state.Store(workerAssigned)
		if w.parked.Load() {
			select {
			case w.wake <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
	t.run(0)
	running := 0
	for _, w := range ws {
		if !w.state.CompareAndSwap(workerAssigned, workerIdle) {
			running++ // started: wait for it
		}
	}
	spinUntil(func() bool { return len(p.done) >= running })
	for ; running > 0; running-- {
		<-p.done
	}
	for _, w := range ws {
		w.t = nil
	}
}

// close stops the workers (after the owner is gone).
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		close(w.wake)
	}
	p.workers = nil
}

// runInline runs t on the caller alone (as a pool whose workers all start
// too late).
func runInline(t task) { t.run(0) }

// parTask is Parallel's task: nt contiguous chunks, claimed dynamically.
type parTask struct {
	n, nt int
	f     func(lo, hi int)
	next  atomic.Int64
}

func (t *parTask) run(tid int) {
	chunk := (t.n + t.nt - 1) / t.nt
	for {
		lo := int(t.next.Add(1)-1) * chunk
		if lo >= t.n {
			return
		}
		t.f(lo, min(lo+chunk, t.n))
	}
}

// scratch is a reusable float32 buffer whose slices start on a 64-byte
// boundary.
type scratch struct{ buf []float32 }

// get returns n floats (contents undefined), growing the buffer if needed.
func (s *scratch) get(n int) []float32 {
	const align = 16 // floats
	if cap(s.buf) < n+align {
		s.buf = make([]float32, n+align+n/4)
	}
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(s.buf)))&63) / 4
	if off != 0 {
		off = align - off
	}
	return s.buf[off : off+n : off+n]
}
