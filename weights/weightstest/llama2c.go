package weightstest

import (
	"bytes"
	"fmt"
	"math"
	"os"

	"github.com/star-attn/star/weights"
)

// WriteLlama2C writes m as a llama2.c "legacy v0" checkpoint: seven int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
// vocab_size negative when the classifier is untied), then float32 arrays
// in weights.Llama2COrder: the token embedding, each of a layer's tensors
// stacked over the layers, the final norm, the two legacy RoPE tables,
// and the classifier if untied.
// The format fixes head_dim = dim/n_heads, eps 1e-5 and theta 10000 and
// has no RoPE scaling; other models are refused.
func WriteLlama2C(path string, m *weights.Model) error {
	b, err := EncodeLlama2C(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// EncodeLlama2C returns the bytes WriteLlama2C writes.
func EncodeLlama2C(m *weights.Model) ([]byte, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	c := m.Config
	switch {
	case c.HeadDim*c.NHeads != c.Dim:
		return nil, fmt.Errorf("weightstest: llama2.c needs head_dim*n_heads == dim, have %d*%d != %d", c.HeadDim, c.NHeads, c.Dim)
	case c.NormEps != 1e-5:
		return nil, fmt.Errorf("weightstest: llama2.c fixes the norm epsilon at 1e-5, model has %g", c.NormEps)
	case c.RopeTheta != 10000:
		return nil, fmt.Errorf("weightstest: llama2.c fixes rope theta at 10000, model has %g", c.RopeTheta)
	case c.RopeScaling != nil:
		return nil, fmt.Errorf("weightstest: llama2.c has no RoPE scaling")
	}
	var buf bytes.Buffer
	vocab := int32(c.VocabSize)
	if !c.TiedEmbeddings {
		vocab = -vocab
	}
	for _, v := range []int32{int32(c.Dim), int32(c.HiddenDim), int32(c.NLayers), int32(c.NHeads), int32(c.NKVHeads), vocab, int32(c.SeqLen)} {
		buf.Write(le.AppendUint32(nil, uint32(v)))
	}
	cos, sin := ropeTables(&c)
	m.Walk(weights.Llama2COrder, func(s *weights.TensorSpec, layer int, t *weights.Tensor) error {
		var v []float32
		switch {
		case s.Classifier && c.TiedEmbeddings:
			return nil
		case s == weights.FreqCisReal:
			v = cos
		case s == weights.FreqCisImag:
			v = sin
		default:
			v = floats(&c, s, t, false)
		}
		buf.Write(EncodeFloats(v, weights.F32))
		return nil
	})
	return buf.Bytes(), nil
}

// ropeTables are llama2.c's legacy RoPE tables (ignored by readers,
// written as llama2.c did): the cosines and sines of every position's
// angles.
func ropeTables(c *weights.Config) (cos, sin []float32) {
	half := c.HeadDim / 2
	cos = make([]float32, c.SeqLen*half)
	sin = make([]float32, c.SeqLen*half)
	for p := 0; p < c.SeqLen; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}
