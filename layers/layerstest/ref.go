package layerstest

import (
	"math"
	"math/rand/v2"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// References and test data, shared by the suite and by tests of their own.

// RandSlice returns n values uniform in [-scale, scale).
func RandSlice(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (r.Float32()*2 - 1) * scale
	}
	return s
}

// MaxDiff is max |a[i] - b[i]|; +Inf where one is infinite and they differ.
func MaxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		if math.IsInf(float64(a[i]), 0) || math.IsInf(float64(b[i]), 0) {
			if a[i] != b[i] {
				return math.Inf(1)
			}
			continue
		}
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TensorFrom stores f as a tensor of dtype dt (rounded to it) and shape.
func TensorFrom(f []float32, dt weights.DType, shape ...int) weights.Tensor {
	return weights.Tensor{Name: "t", DType: dt, Shape: shape, Data: weightstest.EncodeFloats(f, dt)}
}

// RefMatMul is out = x·wᵀ in float64 (x [n, cols], w [rows, cols]), and
// the magnitude Σ|x||w| of each output.
func RefMatMul(x, w []float32, n, rows, cols int) (want, mag []float64) {
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

// NaiveAttention is the textbook reference of layers.Attention in float64:
// the full score matrix, masked, soft-maxed.
func NaiveAttention(out, lse, q, k, v []float32, nq, nk int, s layers.AttnShape, causal bool) {
	H, D, kvDim := s.H, s.D, s.HKV*s.D
	for i := 0; i < nq; i++ {
		for h := 0; h < H; h++ {
			kh := h / (s.H / s.HKV)
			visible := nk
			if causal {
				visible = nk - nq + i + 1
			}
			o := out[i*H*D+h*D : i*H*D+(h+1)*D]
			if visible <= 0 {
				clear(o)
				lse[i*H+h] = float32(math.Inf(-1))
				continue
			}
			sc := make([]float64, visible)
			m := math.Inf(-1)
			for j := range sc {
				var d float64
				for x := 0; x < D; x++ {
					d += float64(q[i*H*D+h*D+x]) * float64(k[j*kvDim+kh*D+x])
				}
				sc[j] = d / math.Sqrt(float64(D))
				m = math.Max(m, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - m)
				sum += sc[j]
			}
			for x := 0; x < D; x++ {
				var a float64
				for j := range sc {
					a += sc[j] * float64(v[j*kvDim+kh*D+x])
				}
				o[x] = float32(a / sum)
			}
			lse[i*H+h] = float32(m + math.Log(sum))
		}
	}
}
