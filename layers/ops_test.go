package layers

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/weights"
)

func TestRopeFreqsLlama3(t *testing.T) {
	// Llama 3.1 parameters; expectations computed from the published
	// formula (transformers' _compute_llama3_parameters) by hand.
	s := &weights.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	f := RopeFreqs(128, 500000, s)
	plain := RopeFreqs(128, 500000, nil)
	// highest frequency (wavelength 2π < 2048): unchanged
	if f[0] != plain[0] {
		t.Fatalf("freq[0] = %g, want unscaled %g", f[0], plain[0])
	}
	// lowest frequency (wavelength > 8192): divided by 8
	if d := math.Abs(f[63] - plain[63]/8); d > 1e-15 {
		t.Fatalf("freq[63] = %g, want %g", f[63], plain[63]/8)
	}
	// in between: a blend, strictly between the two
	for i, fr := range f {
		wave := 2 * math.Pi / plain[i]
		if wave >= 2048 && wave <= 8192 {
			if !(fr < plain[i] && fr > plain[i]/8) {
				t.Fatalf("freq[%d] = %g not between %g and %g", i, fr, plain[i]/8, plain[i])
			}
		}
	}
}

// The two RoPE layouts are the same rotation on permuted coordinates.
func TestRoPELayouts(t *testing.T) {
	const d, heads = 8, 2
	r := rand.New(rand.NewPCG(5, 6))
	x := randSlice(r, heads*d, 1)
	freqs := RopeFreqs(d, 10000, nil)
	cos, sin := make([]float32, d/2), make([]float32, d/2)
	adj := append([]float32(nil), x...)
	RoPE(adj, 7, heads, d, freqs, false, cos, sin)
	// permute into half-split layout: half-split index j*half+i <- adjacent 2i+j
	half := d / 2
	hs := make([]float32, len(x))
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				hs[h*d+j*half+i] = x[h*d+2*i+j]
			}
		}
	}
	RoPE(hs, 7, heads, d, freqs, true, cos, sin)
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				if a, b := adj[h*d+2*i+j], hs[h*d+j*half+i]; math.Abs(float64(a-b)) > 1e-6 {
					t.Fatalf("head %d pair %d: adjacent %g vs half-split %g", h, i, a, b)
				}
			}
		}
	}
	// position 0 is the identity
	y := append([]float32(nil), x...)
	RoPE(y, 0, heads, d, freqs, false, cos, sin)
	if maxDiff(x, y) != 0 {
		t.Fatal("RoPE at position 0 changed the vector")
	}
}

func TestMatMulDTypes(t *testing.T) {
	const rows, cols, n = 37, 45, 5
	r := rand.New(rand.NewPCG(7, 8))
	wf := randSlice(r, rows*cols, 1)
	x := randSlice(r, n*cols, 1)
	want := make([]float32, n*rows)
	for i := 0; i < n; i++ {
		for j := 0; j < rows; j++ {
			var s float64
			for k := 0; k < cols; k++ {
				s += float64(x[i*cols+k]) * float64(wf[j*cols+k])
			}
			want[i*rows+j] = float32(s)
		}
	}
	for _, c := range []struct {
		dt  weights.DType
		tol float64
	}{{weights.F32, 1e-5}, {weights.F16, 5e-3}, {weights.BF16, 5e-2}} {
		w := tensorFrom(wf, c.dt, rows, cols)
		for _, threads := range []int{1, 2, 3} {
			got := make([]float32, n*rows)
			NewCPU(threads).MatMul(got, x, &w, n)
			if d := maxDiff(got, want); d > c.tol {
				t.Errorf("%v threads %d: max diff %g > %g", c.dt, threads, d, c.tol)
			}
		}
	}
}

func tensorFrom(f []float32, dt weights.DType, shape ...int) weights.Tensor {
	t := weights.Tensor{Name: "t", DType: dt, Shape: shape, Data: make([]byte, len(f)*dt.Size())}
	for i, v := range f {
		switch dt {
		case weights.F32:
			b := math.Float32bits(v)
			t.Data[4*i], t.Data[4*i+1], t.Data[4*i+2], t.Data[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
		case weights.F16, weights.BF16:
			h := weights.F32ToF16(v)
			if dt == weights.BF16 {
				h = weights.F32ToBF16(v)
			}
			t.Data[2*i], t.Data[2*i+1] = byte(h), byte(h>>8)
		}
	}
	return t
}

func TestLogSoftmax(t *testing.T) {
	l := []float32{1000, 1000, -math.MaxFloat32}
	out := make([]float32, 3)
	LogSoftmax(out, l)
	if math.Abs(float64(out[0])-math.Log(0.5)) > 1e-6 || !(out[2] < -1e30) {
		t.Fatalf("LogSoftmax(%v) = %v", l, out)
	}
}
