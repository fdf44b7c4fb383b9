// Package weights turns model files into named, shape-checked tensors.
//
// It reads llama2.c "legacy v0" checkpoints, GGUF v3 files and Hugging Face
// checkpoint folders (config.json + safetensors). Weight files are
// memory-mapped; tensors are views into the mapping in their stored dtype.
// The package does no model math: it hands layers a Model whose fields are
// raw tensors plus the hyperparameters needed to interpret them.
package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
	"unsafe"

	"github.com/star-attn/star/weights/tokenizer"
)

// DType is the element type of a stored tensor: a plain number type
// (F32, F16, BF16) or one of ggml's block-quantized types, whose weights
// come in blocks of BlockElems sharing scales, stored as ggml defines them
// (ggml-common.h):
//
//	Q8_0  32 weights in 34 bytes: fp16 d, 32 int8 q; w = d·q
//	Q4_0  32 weights in 18 bytes: fp16 d, 16 bytes of nibbles (low
//	      nibbles weights 0-15, high nibbles 16-31); w = d·(q-8)
//	Q4_K  256 weights in 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit
//	      scales and mins of 8 sub-blocks of 32, 128 bytes of nibbles;
//	      w = d·scale_j·q - dmin·min_j
//	Q5_K  256 weights in 176 bytes: as Q4_K plus 32 bytes of fifth bits
//	Q6_K  256 weights in 210 bytes: 128 bytes of low 4 bits, 64 of high 2
//	      bits, 16 int8 scales of sub-blocks of 16, fp16 d; w = d·scale·(q-32)
//
// Package weights only stores and checks them (block geometry, byte
// ranges); dequantizing them is math, done by package layers.
type DType int

const (
	F32 DType = iota
	F16
	BF16
	Q8_0
	Q4_0
	Q4_K
	Q5_K
	Q6_K
)

// dtypeInfo is a dtype's name and block geometry.
type dtypeInfo struct {
	name         string
	elems, bytes int // weights per block, bytes per block
}

var dtypes = [...]dtypeInfo{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, BF16: {"BF16", 1, 2},
	Q8_0: {"Q8_0", 32, 34}, Q4_0: {"Q4_0", 32, 18},
	Q4_K: {"Q4_K", 256, 144}, Q5_K: {"Q5_K", 256, 176}, Q6_K: {"Q6_K", 256, 210},
}

// DTypes lists every dtype star reads, plain types first.
func DTypes() []DType { return []DType{F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K} }

// QuantTypes lists the block-quantized dtypes.
func QuantTypes() []DType { return []DType{Q8_0, Q4_0, Q4_K, Q5_K, Q6_K} }

// Valid reports whether d is one of the dtypes above.
func (d DType) Valid() bool { return d >= 0 && int(d) < len(dtypes) }

func (d DType) String() string {
	if d.Valid() {
		return dtypes[d].name
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Quantized reports whether d is a block-quantized type.
func (d DType) Quantized() bool { return d.Valid() && dtypes[d].elems > 1 }

// BlockElems is the number of weights per block (1 for plain types).
func (d DType) BlockElems() int { return dtypes[d].elems }

// BlockBytes is the number of bytes per block (the element size for
// plain types).
func (d DType) BlockBytes() int { return dtypes[d].bytes }

// Size is the number of bytes of one element of a plain type. It panics
// for a block-quantized type, whose elements have no size of their own:
// use RowBytes or Bytes.
func (d DType) Size() int {
	if d.Quantized() || !d.Valid() {
		panic("weights: Size() of " + d.String() + ": use RowBytes or Bytes")
	}
	return dtypes[d].bytes
}

// RowBytes is the bytes of a row of cols weights (cols a multiple of
// BlockElems).
func (d DType) RowBytes(cols int) int { return cols / dtypes[d].elems * dtypes[d].bytes }

// Bytes is the bytes of n weights stored in rows whose length is a
// multiple of BlockElems.
func (d DType) Bytes(n int64) int64 { return n / int64(dtypes[d].elems) * int64(dtypes[d].bytes) }

// Tensor is a named, typed view of little-endian bytes (usually an mmap).
type Tensor struct {
	Name  string
	DType DType
	Shape []int  // row-major, outermost first; a matrix is [rows=out, cols=in]
	Data  []byte // len = Bytes(): DType.RowBytes(Cols()) per row
}

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Rows and Cols of a 2-D tensor.
func (t *Tensor) Rows() int { return t.Shape[0] }
func (t *Tensor) Cols() int { return t.Shape[len(t.Shape)-1] }

// F32 returns the tensor's data as []float32 without copying. It panics
// unless DType is F32; use Floats for a converting accessor.
func (t *Tensor) F32() []float32 {
	if t.DType != F32 {
		panic("weights: F32() on " + t.DType.String() + " tensor " + t.Name)
	}
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
}

// U16 returns F16/BF16 data as []uint16 without copying.
func (t *Tensor) U16() []uint16 {
	if t.DType != F16 && t.DType != BF16 {
		panic("weights: U16() on " + t.DType.String() + " tensor " + t.Name)
	}
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), len(t.Data)/2)
}

// Floats returns the whole tensor as float32: a view for F32, a fresh
// converted copy for F16 and BF16. Meant for small tensors (norm weights).
// It panics for a quantized tensor (see RowsTo).
func (t *Tensor) Floats() []float32 {
	if t.DType == F32 {
		return t.F32()
	}
	out := make([]float32, t.Numel())
	t.RowsTo(out, 0, t.Numel()/t.Cols())
	return out
}

// RowsTo converts rows [r0, r0+n) of a matrix of a plain dtype into
// dst[n*cols]. It panics for a quantized tensor: dequantizing is math,
// done by package layers (layers.RowsTo reads every dtype).
func (t *Tensor) RowsTo(dst []float32, r0, n int) {
	cols := t.Cols()
	lo, hi := r0*cols, (r0+n)*cols
	switch t.DType {
	case F32:
		copy(dst[:hi-lo], t.F32()[lo:hi])
	case F16:
		src := t.U16()[lo:hi]
		for i, h := range src {
			dst[i] = F16ToF32(h)
		}
	case BF16:
		src := t.U16()[lo:hi]
		for i, h := range src {
			dst[i] = BF16ToF32(h)
		}
	default:
		panic("weights: RowsTo on " + t.DType.String() + " tensor " + t.Name + ": use layers.RowsTo")
	}
}

// Row is the bytes of row r of a matrix (any dtype).
func (t *Tensor) Row(r int) []byte {
	rb := t.DType.RowBytes(t.Cols())
	return t.Data[r*rb : (r+1)*rb]
}

// BF16ToF32 widens a bfloat16.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds to nearest even.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f { // NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE half.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: normalise
		e := uint32(127 - 15 + 1)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		man &= 0x3ff
		return math.Float32frombits(sign | e<<23 | man<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// F32ToF16 rounds to nearest even (used by tests and dummy weights).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	man := b & 0x7fffff
	if b&0x7fffffff > 0x7f800000 {
		return sign | 0x7e00
	}
	if exp >= 0x1f {
		return sign | 0x7c00
	}
	if exp <= 0 {
		if exp < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - exp)
		half := uint32(1) << (shift - 1)
		r := man >> shift
		rem := man & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(exp)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}

// RopeScaling is Llama 3's frequency-dependent RoPE scaling.
type RopeScaling struct {
	Type           string  // "llama3"
	Factor         float64 // e.g. 8 (3.1) or 32 (3.2)
	LowFreqFactor  float64 // e.g. 1
	HighFreqFactor float64 // e.g. 4
	OriginalMaxPos int     // e.g. 8192
}

// Llama3RopeFactors returns, for each rotary frequency i < headDim/2, the
// divisor Llama 3 scaling applies to theta^(-2i/headDim) (Hugging Face
// transformers' _compute_llama3_parameters): 1 for wavelengths below
// OriginalMaxPos/HighFreqFactor, Factor above OriginalMaxPos/LowFreqFactor,
// and in between the inverse of the blend (1-smooth)/Factor + smooth. It is
// what llama.cpp stores in a GGUF file's RopeFreqs tensor, and the only
// place the blend is written: layers.RopeFreqs divides by it, the GGUF
// loader checks the file's tensor against it.
func Llama3RopeFactors(rs *RopeScaling, theta float64, headDim int) []float64 {
	out := make([]float64, headDim/2)
	lowWavelen := float64(rs.OriginalMaxPos) / rs.LowFreqFactor
	highWavelen := float64(rs.OriginalMaxPos) / rs.HighFreqFactor
	for i := range out {
		freq := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highWavelen:
			out[i] = 1
		case wavelen > lowWavelen:
			out[i] = rs.Factor
		default:
			smooth := (float64(rs.OriginalMaxPos)/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			out[i] = 1 / ((1-smooth)/rs.Factor + smooth)
		}
	}
	return out
}

// Config holds the hyperparameters of a Llama-family model.
type Config struct {
	Arch        string       // "llama"
	Dim         int          // model width
	HiddenDim   int          // MLP width
	NLayers     int          // transformer blocks
	NHeads      int          // query heads
	NKVHeads    int          // key/value heads (GQA)
	HeadDim     int          // per-head width; usually Dim/NHeads
	VocabSize   int          // rows of the embedding and classifier
	SeqLen      int          // context length the model was trained for
	NormEps     float32      // RMSNorm epsilon
	RopeTheta   float64      // RoPE base
	RopeScaling *RopeScaling // nil: none
	// RopeHalfSplit: the rotary pairs are (i, i+d/2) as in Hugging Face
	// checkpoints; false: adjacent pairs (2i, 2i+1) as in llama2.c and GGUF.
	RopeHalfSplit  bool
	TiedEmbeddings bool // the classifier is the token embedding
}

// KVDim is the width of one token's keys (or values) in one layer.
func (c *Config) KVDim() int { return c.NKVHeads * c.HeadDim }

// QDim is the width of one token's queries in one layer.
func (c *Config) QDim() int { return c.NHeads * c.HeadDim }

// Check reports hyperparameters that cannot describe a working model.
func (c *Config) Check() error {
	type kv struct {
		name string
		v    int
	}
	for _, f := range []kv{{"dim", c.Dim}, {"hidden_dim", c.HiddenDim}, {"n_layers", c.NLayers},
		{"n_heads", c.NHeads}, {"n_kv_heads", c.NKVHeads}, {"head_dim", c.HeadDim}, {"vocab_size", c.VocabSize}} {
		if f.v <= 0 || f.v > 1<<24 {
			return fmt.Errorf("model config: %s = %d is out of range", f.name, f.v)
		}
	}
	if c.NHeads%c.NKVHeads != 0 {
		return fmt.Errorf("model config: n_heads %d is not a multiple of n_kv_heads %d", c.NHeads, c.NKVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("model config: head_dim %d must be even for RoPE", c.HeadDim)
	}
	if !(c.NormEps > 0) || !(c.RopeTheta > 0) {
		return fmt.Errorf("model config: norm eps %g and rope theta %g must be positive", c.NormEps, c.RopeTheta)
	}
	if c.SeqLen <= 0 || c.SeqLen > MaxContextLength {
		return fmt.Errorf("model config: context length %d is out of range (1 to %d)", c.SeqLen, MaxContextLength)
	}
	return nil
}

// Layer holds one transformer block's weights. Matrices are [out, in];
// each tensor's names and shape are declared in layerTensors (schema.go).
type Layer struct {
	AttnNorm Tensor // RMSNorm before attention
	WQ       Tensor // queries
	WK       Tensor // keys
	WV       Tensor // values
	WO       Tensor // attention output
	FFNNorm  Tensor // RMSNorm before the MLP
	W1       Tensor // MLP gate
	W2       Tensor // MLP down
	W3       Tensor // MLP up
}

// Model is a loaded checkpoint: hyperparameters, tensors and (when the
// format carries one) its tokenizer.
type Model struct {
	Config Config
	Format string // "llama2c", "gguf", "hf", "dummy"
	Path   string
	// The model-level tensors (names and shapes in schema.go).
	TokEmb    Tensor // token embedding
	Layers    []Layer
	FinalNorm Tensor // RMSNorm before the classifier
	Output    Tensor // classifier; shares TokEmb's data when tied
	// Tokenizer found with the model (GGUF metadata, tokenizer.json in an
	// HF folder, tokenizer.bin beside a llama2.c checkpoint); may be nil.
	Tokenizer tokenizer.Tokenizer
	// Fingerprint identifies the weights (format, config and a hash of
	// sampled bytes); equal fingerprints mean equal models across ranks.
	Fingerprint string
	// ShapeOnly: the tensors have names, dtypes and shapes but no data
	// (DummyShape, for sizing); such a model must not be computed with.
	ShapeOnly bool

	unmap []func() error
}

// Close releases the memory mappings. Tensors must not be used afterwards.
func (m *Model) Close() error {
	var first error
	for _, f := range m.unmap {
		if err := f(); err != nil && first == nil {
			first = err
		}
	}
	m.unmap = nil
	return first
}

// dtypeList names the dtypes star reads, for messages.
func dtypeList() string {
	var b strings.Builder
	for i, d := range DTypes() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// WeightTypes describes the dtypes of the model's matrices (norms
// excluded): "Q8_0" when they share one, else "mixed Q4_K/Q6_K", the
// dtypes ordered by the weights they hold, most first.
func (m *Model) WeightTypes() string {
	count := map[DType]int64{}
	m.eachStored(func(t *Tensor) {
		if len(t.Shape) == 2 {
			count[t.DType] += int64(t.Numel())
		}
	})
	var ds []DType
	for d := range count {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool {
		if count[ds[i]] != count[ds[j]] {
			return count[ds[i]] > count[ds[j]]
		}
		return ds[i] < ds[j]
	})
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.String()
	}
	if len(names) == 1 {
		return names[0]
	}
	return "mixed " + strings.Join(names, "/")
}

// DType is the dtype of the model's largest matrices.
func (m *Model) DType() DType {
	if len(m.Layers) > 0 {
		return m.Layers[0].WQ.DType
	}
	return m.TokEmb.DType
}

// ParamCount counts parameters (the tied classifier once).
func (m *Model) ParamCount() int64 {
	var n int64
	m.eachStored(func(t *Tensor) { n += int64(t.Numel()) })
	return n
}

// eachStored calls f for each tensor with data of its own: all but a tied
// classifier.
func (m *Model) eachStored(f func(t *Tensor)) {
	m.Walk(CheckOrder, func(s *TensorSpec, _ int, t *Tensor) error {
		if !(s.Classifier && m.Config.TiedEmbeddings) {
			f(t)
		}
		return nil
	})
}

// Bytes is the size of the tensor's data from its dtype and shape (equal
// to len(Data) for a validated tensor; also for a ShapeOnly model's).
func (t *Tensor) Bytes() int64 { return t.DType.Bytes(int64(t.Numel())) }

// WeightBytes is the memory taken by all tensors (the tied classifier once).
func (m *Model) WeightBytes() int64 {
	var n int64
	m.eachStored(func(t *Tensor) { n += t.Bytes() })
	return n
}

// DecodeBytes is the weight bytes one decode step reads: every layer, the
// final norm and the output projection (the token embedding table when
// tied), but of an untied embedding table only the token's row.
func (m *Model) DecodeBytes() int64 {
	n := m.WeightBytes()
	if !m.Config.TiedEmbeddings && m.TokEmb.Rows() > 0 {
		n -= m.TokEmb.Bytes() - m.TokEmb.Bytes()/int64(m.TokEmb.Rows())
	}
	return n
}

// DecodeData is the memory one decode step reads, tensor by tensor: what
// DecodeBytes counts (of an untied embedding table its first row, as
// the token's). Tensors without data (a ShapeOnly model's) are left out.
func (m *Model) DecodeData() [][]byte {
	var out [][]byte
	m.eachStored(func(t *Tensor) {
		if t == nil {
			return
		}
		n := t.Bytes()
		if t == &m.TokEmb && !m.Config.TiedEmbeddings && t.Rows() > 0 {
			n /= int64(t.Rows())
		}
		if n > 0 && int64(len(t.Data)) >= n {
			out = append(out, t.Data[:n])
		}
	})
	return out
}

// Validate checks every tensor's presence, dtype, shape and byte length
// against the config, naming the first offending tensor.
func (m *Model) Validate() error {
	c := &m.Config
	if err := c.Check(); err != nil {
		return err
	}
	if len(m.Layers) != c.NLayers {
		return fmt.Errorf("model has %d layers of tensors, config says %d", len(m.Layers), c.NLayers)
	}
	return m.Walk(CheckOrder, func(s *TensorSpec, layer int, t *Tensor) error {
		err := m.checkTensor(t, s.Shape(c))
		if err != nil && layer >= 0 {
			return fmt.Errorf("layer %d: %w", layer, err)
		}
		return err
	})
}

// checkTensor checks one tensor against the shape the config gives it.
func (m *Model) checkTensor(t *Tensor, want []int) error {
	if t.Name == "" && t.Data == nil {
		return fmt.Errorf("tensor missing (expected shape %v)", want)
	}
	if len(t.Shape) != len(want) {
		return fmt.Errorf("tensor %q has shape %v, expected %v", t.Name, t.Shape, want)
	}
	for i := range want {
		if t.Shape[i] != want[i] {
			return fmt.Errorf("tensor %q has shape %v, expected %v", t.Name, t.Shape, want)
		}
	}
	if !t.DType.Valid() {
		return fmt.Errorf("tensor %q has unsupported dtype %v (supported: %s)", t.Name, t.DType, dtypeList())
	}
	if be := t.DType.BlockElems(); t.Cols()%be != 0 {
		return fmt.Errorf("tensor %q: rows of %d weights are not whole %v blocks of %d; the file is corrupt",
			t.Name, t.Cols(), t.DType, be)
	}
	if int64(len(t.Data)) != t.Bytes() && !(m.ShapeOnly && t.Data == nil) {
		return fmt.Errorf("tensor %q: %d bytes of data for %v %v (need %d); the file is truncated or corrupt",
			t.Name, len(t.Data), t.DType, t.Shape, t.Bytes())
	}
	return nil
}

// le is the byte order of every format we read.
var le = binary.LittleEndian
