package layers

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
)

// CPU is the CPU backend. It runs SIMD kernels (cgo, kern_amd64.c) when the
// processor has them (AVX-512F, or AVX2+FMA+F16C) and the pure-Go kernels
// below otherwise; Name says which. Work is spread over a persistent pool
// of Threads() goroutines.
type CPU struct {
	threads int
	bufs    sync.Pool // *[]float32 row-conversion buffers for 16-bit and quantized weights (pure Go)
	k       *kernels  // nil: pure-Go kernels
	pool    *workerPool
	res     *resources // the SIMD kernels' tasks and scratch; guarded by pool.mu
	par     parTask    // Parallel's task; guarded by pool.mu
}

// NewCPU returns a CPU backend with the given thread count (<= 0: all
// cores), on the best kernels this processor supports. The environment
// variable STAR_KERNELS overrides the choice (see NewCPUKernels); a
// choice the processor cannot run is ignored.
func NewCPU(threads int) *CPU {
	k, err := parseKernels(os.Getenv("STAR_KERNELS"))
	if err != nil {
		k, _ = parseKernels("")
	}
	return newCPU(threads, k)
}

// NewCPUKernels returns a CPU backend on the kernels spec names, as
// STAR_KERNELS does: "" or "auto" the best this processor runs; "go" the
// pure-Go reference kernels (for Attention and SwiGLU on the backend
// too); a SIMD variant ("avx512", "avx2", "emu512"); either of the last
// two forms followed by options after commas (or the options alone):
// "exact" for products in exact float32 arithmetic on every weight dtype,
// without the paths that round activations (see Rounding); "bf16" for
// bfloat16 dot products on BF16 weights where the processor has them but
// they are not the default (Intel: vdpbf16ps runs at half the rate of its
// FMAs there); "amx" and "noamx" for the GEMM of BF16 weights on AMX
// tiles or not (on by default where the processor has AMX-BF16 and the OS
// grants the tiles, and with it the bfloat16 products; "emu512,amx"
// emulates them, for tests). A choice this processor cannot run is an
// error.
func NewCPUKernels(threads int, spec string) (*CPU, error) {
	k, err := parseKernels(spec)
	if err != nil {
		return nil, err
	}
	return newCPU(threads, k), nil
}

// KernelSpecs lists the kernel choices this processor runs, for tests
// and benchmarks that try each: "go", then each SIMD variant as chosen by
// default, with ",exact" where that differs, with ",bf16" where that
// differs, and with ",noamx" (and ",noamx,bf16") or ",amx" where AMX
// tiles are possible.
func KernelSpecs() []string {
	out := []string{"go"}
	for _, v := range kernelVariants() {
		out = append(out, v)
		if k := newKernels(v); k != nil && k.rounds() {
			out = append(out, v+",exact")
		}
		if k := newKernels(v); k != nil && !k.bf16Default() && k.withBF16() != nil {
			out = append(out, v+",bf16")
		}
		if k := newKernels(v); k != nil && k.amxDefault() {
			out = append(out, v+",noamx")
			if n := k.withAMX(false); !n.bf16Default() && n.withBF16() != nil {
				out = append(out, v+",noamx,bf16")
			}
		} else if k != nil && k.withAMX(true) != nil {
			out = append(out, v+",amx")
		}
	}
	return out
}

// parseKernels reads a kernel spec (nil: pure Go).
func parseKernels(spec string) (*kernels, error) {
	parts := strings.Split(spec, ",")
	variant, opts := parts[0], parts[1:]
	if variant == "exact" || variant == "bf16" {
		variant, opts = "", parts
	}
	var k *kernels
	switch variant {
	case "go":
		if len(opts) > 0 {
			return nil, fmt.Errorf("kernels %q: the pure-Go kernels take no options (they are exact)", spec)
		}
		return nil, nil
	case "", "auto":
		if k = bestKernels(); k == nil {
			if len(opts) > 0 {
				return nil, fmt.Errorf("kernels %q: this processor runs only the pure-Go kernels, which take no options", spec)
			}
			return nil, nil
		}
	default:
		if k = newKernels(variant); k == nil {
			return nil, fmt.Errorf("kernels %q: this processor does not run %q (it runs: go %s)", spec, variant, strings.Join(kernelVariants(), " "))
		}
	}
	exact, bf16, amx, noamx := false, false, false, false
	for _, o := range opts {
		switch o {
		case "exact":
			exact = true
		case "bf16":
			bf16 = true
		case "amx":
			amx = true
		case "noamx":
			noamx = true
		default:
			return nil, fmt.Errorf("kernels %q: unknown option %q (options: exact, bf16, amx, noamx)", spec, o)
		}
	}
	switch {
	case exact && bf16:
		return nil, fmt.Errorf("kernels %q: exact and bf16 exclude each other", spec)
	case exact && amx:
		return nil, fmt.Errorf("kernels %q: exact and amx exclude each other (AMX tiles round x to bfloat16)", spec)
	case amx && noamx:
		return nil, fmt.Errorf("kernels %q: amx and noamx exclude each other", spec)
	}
	if amx || noamx {
		if k = k.withAMX(amx); k == nil {
			return nil, fmt.Errorf("kernels %q: variant %s has no AMX tiles on this processor (or the OS does not grant them)", spec, variant)
		}
	}
	switch {
	case exact:
		k = k.exactOnly()
	case bf16:
		if k = k.withBF16(); k == nil {
			return nil, fmt.Errorf("kernels %q: variant %s has no bfloat16 dot products on this processor", spec, variant)
		}
	}
	return k, nil
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

// ActivationRounding is how MatMul rounds activations for weights of
// dtype dt (see Rounding): RoundNone on the pure-Go kernels and with
// ",exact".
func (c *CPU) ActivationRounding(dt weights.DType) Rounding {
	if c.k == nil {
		return RoundNone
	}
	return c.k.rounding(dt)
}

// MatMulKernel names the kernel MatMul runs for weights of dtype dt:
// Name() for exact float32 products, with the instruction set of the
// rounded ones ("cpu-avx512vnni" for int8 dot products,
// "cpu-avx512bf16" for bfloat16 ones; emulated on emu512:
// "cpu-emu512vnni", "cpu-emu512bf16"; "cpu-avx2int8" for AVX2's
// vpmaddubsw, used by the matrix-vector products (decode) while the GEMM
// (prefill) stays on the float kernels), and "-amx" where the GEMM
// (prefill) runs on AMX tiles ("cpu-avx512bf16-amx": the GEMM on tiles,
// decode on vdpbf16ps).
func (c *CPU) MatMulKernel(dt weights.DType) string {
	switch c.ActivationRounding(dt) {
	case RoundInt8:
		return c.Name() + c.k.int8Suffix()
	case RoundBF16:
		if c.k.usesAMX(dt) {
			return c.Name() + "bf16-amx"
		}
		return c.Name() + "bf16"
	}
	return c.Name()
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
// w so that each weight row is read (and, for F16/BF16, widened, for the
// quantized types dequantized by package quant) once: the product is
// exact float32 arithmetic on the dequantized weights.
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
				quant.RowsTo(wt, w, r0, nr)
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
