// Package weightstest makes small random Llama models and writes them in
// every format package weights reads (llama2.c legacy v0, GGUF, Hugging
// Face safetensors folders), for tests in this and other packages.
//
// Models from RandomModel use the adjacent-pair RoPE layout of llama2.c
// and GGUF (RopeHalfSplit = false). The writers accept models in either
// layout and convert wq/wk to the layout of the target format, so a model
// written and loaded again computes the same function.
package weightstest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"

	"github.com/star-attn/star/weights"
)

var le = binary.LittleEndian

// RandomModel returns a model with F32 tensors drawn from a seeded
// generator: norm weights near 1, matrices ~ N(0, σ) with σ = 1/sqrt(cols)
// clamped to [0.02, 0.1], so activations and logits are non-trivial.
//
// Zero fields of cfg get defaults: Arch "llama", NKVHeads = NHeads,
// HeadDim = Dim/NHeads, NormEps 1e-5, RopeTheta 10000, SeqLen 256.
// RopeHalfSplit is forced to false. It panics if cfg is still invalid
// (a bug in the calling test).
func RandomModel(cfg weights.Config, seed int64) *weights.Model {
	c := cfg
	if c.Arch == "" {
		c.Arch = "llama"
	}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if c.HeadDim == 0 && c.NHeads > 0 {
		c.HeadDim = c.Dim / c.NHeads
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.SeqLen == 0 {
		c.SeqLen = 256
	}
	c.RopeHalfSplit = false
	if err := c.Check(); err != nil {
		panic("weightstest.RandomModel: " + err.Error())
	}
	r := rand.New(rand.NewSource(seed))
	matrix := func(name string, rows, cols int) weights.Tensor {
		sigma := math.Min(0.1, math.Max(0.02, 1/math.Sqrt(float64(cols))))
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(r.NormFloat64() * sigma)
		}
		return F32Tensor(name, v, rows, cols)
	}
	norm := func(name string, n int) weights.Tensor {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(1 + 0.05*r.NormFloat64())
		}
		return F32Tensor(name, v, n)
	}
	m := &weights.Model{Config: c, Format: "dummy", Layers: make([]weights.Layer, c.NLayers)}
	m.Walk(weights.FileOrder, func(s *weights.TensorSpec, layer int, t *weights.Tensor) error {
		name, shape := s.GGUFName(layer), s.Shape(&c)
		switch {
		case s.Classifier && c.TiedEmbeddings:
			*t = m.TokEmb
		case s.Norm:
			*t = norm(name, shape[0])
		default:
			*t = matrix(name, shape[0], shape[1])
		}
		return nil
	})
	return m
}

// F32Tensor makes an F32 tensor holding a copy of v.
func F32Tensor(name string, v []float32, shape ...int) weights.Tensor {
	return weights.Tensor{Name: name, DType: weights.F32, Shape: append([]int(nil), shape...), Data: EncodeFloats(v, weights.F32)}
}

// EncodeFloats returns v as little-endian bytes of dtype (rounding to
// nearest even for F16/BF16, quantized by Quantize for the quantized
// types, when len(v) must be whole blocks: it panics otherwise).
func EncodeFloats(v []float32, dt weights.DType) []byte {
	if dt.Quantized() {
		b, err := Quantize(v, dt)
		if err != nil {
			panic(err)
		}
		return b
	}
	out := make([]byte, len(v)*dt.Size())
	for i, f := range v {
		switch dt {
		case weights.F32:
			le.PutUint32(out[4*i:], math.Float32bits(f))
		case weights.F16:
			le.PutUint16(out[2*i:], weights.F32ToF16(f))
		case weights.BF16:
			le.PutUint16(out[2*i:], weights.F32ToBF16(f))
		}
	}
	return out
}

// Round returns v as it reads back after storing it as dtype, for the
// plain dtypes (dequantizing is package layers/quant's: it panics for a
// quantized type).
func Round(v []float32, dt weights.DType) []float32 {
	if dt.Quantized() {
		panic("weightstest.Round: " + dt.String() + " is quantized; dequantize with layers/quant")
	}
	out := make([]float32, len(v))
	for i, f := range v {
		switch dt {
		case weights.F16:
			out[i] = weights.F16ToF32(weights.F32ToF16(f))
		case weights.BF16:
			out[i] = weights.BF16ToF32(weights.F32ToBF16(f))
		default:
			out[i] = f
		}
	}
	return out
}

// ToHalfSplit reorders the rows of a wq/wk matrix ([nHeads*headDim, cols],
// row-major) from the adjacent-pair RoPE layout (llama2.c, GGUF) to the
// half-split layout of Hugging Face checkpoints: within each head
// (half = headDim/2), row j*half+i of the result is row 2i+j of w. This
// is the inverse of the permute in llama.cpp's convert_hf_to_gguf.py.
func ToHalfSplit(w []float32, nHeads, headDim, cols int) []float32 {
	return permuteRows(w, nHeads, headDim, cols, true)
}

// ToAdjacent is the inverse of ToHalfSplit: it turns Hugging Face's
// half-split wq/wk rows into the adjacent-pair layout.
func ToAdjacent(w []float32, nHeads, headDim, cols int) []float32 {
	return permuteRows(w, nHeads, headDim, cols, false)
}

func permuteRows[T any](w []T, nHeads, headDim, cols int, toHalf bool) []T {
	if len(w) != nHeads*headDim*cols || headDim%2 != 0 {
		panic(fmt.Sprintf("weightstest: cannot permute %d values as %d heads × %d rows × %d cols", len(w), nHeads, headDim, cols))
	}
	out := make([]T, len(w))
	half := headDim / 2
	for h := 0; h < nHeads; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				adj := h*headDim + 2*i + j
				hs := h*headDim + j*half + i
				src, dst := adj, hs
				if !toHalf {
					src, dst = hs, adj
				}
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

// rawRows returns a tensor's bytes as stored (any dtype, quantized blocks
// included); rows that RoPE rotates come in the requested layout.
func rawRows(c *weights.Config, s *weights.TensorSpec, t *weights.Tensor, halfSplit bool) []byte {
	if !s.Rotary || halfSplit == c.RopeHalfSplit {
		return t.Data
	}
	return permuteRows(t.Data, t.Rows()/c.HeadDim, c.HeadDim, t.DType.RowBytes(t.Cols()), halfSplit)
}

// floats returns a tensor's values; rows that RoPE rotates (wq, wk) come
// in the requested layout.
func floats(c *weights.Config, s *weights.TensorSpec, t *weights.Tensor, halfSplit bool) []float32 {
	v := t.Floats()
	switch {
	case !s.Rotary || halfSplit == c.RopeHalfSplit:
		return v
	case halfSplit:
		return ToHalfSplit(v, t.Rows()/c.HeadDim, c.HeadDim, c.Dim)
	}
	return ToAdjacent(v, t.Rows()/c.HeadDim, c.HeadDim, c.Dim)
}

// checkModel rejects models the writers cannot describe.
func checkModel(m *weights.Model) error {
	if m == nil {
		return fmt.Errorf("weightstest: nil model")
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("weightstest: model to write is invalid: %w", err)
	}
	return nil
}
