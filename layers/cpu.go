package layers

import (
	"runtime"
	"sync"

	"github.com/star-attn/star/weights"
)

// CPU is the pure-Go backend.
type CPU struct {
	threads int
	bufs    sync.Pool // *[]float32 row-conversion buffers for 16-bit weights
}

// NewCPU returns a CPU backend with the given thread count (<= 0: all cores).
func NewCPU(threads int) *CPU {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	return &CPU{threads: threads}
}

func (c *CPU) Threads() int { return c.threads }
func (c *CPU) Name() string { return "cpu-go" }

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

// MatMul: out[i, r] = Σ_k x[i, k] · w[r, k]. Work is split over the rows of
// w so that each weight row is read (and, for F16/BF16, widened) once.
func (c *CPU) MatMul(out, x []float32, w *weights.Tensor, n int) {
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
