package weightstest

import (
	"bytes"
	"fmt"
	"math"
	"os"

	"github.com/star-attn/star/weights"
)

// ggml tensor type ids used in GGUF tensor infos.
const (
	GGMLTypeF32  uint32 = 0
	GGMLTypeF16  uint32 = 1
	GGMLTypeQ4_0 uint32 = 2
	GGMLTypeQ8_0 uint32 = 8
	GGMLTypeQ4_K uint32 = 12
	GGMLTypeQ5_K uint32 = 13
	GGMLTypeQ6_K uint32 = 14
	GGMLTypeBF16 uint32 = 30
)

// GGUFKV is one metadata pair. Value's Go type picks the GGUF type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string,
// uint64, int64, float64, or a slice of one of those (a GGUF array).
type GGUFKV struct {
	Key   string
	Value any
}

// GGUFTensor is one tensor to encode. Shape is row-major (outermost
// first) as in package weights; it is written reversed as GGUF dims.
// Data must hold the tensor's bytes in Type's encoding.
type GGUFTensor struct {
	Name  string
	Type  uint32
	Shape []int
	Data  []byte
}

// WriteGGUF writes m as a GGUF v3 "llama" file: F32 norm weights, the
// embedding, classifier (omitted when tied) and all matrices in dtype,
// no tokenizer metadata. wq/wk are written in GGUF's adjacent-pair RoPE
// layout. Llama 3 RoPE scaling is written as llama.cpp does, as a
// weights.RopeFreqs tensor. Tensors come in weights.LoadOrder.
func WriteGGUF(path string, m *weights.Model, dtype weights.DType) error {
	return WriteGGUFWithMetadata(path, m, dtype, nil)
}

// WriteGGUFWithMetadata is WriteGGUF with extra metadata pairs appended
// (tokenizer.ggml.* for example); a pair whose key is already written
// replaces it.
func WriteGGUFWithMetadata(path string, m *weights.Model, dtype weights.DType, extra []GGUFKV) error {
	kv, ts, err := GGUFContent(m, dtype)
	if err != nil {
		return err
	}
	for _, e := range extra {
		replaced := false
		for i := range kv {
			if kv[i].Key == e.Key {
				kv[i], replaced = e, true
			}
		}
		if !replaced {
			kv = append(kv, e)
		}
	}
	b, err := EncodeGGUF(kv, ts)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// GGUFContent returns the metadata and tensors WriteGGUF would write, for
// tests that alter them before calling EncodeGGUF.
func GGUFContent(m *weights.Model, dtype weights.DType) ([]GGUFKV, []GGUFTensor, error) {
	return GGUFContentTypes(m, func(string) weights.DType { return dtype })
}

// WriteGGUFTypes is WriteGGUF with each matrix in the dtype typeOf gives
// its GGUF name (a per-tensor mix, as llama.cpp's Q4_K_M files have):
// quantized types are made by Quantize from a plain tensor, and a tensor
// already stored in its dtype (dummy quantized weights) is written as is.
func WriteGGUFTypes(path string, m *weights.Model, typeOf func(name string) weights.DType) error {
	kv, ts, err := GGUFContentTypes(m, typeOf)
	if err != nil {
		return err
	}
	b, err := EncodeGGUF(kv, ts)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// GGUFContentTypes is GGUFContent with per-tensor dtypes (see
// WriteGGUFTypes); general.file_type follows the token embedding's.
func GGUFContentTypes(m *weights.Model, typeOf func(name string) weights.DType) ([]GGUFKV, []GGUFTensor, error) {
	if err := checkModel(m); err != nil {
		return nil, nil, err
	}
	_, fileType, err := ggmlType(typeOf(m.TokEmb.Name))
	if err != nil {
		return nil, nil, err
	}
	c := m.Config
	kv := []GGUFKV{
		{"general.architecture", "llama"},
		{"general.name", "weightstest"},
		{"general.alignment", uint32(32)},
		{"general.file_type", fileType},
		{"llama.context_length", uint32(c.SeqLen)},
		{"llama.embedding_length", uint32(c.Dim)},
		{"llama.feed_forward_length", uint32(c.HiddenDim)},
		{"llama.block_count", uint32(c.NLayers)},
		{"llama.attention.head_count", uint32(c.NHeads)},
		{"llama.attention.head_count_kv", uint32(c.NKVHeads)},
		{"llama.rope.dimension_count", uint32(c.HeadDim)},
		{"llama.attention.layer_norm_rms_epsilon", c.NormEps},
		{"llama.rope.freq_base", float32(c.RopeTheta)},
		{"llama.vocab_size", uint32(c.VocabSize)},
	}
	if c.HeadDim*c.NHeads != c.Dim {
		kv = append(kv, GGUFKV{"llama.attention.key_length", uint32(c.HeadDim)},
			GGUFKV{"llama.attention.value_length", uint32(c.HeadDim)})
	}
	var ts []GGUFTensor
	err = m.Walk(weights.LoadOrder, func(s *weights.TensorSpec, layer int, t *weights.Tensor) error {
		switch {
		case s.Classifier && c.TiedEmbeddings:
		case s == weights.RopeFreqs:
			if c.RopeScaling != nil {
				f, err := ropeFreqs(&c)
				if err != nil {
					return err
				}
				ts = append(ts, GGUFTensor{Name: s.GGUF, Type: GGMLTypeF32, Shape: s.Shape(&c), Data: EncodeFloats(f, weights.F32)})
				kv = append(kv, GGUFKV{"llama.rope.scaling.original_context_length", uint32(c.RopeScaling.OriginalMaxPos)})
			}
		case s.Norm:
			ts = append(ts, GGUFTensor{Name: s.GGUFName(layer), Type: GGMLTypeF32, Shape: s.Shape(&c), Data: EncodeFloats(t.Floats(), weights.F32)})
		default:
			name := s.GGUFName(layer)
			dt := typeOf(name)
			ggml, _, err := ggmlType(dt)
			if err != nil {
				return err
			}
			shape := s.Shape(&c)
			if be := dt.BlockElems(); shape[len(shape)-1]%be != 0 {
				return fmt.Errorf("weightstest: tensor %s %v: rows are not whole %v blocks of %d", name, shape, dt, be)
			}
			var data []byte
			switch {
			case t.DType == dt: // as stored (dummy quantized weights, for example)
				data = rawRows(&c, s, t, false)
			case t.DType.Quantized():
				return fmt.Errorf("weightstest: tensor %s is %v: cannot write it as %v", name, t.DType, dt)
			default:
				data = EncodeFloats(floats(&c, s, t, false), dt)
			}
			ts = append(ts, GGUFTensor{Name: name, Type: ggml, Shape: shape, Data: data})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return kv, ts, nil
}

// ropeFreqs is what llama.cpp writes for Llama 3 RoPE scaling: the
// divisor of each rotary frequency.
func ropeFreqs(c *weights.Config) ([]float32, error) {
	rs := c.RopeScaling
	if rs.Type != "llama3" || rs.LowFreqFactor != 1 || rs.HighFreqFactor != 4 {
		return nil, fmt.Errorf("weightstest: GGUF can only carry Llama 3 RoPE scaling with low_freq_factor 1 and high_freq_factor 4 (as %s), model has %+v", weights.RopeFreqs.GGUF, *rs)
	}
	f := weights.Llama3RopeFactors(rs, c.RopeTheta, c.HeadDim)
	f32 := make([]float32, len(f))
	for i := range f {
		f32[i] = float32(f[i])
	}
	return f32, nil
}

func ggmlType(dt weights.DType) (typ, fileType uint32, err error) {
	switch dt {
	case weights.F32:
		return GGMLTypeF32, 0, nil
	case weights.F16:
		return GGMLTypeF16, 1, nil
	case weights.BF16:
		return GGMLTypeBF16, 32, nil
	case weights.Q8_0: // llama.cpp's file types (LLAMA_FTYPE_MOSTLY_*)
		return GGMLTypeQ8_0, 7, nil
	case weights.Q4_0:
		return GGMLTypeQ4_0, 2, nil
	case weights.Q4_K:
		return GGMLTypeQ4_K, 15, nil
	case weights.Q5_K:
		return GGMLTypeQ5_K, 17, nil
	case weights.Q6_K:
		return GGMLTypeQ6_K, 18, nil
	}
	return 0, 0, fmt.Errorf("weightstest: cannot write dtype %v", dt)
}

// EncodeGGUF lays out a GGUF v3 file: header, metadata, tensor infos, and
// the tensor data, each tensor at an offset aligned to general.alignment
// (32 unless kv sets it). Tensor data is written as given, unchecked.
func EncodeGGUF(kv []GGUFKV, tensors []GGUFTensor) ([]byte, error) {
	align := uint64(32)
	for _, e := range kv {
		if e.Key == "general.alignment" {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 {
				return nil, fmt.Errorf("weightstest: general.alignment must be a non-zero uint32, got %v (%T)", e.Value, e.Value)
			}
			align = uint64(a)
		}
	}
	pad := func(n uint64) uint64 { return (n + align - 1) / align * align }
	var b bytes.Buffer
	u32 := func(v uint32) { b.Write(le.AppendUint32(nil, v)) }
	u64 := func(v uint64) { b.Write(le.AppendUint64(nil, v)) }
	str := func(s string) { u64(uint64(len(s))); b.WriteString(s) }
	b.WriteString("GGUF")
	u32(3)
	u64(uint64(len(tensors)))
	u64(uint64(len(kv)))
	for _, e := range kv {
		str(e.Key)
		if err := encodeGGUFValue(&b, e.Value, true); err != nil {
			return nil, fmt.Errorf("weightstest: metadata %s: %w", e.Key, err)
		}
	}
	var off uint64
	offsets := make([]uint64, len(tensors))
	for i, t := range tensors {
		str(t.Name)
		u32(uint32(len(t.Shape)))
		for d := len(t.Shape) - 1; d >= 0; d-- {
			u64(uint64(t.Shape[d]))
		}
		u32(t.Type)
		offsets[i] = off
		u64(off)
		off = pad(off + uint64(len(t.Data)))
	}
	start := pad(uint64(b.Len()))
	out := make([]byte, start+off)
	copy(out, b.Bytes())
	for i, t := range tensors {
		copy(out[start+offsets[i]:], t.Data)
	}
	// The last tensor need not be padded at the end of the file.
	if n := len(tensors); n > 0 {
		out = out[:start+offsets[n-1]+uint64(len(tensors[n-1].Data))]
	}
	return out, nil
}

// encodeGGUFValue writes a value's type (when withType) and encoding.
func encodeGGUFValue(b *bytes.Buffer, v any, withType bool) error {
	typ := func(t uint32) {
		if withType {
			b.Write(le.AppendUint32(nil, t))
		}
	}
	arr := func(elem uint32, n int) {
		typ(9)
		b.Write(le.AppendUint32(nil, elem))
		b.Write(le.AppendUint64(nil, uint64(n)))
	}
	switch x := v.(type) {
	case uint8:
		typ(0)
		b.WriteByte(x)
	case int8:
		typ(1)
		b.WriteByte(byte(x))
	case uint16:
		typ(2)
		b.Write(le.AppendUint16(nil, x))
	case int16:
		typ(3)
		b.Write(le.AppendUint16(nil, uint16(x)))
	case uint32:
		typ(4)
		b.Write(le.AppendUint32(nil, x))
	case int32:
		typ(5)
		b.Write(le.AppendUint32(nil, uint32(x)))
	case float32:
		typ(6)
		b.Write(le.AppendUint32(nil, math.Float32bits(x)))
	case bool:
		typ(7)
		if x {
			b.WriteByte(1)
		} else {
			b.WriteByte(0)
		}
	case string:
		typ(8)
		b.Write(le.AppendUint64(nil, uint64(len(x))))
		b.WriteString(x)
	case uint64:
		typ(10)
		b.Write(le.AppendUint64(nil, x))
	case int64:
		typ(11)
		b.Write(le.AppendUint64(nil, uint64(x)))
	case float64:
		typ(12)
		b.Write(le.AppendUint64(nil, math.Float64bits(x)))
	case []string:
		arr(8, len(x))
		return encodeAll(b, x)
	case []float32:
		arr(6, len(x))
		return encodeAll(b, x)
	case []int32:
		arr(5, len(x))
		return encodeAll(b, x)
	case []uint32:
		arr(4, len(x))
		return encodeAll(b, x)
	case []uint8:
		arr(0, len(x))
		return encodeAll(b, x)
	case []int64:
		arr(11, len(x))
		return encodeAll(b, x)
	case []uint64:
		arr(10, len(x))
		return encodeAll(b, x)
	case []float64:
		arr(12, len(x))
		return encodeAll(b, x)
	case []bool:
		arr(7, len(x))
		return encodeAll(b, x)
	default:
		return fmt.Errorf("cannot encode %T as a GGUF value", v)
	}
	return nil
}

func encodeAll[T any](b *bytes.Buffer, xs []T) error {
	for _, x := range xs {
		if err := encodeGGUFValue(b, x, false); err != nil {
			return err
		}
	}
	return nil
}
