package layers_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/layerstest"
	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
)

// The CPU backend's tests: the conformance suite (layerstest) run against
// every implementation of the CPU backend this machine can run, the
// pure-Go reference and each SIMD kernel variant (including emu512, the
// 16-lane AVX-512 code lowered to AVX2, so that the AVX-512 kernels' logic
// is tested on AVX2 machines), and the tests of its internals.

type backend struct {
	name string
	new  func(threads int) *layers.CPU
}

// backends are the kernel choices this processor runs (layers.KernelSpecs:
// the pure-Go reference, each SIMD variant as chosen by default, and
// with the options that change its paths: ",exact", ",bf16").
func backends() []backend {
	bs := []backend{{"go", layers.NewCPUReference}}
	for _, spec := range layers.KernelSpecs()[1:] {
		bs = append(bs, backend{spec, func(threads int) *layers.CPU {
			c, err := layers.NewCPUKernels(threads, spec)
			if err != nil {
				panic(err)
			}
			return c
		}})
	}
	return bs
}

func TestBackendNames(t *testing.T) {
	if n := layers.NewCPUReference(1).Name(); n != "cpu-go" {
		t.Fatalf("reference backend is %q", n)
	}
	for _, b := range backends()[1:] {
		variant, _, _ := strings.Cut(b.name, ",")
		if n := b.new(1).Name(); n != "cpu-"+variant {
			t.Fatalf("backend %s is named %q", b.name, n)
		}
		for _, dt := range weights.DTypes() {
			c := b.new(1)
			want := c.Name()
			switch c.ActivationRounding(dt) {
			case layers.RoundInt8:
				// vpdpbusd, but vpmaddubsw where the matrix-vector
				// products are on 256-bit vectors without AVX-VNNI
				m := layers.WithMaddubs(c)
				if m != nil && !layers.HasAVXVNNI() {
					want += "int8"
				} else {
					want += "vnni"
				}
				if m != nil && m.MatMulKernel(dt) != c.Name()+"int8" {
					t.Errorf("backend %s on vpmaddubsw: kernel for %v is %q, want %q", b.name, dt, m.MatMulKernel(dt), c.Name()+"int8")
				}
			case layers.RoundBF16:
				want += "bf16"
			}
			if layers.UsesAMX(c, dt) {
				want += "-amx"
			}
			if k := c.MatMulKernel(dt); k != want {
				t.Errorf("backend %s: kernel for %v is %q, want %q", b.name, dt, k, want)
			}
			if strings.HasSuffix(b.name, ",exact") && c.ActivationRounding(dt) != layers.RoundNone {
				t.Errorf("backend %s rounds activations for %v", b.name, dt)
			}
		}
	}
	t.Logf("NewCPU picks %s (BF16: %s, Q4_K: %s); kernel choices here: %v", layers.NewCPU(1).Name(),
		layers.NewCPU(1).MatMulKernel(weights.BF16), layers.NewCPU(1).MatMulKernel(weights.Q4_K), layers.KernelSpecs())
}

// Bad kernel choices are refused in one line naming the choice.
func TestKernelSpecErrors(t *testing.T) {
	for _, spec := range []string{"go,exact", "avx512,exact,bf16", "avx2,bf16", "avx512,fast", "sse4", "avx2,amx", "emu512,amx,noamx", "emu512,exact,amx", "emu512,amx,fast"} {
		_, err := layers.NewCPUKernels(1, spec)
		if err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("%q: %v", spec, err)
		}
	}
	for _, spec := range []string{"", "auto", "go", "exact"} {
		if _, err := layers.NewCPUKernels(1, spec); err != nil {
			t.Errorf("%q: %v", spec, err)
		}
	}
}

type tuning struct {
	name string
	set  func() (restore func())
}

// kernelTunings are the code paths of a SIMD backend's MatMul worth
// testing separately besides the default: matrix-vector for every n,
// packed GEMM for every n, and GEMM with tiny cache blocks (every edge case
// on small shapes).
func kernelTunings(b backend) []tuning {
	if b.name == "go" {
		return nil
	}
	_, kc, mc, nc := layers.MatMulTuning()
	with := func(name string, gv, kc, mc, nc int) tuning {
		return tuning{name, func() func() { return layers.SetMatMulTuning(gv, kc, mc, nc) }}
	}
	return []tuning{
		with("gemv", 1<<30, kc, mc, nc),
		with("gemm", 0, kc, mc, nc),
		with("gemm-small-blocks", 0, 40, 20, 48)}
}

// TestCPUConformance runs the suite on every CPU backend as tuned, then
// its MatMul check again under each other tuning of the SIMD kernels.
func TestCPUConformance(t *testing.T) {
	for _, b := range backends() {
		newB := func(threads int) layers.Compute { return b.new(threads) }
		layerstest.Run(t, b.name, newB)
		for _, tn := range kernelTunings(b) {
			t.Run(b.name+"/MatMul/"+tn.name, func(t *testing.T) {
				defer tn.set()()
				layerstest.MatMul(t, newB)
			})
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
	w := layerstest.TensorFrom(layerstest.RandSlice(r, rows*cols, 1), weights.F16, rows, cols)
	x := layerstest.RandSlice(r, n*cols, 1)
	want, mag := layerstest.RefMatMul(x, w.Floats(), n, rows, cols)
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

// The SIMD backends compute SwiGLU with their own kernel (checked by the
// suite's SwiGLU), the reference backend with the pure-Go loop.
func TestSwiGLUKernel(t *testing.T) {
	bs := backends()
	if len(bs) == 1 {
		t.Skip("no SIMD SwiGLU here")
	}
	h1, h3 := []float32{1, -2, 3}, []float32{2, 2, 2}
	for _, b := range bs {
		if got, want := b.new(1).SwiGLUKernel(h1, h3), b.name != "go"; got != want {
			t.Errorf("%s: SwiGLUKernel reports %v, want %v", b.name, got, want)
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
	w := layerstest.TensorFrom(layerstest.RandSlice(r, 64*96, 1), weights.BF16, 64, 96)
	x := layerstest.RandSlice(r, 40*96, 1)
	out := make([]float32, 40*64)
	s := layers.AttnShape{H: 8, HKV: 2, D: 16}
	q, k, v := layerstest.RandSlice(r, 9*8*16, 1), layerstest.RandSlice(r, 70*2*16, 1), layerstest.RandSlice(r, 70*2*16, 1)
	o, lse := make([]float32, len(q)), make([]float32, 9*8)
	f := func(lo, hi int) {}
	wq := layerstest.TensorFrom(layerstest.RandSlice(r, 64*256, 1), weights.Q4_K, 64, 256)
	xq := layerstest.RandSlice(r, 40*256, 1)
	for _, b := range bs {
		c := b.new(2)
		for _, n := range []int{1, 40} {
			c.MatMul(out, x, &w, n)
			if a := testing.AllocsPerRun(20, func() { c.MatMul(out, x, &w, n) }); a != 0 {
				t.Errorf("%s: MatMul n=%d allocates %v times per call", b.name, n, a)
			}
			c.MatMul(out, xq, &wq, n)
			if a := testing.AllocsPerRun(20, func() { c.MatMul(out, xq, &wq, n) }); a != 0 {
				t.Errorf("%s: MatMul of Q4_K weights n=%d (%v) allocates %v times per call", b.name, n, c.ActivationRounding(weights.Q4_K), a)
			}
		}
		layers.Attention(c, o, lse, q, k, v, 9, 70, s, true)
		if a := testing.AllocsPerRun(20, func() { layers.Attention(c, o, lse, q, k, v, 9, 70, s, true) }); a != 0 {
			t.Errorf("%s: Attention allocates %v times per call", b.name, a)
		}
		if a := testing.AllocsPerRun(20, func() { c.Parallel(100, f) }); a != 0 {
			t.Errorf("%s: Parallel allocates %v times per call", b.name, a)
		}
	}
}

// The GEMM on AMX tiles rounds x to bfloat16 and nothing else: with x
// already bfloat16 every product of BF16 weights is exact, and the
// outputs agree with float64 within float32 sums (rows of any length:
// padded to the tiles' 32). Native where the processor has AMX, emulated
// everywhere.
func TestAMXExactProducts(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	specs := 0
	for _, spec := range layers.KernelSpecs()[1:] {
		c, err := layers.NewCPUKernels(2, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !layers.UsesAMX(c, weights.BF16) {
			continue
		}
		specs++
		for _, sh := range []struct{ n, rows, cols int }{{40, 70, 1024}, {33, 33, 600}, {64, 31, 70}, {9, 100, 2048}} {
			w := layerstest.TensorFrom(layerstest.RandSlice(r, sh.rows*sh.cols, 1), weights.BF16, sh.rows, sh.cols)
			x := layerstest.RandSlice(r, sh.n*sh.cols, 1)
			for i := range x { // exactly bfloat16
				x[i] = math.Float32frombits(math.Float32bits(x[i]) &^ 0xffff)
			}
			want, mag := layerstest.RefMatMul(x, w.Floats(), sh.n, sh.rows, sh.cols)
			got := make([]float32, sh.n*sh.rows)
			c.MatMul(got, x, &w, sh.n)
			worst, at := 0.0, 0
			for i := range want {
				d := math.Abs(float64(got[i])-want[i]) / (1e-5*mag[i] + 1e-6)
				if !(d <= worst) {
					worst, at = d, i
				}
			}
			if worst > 1 {
				t.Errorf("%s %dx%d n=%d: out[%d] = %g, want %g: %.1f times the float32 bound",
					spec, sh.rows, sh.cols, sh.n, at, got[at], want[at], worst)
			}
		}
	}
	if specs == 0 {
		t.Fatalf("no kernel choice runs the AMX GEMM (choices %v): emu512,amx should", layers.KernelSpecs())
	}
}

// avx2's integer matrix-vector products (vpmaddubsw, and AVX-VNNI's
// vpdpbusd where the processor has it: both are run where it does)
// compute the same integer sums as emu512's exact vpdpbusd and the same
// float arithmetic around them: their outputs agree bit for bit, on
// random weights and on
// the extremes where a plain vpmaddubsw of Q8_0's unsigned quants would
// saturate (quants ±127, activations of the same signs: byte pairs summing
// to 2·255·127), for every quantized dtype, rows of an odd block count
// (Q8_0 and Q4_0's half unit) and every matrix-vector row count.
func TestAVX2Int8MatchesEmu512(t *testing.T) {
	av, err := layers.NewCPUKernels(2, "avx2")
	if err != nil {
		t.Skipf("no AVX2 here: %v", err)
	}
	em, err := layers.NewCPUKernels(2, "emu512")
	if err != nil {
		t.Fatal(err)
	}
	paths := []*layers.CPU{layers.WithMaddubs(av)} // vpmaddubsw
	if layers.HasAVXVNNI() {
		paths = append(paths, av) // AVX-VNNI's vpdpbusd
	} else {
		t.Logf("no AVX-VNNI here: its path is not run")
	}
	for _, a2 := range paths {
		testInt8MatchesEmu512(t, a2, em)
	}
}

func testInt8MatchesEmu512(t *testing.T, a2, em *layers.CPU) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_K, weights.Q5_K, weights.Q6_K} {
		if k := a2.MatMulKernel(dt); a2.ActivationRounding(dt) != layers.RoundInt8 || (k != "cpu-avx2int8" && k != "cpu-avx2vnni") {
			t.Fatalf("avx2 on %v: %v, kernel %s; want int8 activations on cpu-avx2int8 or cpu-avx2vnni", dt, a2.ActivationRounding(dt), k)
		}
		shapes := []struct{ rows, cols int }{{37, 512}, {8, 2048}}
		if dt.BlockElems() == 32 {
			shapes = append(shapes, struct{ rows, cols int }{13, 96}) // 3 blocks: a half unit
		}
		for _, sh := range shapes {
			for _, extreme := range []bool{false, true} {
				wf := layerstest.RandSlice(r, sh.rows*sh.cols, 1)
				x := layerstest.RandSlice(r, 8*sh.cols, 1)
				if extreme {
					for i := range wf {
						wf[i] = float32(1 - 2*(i/3%2)) // ±1: every block's quants at ±max
					}
					for i := range x {
						x[i] = wf[i%sh.cols] * float32(1+i/sh.cols) // the same signs: no product cancels
					}
				}
				w := layerstest.TensorFrom(wf, dt, sh.rows, sh.cols)
				wr := make([]float32, sh.rows*sh.cols)
				quant.RowsTo(wr, &w, 0, sh.rows)
				for n := 1; n <= 8; n++ {
					got, want := make([]float32, n*sh.rows), make([]float32, n*sh.rows)
					a2.MatMul(got, x, &w, n)
					em.MatMul(want, x, &w, n)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s: %v %dx%d n=%d extreme=%v: out[%d] = %g, emu512 %g (diff %g)",
								a2.MatMulKernel(dt), dt, sh.rows, sh.cols, n, extreme, i, got[i], want[i], got[i]-want[i])
						}
					}
					if extreme { // and right: against float64 within the int8 bound
						ref, mag := layerstest.RefMatMul(x[:n*sh.cols], wr, n, sh.rows, sh.cols)
						bound := layerstest.MatMulBound(layers.RoundInt8, x[:n*sh.cols], wr, mag, n, sh.rows, sh.cols)
						for i := range ref {
							if d := math.Abs(float64(got[i]) - ref[i]); !(d <= bound[i]) {
								t.Fatalf("%s: %v %dx%d n=%d extreme: out[%d] = %g, want %g (diff %g, bound %g)",
									a2.MatMulKernel(dt), dt, sh.rows, sh.cols, n, i, got[i], ref[i], d, bound[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestKQuantScalesFourRowsAlike: the K-quants' scales and mins of four
// rows are unpacked together in vector registers (k_scales4) and of a
// lone row in scalar ones: the same values, so a row's product is the
// same, bit for bit, whether it is computed among four rows or alone.
// The weights vary in magnitude per sub-block, so that the 6-bit scales
// and mins take values across their range.
func TestKQuantScalesFourRowsAlike(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	const rows, cols = 9, 512 // rows 0-7 in fours, row 8 alone
	ran := 0
	for _, b := range backends() {
		c := b.new(1)
		for _, dt := range []weights.DType{weights.Q4_K, weights.Q5_K} {
			if c.ActivationRounding(dt) != layers.RoundInt8 {
				continue
			}
			wf := layerstest.RandSlice(r, rows*cols, 1)
			for i := range wf {
				wf[i] *= float32(1+(i/32)%13) / 4
				if (i/32)%3 == 0 {
					wf[i] += 0.5 // a sub-block of positive weights: min > 0
				}
			}
			w := layerstest.TensorFrom(wf, dt, rows, cols)
			rowb := len(w.Data) / rows
			ran++
			for n := 1; n <= 2; n++ {
				x := layerstest.RandSlice(r, n*cols, 1)
				all := make([]float32, n*rows)
				c.MatMul(all, x, &w, n)
				for i := 0; i < rows; i++ {
					one := weights.Tensor{Name: "row", DType: dt, Shape: []int{1, cols}, Data: w.Data[i*rowb : (i+1)*rowb]}
					got := make([]float32, n)
					c.MatMul(got, x, &one, n)
					for tk := 0; tk < n; tk++ {
						if a, g := all[tk*rows+i], got[tk]; math.Float32bits(a) != math.Float32bits(g) {
							t.Fatalf("%s %v n=%d: row %d token %d among %d rows %g, alone %g (diff %g)", b.name, dt, n, i, tk, rows, a, g, a-g)
						}
					}
				}
			}
		}
	}
	if ran == 0 {
		t.Skip("no kernel here rounds activations to int8 (no AVX2): nothing unpacks four rows' scales")
	}
	t.Logf("%d kernel and dtype pairs", ran)
}
