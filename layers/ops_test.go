package layers_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/layerstest"
	"github.com/star-attn/star/weights"
)

// llama3RopeCase is one case of ../shared/reference/llama3_rope_inv_freq.json:
// inverse frequencies computed by an independent port of Hugging Face's
// _compute_llama3_parameters.
type llama3RopeCase struct {
	Model       string  `json:"model"`
	HeadDim     int     `json:"head_dim"`
	RopeTheta   float64 `json:"rope_theta"`
	RopeScaling struct {
		Factor   float64 `json:"factor"`
		Low      float64 `json:"low_freq_factor"`
		High     float64 `json:"high_freq_factor"`
		Original int     `json:"original_max_position_embeddings"`
	} `json:"rope_scaling"`
	Unscaled []float64 `json:"inv_freq_unscaled"`
	Scaled   []float64 `json:"inv_freq"`
}

// The Llama 3.1 and 3.2 frequencies equal the reference's. Both are float64
// computations of the same formula in a different order, so they agree to
// a few ulps: relative tolerance 1e-12. A swapped blend (smooth and
// 1-smooth) is off by tens of percent in the middle band.
func TestRopeFreqsLlama3Reference(t *testing.T) {
	var ref struct{ Cases []llama3RopeCase }
	shared.ReadJSON(t, "reference/llama3_rope_inv_freq.json", &ref)
	if len(ref.Cases) < 2 {
		t.Fatalf("%d reference cases, want Llama 3.1 and 3.2", len(ref.Cases))
	}
	const tol = 1e-12
	for _, c := range ref.Cases {
		t.Run(c.Model, func(t *testing.T) {
			rs := c.RopeScaling
			s := &weights.RopeScaling{Type: "llama3", Factor: rs.Factor, LowFreqFactor: rs.Low, HighFreqFactor: rs.High, OriginalMaxPos: rs.Original}
			for _, v := range []struct {
				name string
				s    *weights.RopeScaling
				want []float64
			}{{"unscaled", nil, c.Unscaled}, {"scaled", s, c.Scaled}} {
				got := layers.RopeFreqs(c.HeadDim, c.RopeTheta, v.s)
				if len(got) != len(v.want) || len(got) != c.HeadDim/2 {
					t.Fatalf("%s: %d frequencies, reference %d, want head_dim/2 = %d", v.name, len(got), len(v.want), c.HeadDim/2)
				}
				worst, at := 0.0, 0
				for i := range got {
					if d := math.Abs(got[i]-v.want[i]) / v.want[i]; d > worst {
						worst, at = d, i
					}
				}
				if worst > tol {
					t.Errorf("%s: max relative difference %.3g > %g at pair %d (got %.17g, reference %.17g)", v.name, worst, tol, at, got[at], v.want[at])
				}
			}
			// the reference covers all three bands, or it proves less
			bands := map[string]bool{}
			for i := range c.Scaled {
				switch r := c.Unscaled[i] / c.Scaled[i]; {
				case math.Abs(r-1) < 1e-12:
					bands["kept"] = true
				case math.Abs(r-rs.Factor) < 1e-9:
					bands["divided"] = true
				default:
					bands["blended"] = true
				}
			}
			if len(bands) != 3 {
				t.Fatalf("reference case has bands %v, want kept, blended and divided", bands)
			}
		})
	}
}

// The two RoPE layouts are the same rotation on permuted coordinates.
func TestRoPELayouts(t *testing.T) {
	const d, heads = 8, 2
	r := rand.New(rand.NewPCG(5, 6))
	x := layerstest.RandSlice(r, heads*d, 1)
	freqs := layers.RopeFreqs(d, 10000, nil)
	cos, sin := make([]float32, d/2), make([]float32, d/2)
	adj := append([]float32(nil), x...)
	layers.RoPE(adj, 7, heads, d, freqs, false, cos, sin)
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
	layers.RoPE(hs, 7, heads, d, freqs, true, cos, sin)
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
	layers.RoPE(y, 0, heads, d, freqs, false, cos, sin)
	if layerstest.MaxDiff(x, y) != 0 {
		t.Fatal("RoPE at position 0 changed the vector")
	}
}

func TestMatMulDTypes(t *testing.T) {
	const rows, cols, n = 37, 45, 5
	r := rand.New(rand.NewPCG(7, 8))
	wf := layerstest.RandSlice(r, rows*cols, 1)
	x := layerstest.RandSlice(r, n*cols, 1)
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
		w := layerstest.TensorFrom(wf, c.dt, rows, cols)
		for _, threads := range []int{1, 2, 3} {
			got := make([]float32, n*rows)
			layers.NewCPU(threads).MatMul(got, x, &w, n)
			if d := layerstest.MaxDiff(got, want); d > c.tol {
				t.Errorf("%v threads %d: max diff %g > %g", c.dt, threads, d, c.tol)
			}
		}
	}
}

func TestLogSoftmax(t *testing.T) {
	l := []float32{1000, 1000, -math.MaxFloat32}
	out := make([]float32, 3)
	layers.LogSoftmax(out, l)
	if math.Abs(float64(out[0])-math.Log(0.5)) > 1e-6 || !(out[2] < -1e30) {
		t.Fatalf("LogSoftmax(%v) = %v", l, out)
	}
}
