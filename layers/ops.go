package layers

import (
	"math"

	"github.com/star-attn/star/weights"
)

// RMSNorm: out[i] = w[i] · x[i] / sqrt(mean(x²) + eps), for one row.
// out, x, w: [dim]. out may alias x.
func RMSNorm(out, x, w []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i := range out {
		out[i] = w[i] * (scale * x[i])
	}
}

// RopeFreqs returns the inverse frequency of each rotary pair i in a head
// of size headDim: theta^(-2i/headDim), divided by Llama 3 scaling's
// factor (weights.Llama3RopeFactors) when s is set.
// Result: [headDim/2].
func RopeFreqs(headDim int, theta float64, s *weights.RopeScaling) []float64 {
	f := make([]float64, headDim/2)
	for i := range f {
		f[i] = 1 / math.Pow(theta, float64(2*i)/float64(headDim))
	}
	if s == nil {
		return f
	}
	for i, d := range weights.Llama3RopeFactors(s, theta, headDim) {
		f[i] /= d
	}
	return f
}

// RoPE rotates, in place, every head of one token's vector x [nHeads*headDim]
// at position pos. freqs: [headDim/2]. halfSplit selects Hugging Face's
// pairing (i, i+headDim/2); otherwise adjacent pairs (2i, 2i+1).
// cos, sin: scratch [headDim/2].
func RoPE(x []float32, pos int, nHeads, headDim int, freqs []float64, halfSplit bool, cos, sin []float32) {
	half := headDim / 2
	for i := 0; i < half; i++ {
		a := float64(pos) * freqs[i]
		cos[i], sin[i] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	for h := 0; h < nHeads; h++ {
		v := x[h*headDim : (h+1)*headDim]
		for i := 0; i < half; i++ {
			var p, q int
			if halfSplit {
				p, q = i, i+half
			} else {
				p, q = 2*i, 2*i+1
			}
			v0, v1 := v[p], v[q]
			v[p] = v0*cos[i] - v1*sin[i]
			v[q] = v0*sin[i] + v1*cos[i]
		}
	}
}

// SwiGLUKernel is implemented by backends with their own SwiGLU kernel: it
// computes exactly what SwiGLU specifies and reports true, or reports
// false (computing nothing) to let SwiGLU use the pure-Go loop.
type SwiGLUKernel interface {
	SwiGLUKernel(h1, h3 []float32) bool
}

// SwiGLU: h1[i] = silu(h1[i]) · h3[i], in place. h1, h3: [hidden].
//
// If c implements SwiGLUKernel (the SIMD CPU backend does, with a
// vectorised exp), its kernel computes the result; otherwise the loop
// below does.
func SwiGLU(c Compute, h1, h3 []float32) {
	if k, ok := c.(SwiGLUKernel); ok && k.SwiGLUKernel(h1, h3) {
		return
	}
	for i, g := range h1 {
		h1[i] = g / (1 + float32(math.Exp(float64(-g)))) * h3[i]
	}
}

// Add: x[i] += y[i].
func Add(x, y []float32) {
	y = y[:len(x)]
	for i := range x {
		x[i] += y[i]
	}
}

// LogSoftmax writes the natural-log probabilities of logits into out
// (float64 accumulation, max subtracted). out, logits: [V]; out may alias.
func LogSoftmax(out, logits []float32) {
	m := float32(math.Inf(-1))
	for _, v := range logits {
		if v > m {
			m = v
		}
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v - m))
	}
	lz := float64(m) + math.Log(s)
	for i, v := range logits {
		out[i] = float32(float64(v) - lz)
	}
}
