package layers

import (
	"sync"
	"unsafe"
)

// Tuning of the SIMD MatMul (kern_amd64.go); variables so that tests can
// reach every code path.
var (
	// GEMM blocking: kc columns of x and w per packed panel (the packed
	// weight micro-panel stays in L1), mc rows of x per block (in L2), nc
	// output columns (weight rows) per work item.
	gemmKC, gemmMC, gemmNC = 256, 96, 128
	// gemvMaxN: products with at most this many rows of x stream the
	// weights without packing them.
	gemvMaxN = 4
)

// task is work split over threads: run(tid) is called once for each tid in
// [0, nt), concurrently. Tasks must not wait for each other (a busy pool runs
// them one after another on the caller).
type task interface{ run(tid int) }

// workerPool is a persistent set of goroutines: the caller of run is thread
// 0 and threads-1 parked workers are threads 1.., so a CPU never has more
// than Threads() goroutines computing for it and hot loops start none.
//
// mu is held by whoever is using the pool (and the per-pool resources that
// go with it); callers that find it held (nested or concurrent use) fall
// back to running on their own goroutine.
type workerPool struct {
	mu      sync.Mutex
	threads int
	once    sync.Once
	wake    []chan task
	done    chan struct{}
}

func newWorkerPool(threads int) *workerPool {
	return &workerPool{threads: threads}
}

func (p *workerPool) start() {
	p.once.Do(func() {
		p.done = make(chan struct{}, p.threads)
		p.wake = make([]chan task, p.threads-1)
		for i := range p.wake {
			ch := make(chan task, 1)
			p.wake[i] = ch
			go func(tid int) {
				for t := range ch {
					t.run(tid)
					p.done <- struct{}{}
				}
			}(i + 1)
		}
	})
}

// run calls t.run(tid) for tid in [0, nt), nt <= threads, and returns when
// all are done. The caller holds mu.
func (p *workerPool) run(nt int, t task) {
	if nt <= 1 {
		t.run(0)
		return
	}
	p.start()
	for i := 0; i < nt-1; i++ {
		p.wake[i] <- t
	}
	t.run(0)
	for i := 0; i < nt-1; i++ {
		<-p.done
	}
}

// close stops the workers (after the owner is gone).
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake != nil {
		for _, ch := range p.wake {
			close(ch)
		}
		p.wake = nil
	}
}

// runInline runs t for tid in [0, nt) one after another on the caller.
func runInline(nt int, t task) {
	for tid := 0; tid < nt; tid++ {
		t.run(tid)
	}
}

// parTask is Parallel's task: static contiguous chunks.
type parTask struct {
	n, nt int
	f     func(lo, hi int)
}

func (t *parTask) run(tid int) {
	chunk := (t.n + t.nt - 1) / t.nt
	lo := tid * chunk
	hi := min(lo+chunk, t.n)
	if lo < hi {
		t.f(lo, hi)
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
