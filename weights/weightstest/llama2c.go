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
// tok_emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 (each stacked over
// layers), rms_final, the two legacy RoPE tables, and wcls if untied.
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
	put := func(v []float32) { buf.Write(EncodeFloats(v, weights.F32)) }
	put(m.TokEmb.Floats())
	each := func(get func(l *weights.Layer) []float32) {
		for i := range m.Layers {
			put(get(&m.Layers[i]))
		}
	}
	each(func(l *weights.Layer) []float32 { return l.AttnNorm.Floats() })
	each(func(l *weights.Layer) []float32 { q, _ := qk(m, l, false); return q })
	each(func(l *weights.Layer) []float32 { _, k := qk(m, l, false); return k })
	each(func(l *weights.Layer) []float32 { return l.WV.Floats() })
	each(func(l *weights.Layer) []float32 { return l.WO.Floats() })
	each(func(l *weights.Layer) []float32 { return l.FFNNorm.Floats() })
	each(func(l *weights.Layer) []float32 { return l.W1.Floats() })
	each(func(l *weights.Layer) []float32 { return l.W2.Floats() })
	each(func(l *weights.Layer) []float32 { return l.W3.Floats() })
	put(m.FinalNorm.Floats())
	// Legacy RoPE tables (ignored by readers, written as llama2.c did).
	half := c.HeadDim / 2
	cos := make([]float32, c.SeqLen*half)
	sin := make([]float32, c.SeqLen*half)
	for p := 0; p < c.SeqLen; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	put(cos)
	put(sin)
	if !c.TiedEmbeddings {
		put(m.Output.Floats())
	}
	return buf.Bytes(), nil
}
