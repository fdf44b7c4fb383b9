package layers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/star-attn/star/weights"
)

// Conformance tests, written once and run against every implementation of
// the CPU backend this machine can run: the pure-Go reference and each SIMD
// kernel variant (including emu512, the 16-lane AVX-512 code lowered to
// AVX2, so that the AVX-512 kernels' logic is tested on AVX2 machines).

type backend struct {
	name string
	new  func(threads int) *CPU
}

func backends() []backend {
	bs := []backend{{"go", NewCPUReference}}
	for _, v := range kernelVariants() {
		bs = append(bs, backend{v, func(threads int) *CPU { return newCPU(threads, newKernels(v)) }})
	}
	return bs
}

func TestBackendNames(t *testing.T) {
	if n := NewCPUReference(1).Name(); n != "cpu-go" {
		t.Fatalf("reference backend is %q", n)
	}
	for _, b := range backends()[1:] {
		if n := b.new(1).Name(); n != "cpu-"+b.name {
			t.Fatalf("backend %s is named %q", b.name, n)
		}
	}
	t.Logf("NewCPU picks %s; variants here: %v", NewCPU(1).Name(), kernelVariants())
}

// refMatMul is out = x·wᵀ in float64 over the weights as stored (rounded
// to their dtype), and the magnitude Σ|x||w| of each output.
func refMatMul(x, w []float32, n, rows, cols int) (want, mag []float64) {
	want, mag = make([]float64, n*rows), make([]float64, n*rows)
	for i := 0; i < n; i++ {
		for r := 0; r < rows; r++ {
			var s, a float64
			for k := 0; k < cols; k++ {
				p := float64(x[i*cols+k]) * float64(w[r*cols+k])
				s += p
				a += math.Abs(p)
			}
			want[i*rows+r], mag[i*rows+r] = s, a
		}
	}
	return want, mag
}

type tuning struct {
	name string
	set  func() (restore func())
}

// kernelTunings are the code paths of a backend's MatMul worth testing
// separately: as tuned, matrix-vector for every n, packed GEMM for every n,
// and GEMM with tiny cache blocks (every edge case on small shapes).
func kernelTunings(b backend) []tuning {
	def := tuning{"default", func() func() { return func() {} }}
	if b.name == "go" {
		return []tuning{def}
	}
	with := func(name string, gv, kc, mc, nc int) tuning {
		return tuning{name, func() func() {
			g, k, m, n := gemvMaxN, gemmKC, gemmMC, gemmNC
			gemvMaxN, gemmKC, gemmMC, gemmNC = gv, kc, mc, nc
			return func() { gemvMaxN, gemmKC, gemmMC, gemmNC = g, k, m, n }
		}}
	}
	return []tuning{def,
		with("gemv", 1<<30, gemmKC, gemmMC, gemmNC),
		with("gemm", 0, gemmKC, gemmMC, gemmNC),
		with("gemm-small-blocks", 0, 40, 20, 48)}
}

// MatMul tolerance: float32 accumulation, |err| <= 1e-5·Σ|x·w| + 1e-6
// against float64 over the same (dtype-rounded) weights.
func TestMatMulConformance(t *testing.T) {
	shapes := []struct{ rows, cols int }{
		{1, 1}, {5, 3}, {17, 33}, {37, 45}, {16, 64}, {130, 257}, {300, 600},
	}
	ns := []int{1, 2, 3, 4, 5, 7, 16, 64, 513}
	if testing.Short() {
		ns = []int{1, 2, 7, 64}
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, sh := range shapes {
		wf := randSlice(r, sh.rows*sh.cols, 1)
		for _, dt := range []weights.DType{weights.F32, weights.F16, weights.BF16} {
			w := tensorFrom(wf, dt, sh.rows, sh.cols)
			wr := w.Floats()
			for _, n := range ns {
				if n*sh.rows*sh.cols > 20e6 {
					continue
				}
				x := randSlice(r, n*sh.cols, 1)
				want, mag := refMatMul(x, wr, n, sh.rows, sh.cols)
				for _, b := range backends() {
					for _, tn := range kernelTunings(b) {
						restore := tn.set()
						for threads := 1; threads <= 3; threads++ {
							c := b.new(threads)
							got := make([]float32, n*sh.rows+1)
							got[n*sh.rows] = 12345 // must stay untouched
							c.MatMul(got[:n*sh.rows], x, &w, n)
							if got[n*sh.rows] != 12345 {
								t.Fatalf("%s/%s %v %dx%d n=%d: wrote past the output", b.name, tn.name, dt, sh.rows, sh.cols, n)
							}
							for i := range want {
								if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*mag[i]+1e-6) {
									t.Fatalf("%s/%s threads %d %v %dx%d n=%d: out[%d] = %g, want %g (diff %g, magnitude %g)",
										b.name, tn.name, threads, dt, sh.rows, sh.cols, n, i, got[i], want[i], d, mag[i])
								}
							}
						}
						restore()
					}
				}
			}
		}
	}
}

// A backend may be used from several goroutines and from inside Parallel.
func TestMatMulConcurrentAndNested(t *testing.T) {
	const rows, cols, n = 70, 90, 9
	r := rand.New(rand.NewPCG(13, 14))
	wf := randSlice(r, rows*cols, 1)
	w := tensorFrom(wf, weights.BF16, rows, cols)
	x := randSlice(r, n*cols, 1)
	want, mag := refMatMul(x, w.Floats(), n, rows, cols)
	check := func(got []float32) error {
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*mag[i]+1e-6) {
				return fmt.Errorf("out[%d] = %g, want %g", i, got[i], want[i])
			}
		}
		return nil
	}
	for _, b := range backends() {
		c := b.new(2)
		errs := make(chan error, 8)
		for g := 0; g < 4; g++ {
			go func() {
				got := make([]float32, n*rows)
				for it := 0; it < 20; it++ {
					c.MatMul(got, x, &w, n)
					if err := check(got); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for g := 0; g < 4; g++ {
			if err := <-errs; err != nil {
				t.Fatalf("%s concurrent: %v", b.name, err)
			}
		}
		outs := make([][]float32, 4)
		c.Parallel(4, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				outs[i] = make([]float32, n*rows)
				c.MatMul(outs[i], x, &w, n)
			}
		})
		for i := range outs {
			if err := check(outs[i]); err != nil {
				t.Fatalf("%s nested in Parallel: %v", b.name, err)
			}
		}
	}
}

func TestParallelCovers(t *testing.T) {
	for _, b := range backends() {
		for threads := 1; threads <= 3; threads++ {
			c := b.new(threads)
			for _, n := range []int{0, 1, 2, 3, 7, 100} {
				hits := make([]int, n)
				c.Parallel(n, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						hits[i]++
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("%s threads %d n %d: index %d covered %d times", b.name, threads, n, i, h)
					}
				}
			}
		}
	}
}

// Attention against the float64 textbook reference (naiveAttention), for
// every backend: causal and not, GQA groups 1/4/8, head sizes 8/64/128, key
// counts from 0 to several key tiles, query counts from 1 to several query
// blocks, including causal queries that see no key.
func TestAttentionConformance(t *testing.T) {
	type cs struct{ nq, nk int }
	sizes := []cs{{1, 0}, {1, 1}, {1, 63}, {1, 64}, {1, 65}, {3, 3}, {5, 3}, {7, 130}, {30, 30}, {70, 200}, {33, 33}}
	r := rand.New(rand.NewPCG(15, 16))
	for _, D := range []int{8, 64, 128} {
		for _, G := range []int{1, 4, 8} {
			HKV := 2
			if G == 8 {
				HKV = 1
			}
			s := AttnShape{H: G * HKV, HKV: HKV, D: D}
			for _, sz := range sizes {
				if D == 128 && sz.nq*sz.nk > 2000 {
					continue
				}
				for _, causal := range []bool{false, true} {
					q := randSlice(r, sz.nq*s.H*D, 2)
					k := randSlice(r, sz.nk*s.HKV*D, 2)
					v := randSlice(r, sz.nk*s.HKV*D, 1)
					want, wantL := make([]float32, len(q)), make([]float32, sz.nq*s.H)
					naiveAttention(want, wantL, q, k, v, sz.nq, sz.nk, s, causal)
					for _, b := range backends() {
						for _, threads := range []int{1, 3} {
							got, gotL := make([]float32, len(q)), make([]float32, sz.nq*s.H)
							for i := range got {
								got[i] = float32(math.NaN()) // every output must be written
							}
							Attention(b.new(threads), got, gotL, q, k, v, sz.nq, sz.nk, s, causal)
							if d := maxDiff(got, want); !(d <= tol) {
								t.Fatalf("%s threads %d D%d G%d nq%d nk%d causal %v: output max diff %g",
									b.name, threads, D, G, sz.nq, sz.nk, causal, d)
							}
							if d := maxDiff(gotL, wantL); !(d <= tol) {
								t.Fatalf("%s threads %d D%d G%d nq%d nk%d causal %v: lse max diff %g",
									b.name, threads, D, G, sz.nq, sz.nk, causal, d)
							}
						}
					}
				}
			}
		}
	}
}

// With fewer OS threads than workers, woken workers often start after the
// caller has done all the work; the pool then cancels them. Results must
// not change, and nothing may be left running on the task.
func TestPoolWithLateWorkers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rows, cols, n = 45, 70, 20
	r := rand.New(rand.NewPCG(17, 18))
	w := tensorFrom(randSlice(r, rows*cols, 1), weights.F16, rows, cols)
	x := randSlice(r, n*cols, 1)
	want, mag := refMatMul(x, w.Floats(), n, rows, cols)
	for _, b := range backends() {
		c := b.new(4)
		got := make([]float32, n*rows)
		for it := 0; it < 200; it++ {
			var sum atomic.Int64
			c.Parallel(1000, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					sum.Add(int64(i))
				}
			})
			if s := sum.Load(); s != 999*1000/2 {
				t.Fatalf("%s: Parallel sum %d", b.name, s)
			}
			clear(got)
			n := 1 + it%n
			c.MatMul(got, x, &w, n)
			for i := 0; i < n*rows; i++ {
				if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*mag[i]+1e-6) {
					t.Fatalf("%s n=%d: out[%d] = %g, want %g", b.name, n, i, got[i], want[i])
				}
			}
		}
	}
}

func TestSwiGLUKernel(t *testing.T) {
	if swiGLUKernel == nil {
		t.Skip("no SIMD SwiGLU here")
	}
	r := rand.New(rand.NewPCG(19, 20))
	for _, n := range []int{1, 7, 8, 33, 1000} {
		h1, h3 := randSlice(r, n, 30), randSlice(r, n, 2)
		h1[0] = -100 // exp overflow side
		if n > 1 {
			h1[1] = 100
		}
		got := append([]float32(nil), h1...)
		swiGLUKernel(got, h3)
		for i := range h1 {
			g := float64(h1[i])
			want := g / (1 + math.Exp(-g)) * float64(h3[i])
			if d := math.Abs(float64(got[i]) - want); !(d <= 1e-6*math.Abs(want)+1e-30) {
				t.Fatalf("n %d: SwiGLU(%g, %g) = %g, want %g", n, h1[i], h3[i], got[i], want)
			}
		}
	}
}

// The SIMD backend allocates nothing per call once warm: tasks and
// scratch are reused.
func TestSIMDNoAllocs(t *testing.T) {
	bs := backends()[1:]
	if len(bs) == 0 {
		t.Skip("no SIMD kernels here")
	}
	r := rand.New(rand.NewPCG(21, 22))
	w := tensorFrom(randSlice(r, 64*96, 1), weights.BF16, 64, 96)
	x := randSlice(r, 40*96, 1)
	out := make([]float32, 40*64)
	s := AttnShape{H: 8, HKV: 2, D: 16}
	q, k, v := randSlice(r, 9*8*16, 1), randSlice(r, 70*2*16, 1), randSlice(r, 70*2*16, 1)
	o, lse := make([]float32, len(q)), make([]float32, 9*8)
	f := func(lo, hi int) {}
	for _, b := range bs {
		c := b.new(2)
		for _, n := range []int{1, 40} {
			c.MatMul(out, x, &w, n)
			if a := testing.AllocsPerRun(20, func() { c.MatMul(out, x, &w, n) }); a != 0 {
				t.Errorf("%s: MatMul n=%d allocates %v times per call", b.name, n, a)
			}
		}
		Attention(c, o, lse, q, k, v, 9, 70, s, true)
		if a := testing.AllocsPerRun(20, func() { Attention(c, o, lse, q, k, v, 9, 70, s, true) }); a != 0 {
			t.Errorf("%s: Attention allocates %v times per call", b.name, a)
		}
		if a := testing.AllocsPerRun(20, func() { c.Parallel(100, f) }); a != 0 {
			t.Errorf("%s: Parallel allocates %v times per call", b.name, a)
		}
	}
}
