package weights

import "fmt"

// The tensors of a Llama model, declared once: their names in each
// format, their shapes in terms of the Config and the field of Model or
// Layer that holds them. The readers (GGUF, Hugging Face, llama2.c),
// Validate, the sizes, dummy weights, the fingerprint and the writers of
// package weightstest all walk these tables; no other code names a
// tensor.
//
// Facts of the formats that are not names:
//   - GGUF and llama2.c store wq/wk rows (Rotary) in the adjacent-pair
//     RoPE layout; Hugging Face checkpoints store them half-split and are
//     used as stored, with Config.RopeHalfSplit set.
//   - The classifier is optional: a GGUF file without it, or a Hugging
//     Face checkpoint without it or with tie_word_embeddings, ties it to
//     the token embedding; a llama2.c file says which with the sign of
//     its vocab_size and holds it last when untied.
//   - GGUF files may carry RopeFreqs (Llama 3 RoPE scaling); llama2.c
//     files carry two legacy RoPE tables that nothing reads.

// Dim is a dimension of a tensor, read from a Config.
type Dim int

const (
	DimModel  Dim = iota // Config.Dim
	DimHidden            // Config.HiddenDim
	DimVocab             // Config.VocabSize
	DimQ                 // Config.QDim(): query heads × head size
	DimKV                // Config.KVDim(): key/value heads × head size
	DimRotary            // Config.HeadDim/2: one per rotary frequency
	DimSeq               // Config.SeqLen
)

// Of is the dimension's size under c.
func (d Dim) Of(c *Config) int {
	switch d {
	case DimModel:
		return c.Dim
	case DimHidden:
		return c.HiddenDim
	case DimVocab:
		return c.VocabSize
	case DimQ:
		return c.QDim()
	case DimKV:
		return c.KVDim()
	case DimRotary:
		return c.HeadDim / 2
	case DimSeq:
		return c.SeqLen
	}
	panic(fmt.Sprintf("weights: unknown dimension %d", int(d)))
}

// TensorSpec declares one tensor: its name in each format ("" where the
// format has no such tensor; in a layer's tensors %d stands for the layer
// number), its shape and where a Model holds it.
type TensorSpec struct {
	GGUF, HF, Llama2C string
	Dims              []Dim // row-major; a matrix is [out, in]
	// Norm: RMSNorm weights (a vector of ones in dummy weights, F32 in
	// dummy weights and GGUF files whatever the matrices' dtype).
	Norm bool
	// Rotary: rows that RoPE rotates in pairs (wq, wk), whose order
	// depends on the RoPE layout (Config.RopeHalfSplit).
	Rotary bool
	// Classifier: the output projection, which may be tied to the token
	// embedding (then it is not in the file and shares its data).
	Classifier bool

	model func(*Model) *Tensor // a model-level tensor
	layer func(*Layer) *Tensor // a layer's tensor
}

// Shape is the tensor's shape under c.
func (s *TensorSpec) Shape(c *Config) []int {
	out := make([]int, len(s.Dims))
	for i, d := range s.Dims {
		out[i] = d.Of(c)
	}
	return out
}

// InLayer tells a layer's tensor from a model-level one.
func (s *TensorSpec) InLayer() bool { return s.layer != nil }

// GGUFName, HFName and Llama2CName are the tensor's names in layer
// (ignored for model-level tensors).
func (s *TensorSpec) GGUFName(layer int) string    { return s.name(s.GGUF, layer) }
func (s *TensorSpec) HFName(layer int) string      { return s.name(s.HF, layer) }
func (s *TensorSpec) Llama2CName(layer int) string { return s.name(s.Llama2C, layer) }

func (s *TensorSpec) name(pattern string, layer int) string {
	if s.layer == nil {
		return pattern
	}
	return fmt.Sprintf(pattern, layer)
}

// numel is the element count under c in float64 (configs may describe
// absurd sizes), over all layers for a layer's tensor.
func (s *TensorSpec) numel(c *Config) float64 {
	n := 1.0
	for _, d := range s.Dims {
		n *= float64(d.Of(c))
	}
	if s.layer != nil {
		n *= float64(c.NLayers)
	}
	return n
}

// The model-level tensors.
var (
	tokEmbTensor = &TensorSpec{GGUF: "token_embd.weight", HF: "model.embed_tokens.weight", Llama2C: "token_embedding_table",
		Dims: []Dim{DimVocab, DimModel}, model: func(m *Model) *Tensor { return &m.TokEmb }}
	finalNormTensor = &TensorSpec{GGUF: "output_norm.weight", HF: "model.norm.weight", Llama2C: "rms_final_weight",
		Dims: []Dim{DimModel}, Norm: true, model: func(m *Model) *Tensor { return &m.FinalNorm }}
	outputTensor = &TensorSpec{GGUF: "output.weight", HF: "lm_head.weight", Llama2C: "wcls",
		Dims: []Dim{DimVocab, DimModel}, Classifier: true, model: func(m *Model) *Tensor { return &m.Output }}
)

// layerTensors are a layer's tensors in the order of Layer's fields (and
// of llama2.c files).
var layerTensors = []*TensorSpec{
	{GGUF: "blk.%d.attn_norm.weight", HF: "model.layers.%d.input_layernorm.weight", Llama2C: "rms_att_weight[%d]",
		Dims: []Dim{DimModel}, Norm: true, layer: func(l *Layer) *Tensor { return &l.AttnNorm }},
	{GGUF: "blk.%d.attn_q.weight", HF: "model.layers.%d.self_attn.q_proj.weight", Llama2C: "wq[%d]",
		Dims: []Dim{DimQ, DimModel}, Rotary: true, layer: func(l *Layer) *Tensor { return &l.WQ }},
	{GGUF: "blk.%d.attn_k.weight", HF: "model.layers.%d.self_attn.k_proj.weight", Llama2C: "wk[%d]",
		Dims: []Dim{DimKV, DimModel}, Rotary: true, layer: func(l *Layer) *Tensor { return &l.WK }},
	{GGUF: "blk.%d.attn_v.weight", HF: "model.layers.%d.self_attn.v_proj.weight", Llama2C: "wv[%d]",
		Dims: []Dim{DimKV, DimModel}, layer: func(l *Layer) *Tensor { return &l.WV }},
	{GGUF: "blk.%d.attn_output.weight", HF: "model.layers.%d.self_attn.o_proj.weight", Llama2C: "wo[%d]",
		Dims: []Dim{DimModel, DimQ}, layer: func(l *Layer) *Tensor { return &l.WO }},
	{GGUF: "blk.%d.ffn_norm.weight", HF: "model.layers.%d.post_attention_layernorm.weight", Llama2C: "rms_ffn_weight[%d]",
		Dims: []Dim{DimModel}, Norm: true, layer: func(l *Layer) *Tensor { return &l.FFNNorm }},
	{GGUF: "blk.%d.ffn_gate.weight", HF: "model.layers.%d.mlp.gate_proj.weight", Llama2C: "w1[%d]",
		Dims: []Dim{DimHidden, DimModel}, layer: func(l *Layer) *Tensor { return &l.W1 }},
	{GGUF: "blk.%d.ffn_down.weight", HF: "model.layers.%d.mlp.down_proj.weight", Llama2C: "w2[%d]",
		Dims: []Dim{DimModel, DimHidden}, layer: func(l *Layer) *Tensor { return &l.W2 }},
	{GGUF: "blk.%d.ffn_up.weight", HF: "model.layers.%d.mlp.up_proj.weight", Llama2C: "w3[%d]",
		Dims: []Dim{DimHidden, DimModel}, layer: func(l *Layer) *Tensor { return &l.W3 }},
}

// Tensors some files carry that a Model does not hold.
var (
	// RopeFreqs is llama.cpp's record of Llama 3 RoPE scaling in a GGUF
	// file: the divisor of each rotary frequency (see Llama3RopeFactors).
	RopeFreqs = &TensorSpec{GGUF: "rope_freqs.weight", Dims: []Dim{DimRotary}}
	// FreqCisReal and FreqCisImag are llama2.c's legacy RoPE tables, the
	// cosines and sines of every position's angles.
	FreqCisReal = &TensorSpec{Llama2C: "freq_cis_real", Dims: []Dim{DimSeq, DimRotary}}
	FreqCisImag = &TensorSpec{Llama2C: "freq_cis_imag", Dims: []Dim{DimSeq, DimRotary}}
)

// Order is an order in which to walk a model's tensors.
type Order int

const (
	// CheckOrder: the token embedding, the classifier, the final norm,
	// then each layer's tensors; Validate checks, and the fingerprint
	// hashes, in this order.
	CheckOrder Order = iota
	// LoadOrder: the token embedding, the final norm, the classifier,
	// RopeFreqs, then each layer's tensors; the GGUF and Hugging Face
	// readers read, and GGUF files hold them, in this order.
	LoadOrder
	// FileOrder: the token embedding, each layer's tensors, the final
	// norm, the classifier; written Hugging Face checkpoints and random
	// weights follow it.
	FileOrder
	// Llama2COrder: llama2.c's file order, FileOrder with each of a
	// layer's tensors stacked over the layers and the legacy RoPE tables
	// before the classifier.
	Llama2COrder
)

// Markers in an order's list: where the layers' tensors go, layer by
// layer or (llama2.c) each tensor stacked over the layers.
var layerByLayer, stackedLayers = &TensorSpec{}, &TensorSpec{}

var orders = [...][]*TensorSpec{
	CheckOrder:   {tokEmbTensor, outputTensor, finalNormTensor, layerByLayer},
	LoadOrder:    {tokEmbTensor, finalNormTensor, outputTensor, RopeFreqs, layerByLayer},
	FileOrder:    {tokEmbTensor, layerByLayer, finalNormTensor, outputTensor},
	Llama2COrder: {tokEmbTensor, stackedLayers, finalNormTensor, FreqCisReal, FreqCisImag, outputTensor},
}

// specs walks the declarations of order o, each layer's tensor once.
func (o Order) specs(f func(s *TensorSpec)) {
	for _, s := range orders[o] {
		if s == layerByLayer || s == stackedLayers {
			for _, ls := range layerTensors {
				f(ls)
			}
			continue
		}
		f(s)
	}
}

// Walk calls f for each tensor of m in order o, with its declaration,
// its layer (-1 for a model-level tensor) and the Model's tensor (nil for
// a tensor the Model does not hold: RopeFreqs, FreqCisReal,
// FreqCisImag). A tied classifier is walked too (it shares the token
// embedding's data). It stops at f's first error.
func (m *Model) Walk(o Order, f func(s *TensorSpec, layer int, t *Tensor) error) error {
	for _, s := range orders[o] {
		var err error
		switch s {
		case layerByLayer:
			for i := range m.Layers {
				for _, ls := range layerTensors {
					if err = f(ls, i, ls.layer(&m.Layers[i])); err != nil {
						return err
					}
				}
			}
		case stackedLayers:
			for _, ls := range layerTensors {
				for i := range m.Layers {
					if err = f(ls, i, ls.layer(&m.Layers[i])); err != nil {
						return err
					}
				}
			}
		default:
			var t *Tensor
			if s.model != nil {
				t = s.model(m)
			}
			err = f(s, -1, t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tensors is the layer's tensors in the order of its fields.
func (l *Layer) tensors() []*Tensor {
	out := make([]*Tensor, len(layerTensors))
	for i, s := range layerTensors {
		out[i] = s.layer(l)
	}
	return out
}
