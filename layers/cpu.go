package layers

import (
	"os"
	"runtime"
	"sync"

	"github.com/star-attn/star/weights"
)

// CPU is the CPU backend. It runs SIMD kernels (cgo, kern_amd64.c) when the
// processor has them (AVX-512F, or AVX2+FMA+F16C) and the pure-Go kernels
// below otherwise; Name says which. Work is spread over a persistent pool
// of Threads() goroutines.
type CPU struct {
	threads int
	bufs    sync.Pool // *[]float32 row-conversion buffers for 16-bit weights (pure Go)
	k       *kernels  // nil: pure-Go kernels
	pool    *workerPool
	res     *resources // the SIMD kernels' tasks and scratch; guarded by pool.mu
	par     parTask    // Parallel's task; guarded by pool.mu
}

// NewCPU returns a CPU backend with the given thread count (<= 0: all
// cores), on the best kernels this processor supports. The environment
// variable STAR_KERNELS overrides the choice: "go" forces the pure-Go
// reference kernels (for Attention and SwiGLU on the backend too), "avx2"
// or "avx512" a SIMD variant (ignored if the processor lacks it).
func NewCPU(threads int) *CPU { return newCPU(threads, defaultKernels()) }

// defaultKernels is NewCPU's choice of kernels (nil: pure Go).
func defaultKernels() *kernels {
	switch v := os.Getenv("STAR_KERNELS"); v {
	case "go":
		return nil
	case "", "auto":
		return bestKernels()
	default:
		if k := newKernels(v); k != nil {
			return k
		}
		return bestKernels()
	}
}

// NewCPUReference returns a CPU backend on the pure-Go reference kernels.
func NewCPUReference(threads int) *CPU { return newCPU(threads, nil) }

func bestKernels() *kernels {
	if v := kernelVariants(); len(v) > 0 {
		return newKernels(v[0])
	}
	return nil
}

func newCPU(threads int, k *kernels) *CPU {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	c := &CPU{threads: threads, k: k, pool: newWorkerPool(threads), res: newResources(threads)}
	runtime.AddCleanup(c, func(p *workerPool) { p.close() }, c.pool)
	return c
}

func (c *CPU) Threads() int { return c.threads }

// Name is "cpu-go" on the pure-Go kernels, else "cpu-" and the SIMD
// variant ("cpu-avx2", "cpu-avx512").
func (c *CPU) Name() string {
	if c.k == nil {
		return "cpu-go"
	}
	return "cpu-" + c.k.name
}

func (c *CPU) Parallel(n int, f func(lo, hi int)) {
	if n <= 0 {
		return
	}
	t := c.threads
	if t > n {
		t = n
	}
	if t <= 1 {
		f(0, n)
		return
	}
	if c.pool.mu.TryLock() {
		c.par.n, c.par.nt, c.par.f = n, t, f
		c.par.next.Store(0)
		c.pool.run(t, &c.par)
		c.par.f = nil
		c.pool.mu.Unlock()
		return
	}
	// The pool is busy (a nested or concurrent call): plain goroutines.
	var wg sync.WaitGroup
	chunk := (n + t - 1) / t
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			f(lo, hi)
		}(lo, hi)
	}
	wg.Wait()
}

// MatMul: out[i, r] = Σ_k x[i, k] · w[r, k].
func (c *CPU) MatMul(out, x []float32, w *weights.Tensor, n int) {
	if n <= 0 {
		return
	}
	if c.k == nil || w.Rows() == 0 || w.Cols() == 0 {
		c.matMulGo(out, x, w, n)
		return
	}
	if c.pool.mu.TryLock() {
		defer c.pool.mu.Unlock()
		c.k.matMul(c.res, c.pool, c.threads, out, x, w, n)
		return
	}
	// The pool is busy (a nested or concurrent call): run on this goroutine.
	c.k.matMul(newResources(1), nil, 1, out, x, w, n)
}

// AttentionKernel is Attention on the SIMD kernels; false if the backend
// runs the pure-Go kernels (Attention then computes it).
func (c *CPU) AttentionKernel(out, lse, q []float32, k, v KVSpan, nq, nk int, s AttnShape, causal bool) bool {
	if c.k == nil {
		return false
	}
	if nq <= 0 {
		return true
	}
	if c.pool.mu.TryLock() {
		defer c.pool.mu.Unlock()
		c.k.attention(c.res, c.pool, c.threads, out, lse, q, k, v, nq, nk, s, causal)
		return true
	}
	c.k.attention(newResources(1), nil, 1, out, lse, q, k, v, nq, nk, s, causal)
	return true
}

// SwiGLUKernel is SwiGLU on the SIMD kernels; false if the backend runs
// the pure-Go kernels (SwiGLU then computes it).
func (c *CPU) SwiGLUKernel(h1, h3 []float32) bool {
	if c.k == nil {
		return false
	}
	if len(h1) > 0 {
		c.k.swiGLU(h1, h3)
	}
	return true
}

// matMulGo is MatMul on the pure-Go kernels. Work is split over the rows of
// w so that each weight row is read (and, for F16/BF16, widened) once.
func (c *CPU) matMulGo(out, x []float32, w *weights.Tensor, n int) {
	rows, cols := w.Rows(), w.Cols()
	const rowTile = 16
	tiles := (rows + rowTile - 1) / rowTile
	c.Parallel(tiles, func(t0, t1 int) {
		var buf []float32
		if w.DType != weights.F32 {
			p, _ := c.bufs.Get().(*[]float32)
			if p == nil || len(*p) < rowTile*cols {
				b := make([]float32, rowTile*cols)
				p = &b
			}
			defer c.bufs.Put(p)
			buf = *p
		}
		for r0 := t0 * rowTile; r0 < min(t1*rowTile, rows); r0 += rowTile {
			nr := min(rowTile, rows-r0)
			var wt []float32 // [nr, cols]
			if w.DType == weights.F32 {
				wt = w.F32()[r0*cols : (r0+nr)*cols]
			} else {
				wt = buf[:nr*cols]
				w.RowsTo(wt, r0, nr)
			}
			for i := 0; i < n; i++ {
				xi := x[i*cols : (i+1)*cols]
				oi := out[i*rows+r0 : i*rows+r0+nr]
				for r := 0; r < nr; r++ {
					oi[r] = Dot(xi, wt[r*cols:(r+1)*cols])
				}
			}
		}
	})
}

// Dot is Σ a[i]·b[i] with four independent accumulators.
func Dot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
