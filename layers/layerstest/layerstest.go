// Package layerstest is the conformance suite of layers.Compute backends:
// the checks that every backend (the CPU backend's pure-Go reference and
// SIMD variants today, a device backend later) must pass, written against
// the layers.Compute interface and its optional kernels
// (layers.AttentionKernel, layers.SwiGLUKernel) and checked against
// float64 references. A backend's tests call Run; the references and
// helpers are exported for tests of their own.
package layerstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// NewBackend returns a backend under test with the given thread count.
type NewBackend func(threads int) layers.Compute

// Run runs every check of the suite, as subtests of t named name/<check>,
// on backends that newBackend makes (several, with 1 to 3 threads).
func Run(t *testing.T, name string, newBackend NewBackend) {
	t.Run(name, func(t *testing.T) {
		t.Run("MatMul", func(t *testing.T) { MatMul(t, newBackend) })
		t.Run("MatMulConcurrentAndNested", func(t *testing.T) { MatMulConcurrentAndNested(t, newBackend) })
		t.Run("Parallel", func(t *testing.T) { Parallel(t, newBackend) })
		t.Run("Attention", func(t *testing.T) { Attention(t, newBackend) })
		t.Run("SwiGLU", func(t *testing.T) { SwiGLU(t, newBackend) })
	})
}

// Tol is the absolute tolerance of attention outputs and lse against the
// float64 reference (NaiveAttention).
const Tol = 1e-5

// MatMul checks MatMul against a float64 reference over the weights as
// stored (rounded to their dtype; quantized types, made by
// weightstest.Quantize, dequantized by layers/quant), for every dtype and
// shapes that cover matrix-vector and matrix-matrix paths (n = 1 to 513
// rows of x, edges of every tile size, rows of one to several blocks),
// within the bound of the backend's Rounding for the dtype (MatMulBound),
// and nothing written past the output. -short runs fewer n.
func MatMul(t *testing.T, newBackend NewBackend) {
	plain := []struct{ rows, cols int }{
		{1, 1}, {5, 3}, {17, 33}, {37, 45}, {16, 64}, {130, 257}, {300, 600},
	}
	blocks32 := []struct{ rows, cols int }{ // Q8_0, Q4_0: rows of 1 to 19 blocks
		{1, 32}, {5, 96}, {17, 64}, {37, 288}, {130, 256}, {70, 608},
	}
	blocks256 := []struct{ rows, cols int }{ // K-quants: rows of 1 to 4 super-blocks
		{1, 256}, {5, 256}, {17, 512}, {37, 768}, {130, 256}, {70, 1024},
	}
	ns := []int{1, 2, 3, 4, 5, 7, 16, 64, 513}
	if testing.Short() {
		ns = []int{1, 2, 7, 64}
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, dt := range weights.DTypes() {
		shapes := plain
		switch dt.BlockElems() {
		case 32:
			shapes = blocks32
		case 256:
			shapes = blocks256
		}
		for _, sh := range shapes {
			wf := RandSlice(r, sh.rows*sh.cols, 1)
			w := TensorFrom(wf, dt, sh.rows, sh.cols)
			wr := make([]float32, sh.rows*sh.cols)
			quant.RowsTo(wr, &w, 0, sh.rows)
			for _, n := range ns {
				if n*sh.rows*sh.cols > 20e6 {
					continue
				}
				x := RandSlice(r, n*sh.cols, 1)
				if n > 2 {
					x[sh.cols+1] *= 40 // an outlier: its block's int8 scale is coarse
				}
				want, mag := RefMatMul(x, wr, n, sh.rows, sh.cols)
				bounds := map[Rounding][]float64{}
				for threads := 1; threads <= 3; threads++ {
					c := newBackend(threads)
					rnd := layers.RoundingOf(c, dt)
					bound := bounds[rnd]
					if bound == nil {
						bound = MatMulBound(rnd, x, wr, mag, n, sh.rows, sh.cols)
						bounds[rnd] = bound
					}
					got := make([]float32, n*sh.rows+1)
					got[n*sh.rows] = 12345 // must stay untouched
					c.MatMul(got[:n*sh.rows], x, &w, n)
					if got[n*sh.rows] != 12345 {
						t.Fatalf("threads %d %v %dx%d n=%d: wrote past the output", threads, dt, sh.rows, sh.cols, n)
					}
					for i := range want {
						if d := math.Abs(float64(got[i]) - want[i]); !(d <= bound[i]) {
							t.Fatalf("threads %d %v (%v) %dx%d n=%d: out[%d] = %g, want %g (diff %g, bound %g)",
								threads, dt, rnd, sh.rows, sh.cols, n, i, got[i], want[i], d, bound[i])
						}
					}
				}
			}
		}
	}
}

// MatMulBound is the largest error allowed in each output of x·wᵀ (x [n,
// cols], w [rows, cols] as float32 values of the stored weights, mag the
// magnitudes Σ|x·w| from RefMatMul) under rounding r: the Rounding's
// bound, with float32 sums allowed 1e-5·Σ|x·w| + 1e-6, and 0.1% on top
// of an int8 block's scale/2 for the float32 arithmetic that finds it.
func MatMulBound(r Rounding, x, w []float32, mag []float64, n, rows, cols int) []float64 {
	out := make([]float64, n*rows)
	var scales []float64 // int8: each block's scale, [n][blocks]
	nb := (cols + 31) / 32
	if r == layers.RoundInt8 {
		scales = make([]float64, n*nb)
		for i := 0; i < n; i++ {
			for b := 0; b < nb; b++ {
				var m float64
				for k := 32 * b; k < min(32*b+32, cols); k++ {
					m = math.Max(m, math.Abs(float64(x[i*cols+k])))
				}
				scales[i*nb+b] = m / 127
			}
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < rows; j++ {
			o := i*rows + j
			out[o] = 1e-5*mag[o] + 1e-6
			switch r {
			case layers.RoundBF16:
				out[o] += mag[o] / 256
			case layers.RoundInt8:
				for k := 0; k < cols; k++ {
					out[o] += scales[i*nb+k/32] / 2 * 1.001 * math.Abs(float64(w[j*cols+k]))
				}
			}
		}
	}
	return out
}

// Rounding is layers.Rounding (for the suite's bounds).
type Rounding = layers.Rounding

// MatMulConcurrentAndNested checks that a backend may be used from several
// goroutines at once and from inside its own Parallel.
func MatMulConcurrentAndNested(t *testing.T, newBackend NewBackend) {
	const rows, cols, n = 70, 90, 9
	r := rand.New(rand.NewPCG(13, 14))
	wf := RandSlice(r, rows*cols, 1)
	w := TensorFrom(wf, weights.BF16, rows, cols)
	x := RandSlice(r, n*cols, 1)
	want, mag := RefMatMul(x, w.Floats(), n, rows, cols)
	c := newBackend(2)
	bound := MatMulBound(layers.RoundingOf(c, w.DType), x, w.Floats(), mag, n, rows, cols)
	check := func(got []float32) error {
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); !(d <= bound[i]) {
				return fmt.Errorf("out[%d] = %g, want %g (bound %g)", i, got[i], want[i], bound[i])
			}
		}
		return nil
	}
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
			t.Fatalf("concurrent: %v", err)
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
			t.Fatalf("nested in Parallel: %v", err)
		}
	}
}

// Parallel checks that Parallel covers [0, n) exactly once, for 1 to 3
// threads and n from 0 to more than the threads.
func Parallel(t *testing.T, newBackend NewBackend) {
	for threads := 1; threads <= 3; threads++ {
		c := newBackend(threads)
		for _, n := range []int{0, 1, 2, 3, 7, 100} {
			hits := make([]int, n)
			c.Parallel(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i]++
				}
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("threads %d n %d: index %d covered %d times", threads, n, i, h)
				}
			}
		}
	}
}

// KVLayout is one way of handing attention its keys and values: a dtype
// and a layout.
type KVLayout struct {
	Name  string
	DType weights.DType
	// HeadMajor: in a layers.KVBuf ([HKV][Cap][D]) with room for more
	// tokens, the keys at tokens [Offset, Offset+nk) and NaN everywhere
	// else (so a kernel that reads outside its keys fails); otherwise
	// token-major [nk][HKV*D].
	HeadMajor bool
	Offset    int
}

// KVLayouts are the layouts the Attention check runs: float32 token-major
// (a forward pass's fresh projections) and every dtype head-major (the
// caches), at the start of a buffer and further in, and 16-bit
// token-major.
var KVLayouts = []KVLayout{
	{"f32-tokens", weights.F32, false, 0},
	{"f32-heads", weights.F32, true, 0},
	{"f32-heads-offset", weights.F32, true, 3},
	{"f16-heads", weights.F16, true, 0},
	{"bf16-heads-offset", weights.BF16, true, 2},
	{"bf16-tokens", weights.BF16, false, 0},
	{"f16-tokens", weights.F16, false, 0},
}

// KVSpanOf stores x [nk][HKV*D] (token-major float32) as lay says and
// returns the span attention reads, with x as it reads back (rounded to
// the dtype), token-major.
func KVSpanOf(x []float32, nk int, s layers.AttnShape, lay KVLayout) (layers.KVSpan, []float32) {
	rounded := weightstest.Round(x, lay.DType)
	if !lay.HeadMajor {
		sp := layers.TokenMajor(x, s)
		if lay.DType != weights.F32 {
			sp = layers.KVSpan{DType: lay.DType, H: make([]uint16, len(x)), HeadStride: s.D, TokStride: s.HKV * s.D}
			if lay.DType == weights.F16 {
				layers.EncodeF16(sp.H, x)
			} else {
				layers.EncodeBF16(sp.H, x)
			}
		}
		return sp, rounded
	}
	kvd := s.HKV * s.D
	capacity := lay.Offset + nk + 2
	b := layers.NewKVBuf(lay.DType, capacity, s.HKV, s.D)
	nan := make([]float32, capacity*kvd)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	b.Put(0, nan, capacity)
	if nk > 0 {
		b.Put(lay.Offset, x, nk)
	}
	return b.Span(lay.Offset, lay.Offset+nk), rounded
}

// Attention checks layers.AttentionKV on the backend (its AttentionKernel
// where it has one) against the float64 textbook reference
// (NaiveAttention) over the keys and values as stored, within Tol: every
// K/V dtype and layout (KVLayouts), causal and not, GQA groups 1/4/8, head
// sizes 8/64/80/128, key counts from 0 to several key tiles and to long
// runs that are split into parts (decode), query counts from 1 to several
// query blocks, including causal queries that see no key; every output
// must be written.
func Attention(t *testing.T, newBackend NewBackend) {
	type cs struct{ nq, nk int }
	sizes := []cs{{1, 0}, {1, 1}, {1, 63}, {1, 64}, {1, 65}, {2, 5}, {3, 3}, {5, 3}, {7, 130}, {30, 30}, {70, 200}, {33, 33},
		{1, 1500}, {2, 1100}, {3, 1300}}
	r := rand.New(rand.NewPCG(15, 16))
	for _, D := range []int{8, 64, 80, 128} {
		for _, G := range []int{1, 4, 8} {
			HKV := 2
			if G == 8 {
				HKV = 1
			}
			s := layers.AttnShape{H: G * HKV, HKV: HKV, D: D}
			for si, sz := range sizes {
				if sz.nk > 1000 && (D != 80 || G != 4) || D >= 80 && sz.nq*sz.nk > 2000 && sz.nk < 1000 {
					continue // long runs (split into parts) at one shape
				}
				for _, causal := range []bool{false, true} {
					q := RandSlice(r, sz.nq*s.H*D, 2)
					k := RandSlice(r, sz.nk*s.HKV*D, 2)
					v := RandSlice(r, sz.nk*s.HKV*D, 1)
					type ref struct{ out, lse []float32 }
					refs := map[weights.DType]ref{} // one reference per dtype
					for li, lay := range KVLayouts {
						if (li+si)%2 != 0 && lay.Name != "f32-tokens" {
							continue // every layout on half the sizes
						}
						ks, kr := KVSpanOf(k, sz.nk, s, lay)
						vs, vr := KVSpanOf(v, sz.nk, s, lay)
						rf, ok := refs[lay.DType]
						if !ok {
							rf = ref{make([]float32, len(q)), make([]float32, sz.nq*s.H)}
							NaiveAttention(rf.out, rf.lse, q, kr, vr, sz.nq, sz.nk, s, causal)
							refs[lay.DType] = rf
						}
						want, wantL := rf.out, rf.lse
						for _, threads := range []int{1, 3} {
							c := newBackend(threads)
							got, gotL := make([]float32, len(q)), make([]float32, sz.nq*s.H)
							for i := range got {
								got[i] = float32(math.NaN()) // every output must be written
							}
							layers.AttentionKV(c, got, gotL, q, ks, vs, sz.nq, sz.nk, s, causal)
							if d := MaxDiff(got, want); !(d <= Tol) {
								t.Fatalf("%s threads %d D%d G%d nq%d nk%d causal %v: output max diff %g",
									lay.Name, threads, D, G, sz.nq, sz.nk, causal, d)
							}
							if d := MaxDiff(gotL, wantL); !(d <= Tol) {
								t.Fatalf("%s threads %d D%d G%d nq%d nk%d causal %v: lse max diff %g",
									lay.Name, threads, D, G, sz.nq, sz.nk, causal, d)
							}
						}
					}
				}
			}
		}
	}
}

// SwiGLU checks layers.SwiGLU on the backend (its SwiGLUKernel where it
// has one) against silu(g)·u in float64, within 1e-6 relative, including
// arguments whose exp overflows.
func SwiGLU(t *testing.T, newBackend NewBackend) {
	c := newBackend(1)
	r := rand.New(rand.NewPCG(19, 20))
	for _, n := range []int{0, 1, 7, 8, 33, 1000} {
		h1, h3 := RandSlice(r, n, 30), RandSlice(r, n, 2)
		if n > 0 {
			h1[0] = -100 // exp overflow side
		}
		if n > 1 {
			h1[1] = 100
		}
		got := append([]float32(nil), h1...)
		layers.SwiGLU(c, got, h3)
		for i := range h1 {
			g := float64(h1[i])
			want := g / (1 + math.Exp(-g)) * float64(h3[i])
			if d := math.Abs(float64(got[i]) - want); !(d <= 1e-6*math.Abs(want)+1e-30) {
				t.Fatalf("n %d: SwiGLU(%g, %g) = %g, want %g", n, h1[i], h3[i], got[i], want)
			}
		}
	}
}
