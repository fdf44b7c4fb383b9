package weightstest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/star-attn/star/weights"
)

// STTensor is one tensor to encode in a safetensors file. DType is the
// safetensors name ("F32", "F16", "BF16", or any other string for error
// tests); Data is written as given.
type STTensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
}

// WriteHF writes m as a Hugging Face Llama checkpoint folder: config.json
// and either model.safetensors (shards == 1) or shards files
// model-0000i-of-0000n.safetensors with model.safetensors.index.json.
// Every tensor is stored in dtype. wq/wk are written in HF's half-split
// RoPE layout (see ToHalfSplit), so loading the folder gives a model
// (RopeHalfSplit = true) that computes the same function as m. The
// classifier is omitted and tie_word_embeddings set when m is tied.
func WriteHF(dir string, m *weights.Model, dtype weights.DType, shards int) error {
	cfg, ts, err := HFContent(m, dtype)
	if err != nil {
		return err
	}
	return WriteHFContent(dir, cfg, ts, shards)
}

// WriteHFContent writes a config map and tensors as WriteHF does, for tests
// that alter HFContent's result first.
func WriteHFContent(dir string, cfg map[string]any, ts []STTensor, shards int) error {
	if shards < 1 || shards > len(ts) {
		return fmt.Errorf("weightstest: cannot split %d tensors into %d shards", len(ts), shards)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cb, 0o644); err != nil {
		return err
	}
	if shards == 1 {
		b, err := EncodeSafetensors(ts, nil)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o644)
	}
	weightMap := map[string]string{}
	total := 0
	for s := 0; s < shards; s++ {
		part := ts[s*len(ts)/shards : (s+1)*len(ts)/shards]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		b, err := EncodeSafetensors(part, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
		for _, t := range part {
			weightMap[t.Name] = name
			total += len(t.Data)
		}
	}
	ib, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), ib, 0o644)
}

// HFContent returns the config.json contents and the tensors (HF names,
// half-split wq/wk, in dtype, in weights.FileOrder) WriteHF would write.
func HFContent(m *weights.Model, dtype weights.DType) (map[string]any, []STTensor, error) {
	if err := checkModel(m); err != nil {
		return nil, nil, err
	}
	stType, torchType := "", ""
	switch dtype {
	case weights.F32:
		stType, torchType = "F32", "float32"
	case weights.F16:
		stType, torchType = "F16", "float16"
	case weights.BF16:
		stType, torchType = "BF16", "bfloat16"
	default:
		return nil, nil, fmt.Errorf("weightstest: cannot write dtype %v", dtype)
	}
	c := m.Config
	cfg := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_act":              "silu",
		"hidden_size":             c.Dim,
		"intermediate_size":       c.HiddenDim,
		"num_hidden_layers":       c.NLayers,
		"num_attention_heads":     c.NHeads,
		"num_key_value_heads":     c.NKVHeads,
		"head_dim":                c.HeadDim,
		"rms_norm_eps":            float64(c.NormEps),
		"rope_theta":              c.RopeTheta,
		"max_position_embeddings": c.SeqLen,
		"vocab_size":              c.VocabSize,
		"tie_word_embeddings":     c.TiedEmbeddings,
		"torch_dtype":             torchType,
		"attention_bias":          false,
		"mlp_bias":                false,
		"rope_scaling":            nil,
	}
	if rs := c.RopeScaling; rs != nil {
		cfg["rope_scaling"] = map[string]any{
			"rope_type":                        rs.Type,
			"factor":                           rs.Factor,
			"low_freq_factor":                  rs.LowFreqFactor,
			"high_freq_factor":                 rs.HighFreqFactor,
			"original_max_position_embeddings": rs.OriginalMaxPos,
		}
	}
	var ts []STTensor
	m.Walk(weights.FileOrder, func(s *weights.TensorSpec, layer int, t *weights.Tensor) error {
		if !(s.Classifier && c.TiedEmbeddings) {
			ts = append(ts, STTensor{Name: s.HFName(layer), DType: stType, Shape: s.Shape(&c), Data: EncodeFloats(floats(&c, s, t, true), dtype)})
		}
		return nil
	})
	return cfg, ts, nil
}

// EncodeSafetensors lays out a safetensors file: uint64 header length, a
// JSON header (padded with spaces to a multiple of 8 bytes) mapping each
// name to its dtype, shape and data_offsets, then the tensors' bytes in
// order. metadata, if non-nil, becomes "__metadata__".
func EncodeSafetensors(ts []STTensor, metadata map[string]string) ([]byte, error) {
	header := map[string]any{}
	if metadata != nil {
		header["__metadata__"] = metadata
	}
	off := 0
	for _, t := range ts {
		if _, dup := header[t.Name]; dup {
			return nil, fmt.Errorf("weightstest: tensor %q given twice", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int{off, off + len(t.Data)}}
		off += len(t.Data)
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	out := le.AppendUint64(nil, uint64(len(hb)))
	out = append(out, hb...)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	return out, nil
}
