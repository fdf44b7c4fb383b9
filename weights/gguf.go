package weights

// GGUF reader (versions 2 and 3, little-endian) for the "llama"
// architecture. The layout is:
//
//	"GGUF", uint32 version, uint64 tensor_count, uint64 kv_count,
//	kv_count × (string key, uint32 value type, value),
//	tensor_count × (string name, uint32 n_dims, uint64 dims[n_dims],
//	                uint32 ggml type, uint64 offset),
//	padding to general.alignment, then the data section.
//
// Strings are uint64 length + bytes. dims are innermost first (ne[0] is the
// number of columns), so the row-major Shape is dims reversed. Tensor
// offsets are relative to the start of the data section.
//
// GGUF "llama" stores wq/wk in the adjacent-pair RoPE layout (llama.cpp's
// HF converter permutes Hugging Face's half-split rows into it), so models
// loaded from GGUF have RopeHalfSplit = false.

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/star-attn/star/weights/tokenizer"
)

// GGUF metadata value types.
const (
	ggufTypeU8        = 0
	ggufTypeI8        = 1
	ggufTypeU16       = 2
	ggufTypeI16       = 3
	ggufTypeU32       = 4
	ggufTypeI32       = 5
	ggufTypeF32       = 6
	ggufTypeBool      = 7
	ggufTypeString    = 8
	ggufTypeArray     = 9
	ggufTypeU64       = 10
	ggufTypeI64       = 11
	ggufTypeF64       = 12
	ggufMaxArrayDepth = 3 // arrays of arrays of arrays at most
)

// ggml tensor types we read (ggml type id to DType), and names of the
// others for error messages.
var ggmlDTypes = map[uint32]DType{
	0: F32, 1: F16, 30: BF16, 8: Q8_0, 2: Q4_0, 12: Q4_K, 13: Q5_K, 14: Q6_K,
}

var ggmlTypeNames = map[uint32]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
	22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
	29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

// readableTypes names the ggml types star reads, for messages: "Q8_0,
// Q4_0, Q4_K, Q5_K, Q6_K, F16, BF16 or F32".
func readableTypes() string {
	q := QuantTypes()
	names := make([]string, 0, len(q)+3)
	for _, d := range q {
		names = append(names, d.String())
	}
	names = append(names, F16.String(), BF16.String())
	return strings.Join(names, ", ") + " or " + F32.String()
}

func ggmlTypeName(t uint32) string {
	if n, ok := ggmlTypeNames[t]; ok {
		return n
	}
	return "type " + strconv.FormatUint(uint64(t), 10)
}

// MaxContextLength bounds the context length a header, config or flag may
// claim, so that consumers sizing tables by it cannot be made to allocate
// absurd amounts.
const MaxContextLength = 1 << 24

const (
	ggufDefaultAlignment = 32
	ggufMaxDims          = 4 // GGML_MAX_DIMS
)

// ggufTensorInfo is one entry of the tensor-info table.
type ggufTensorInfo struct {
	name   string
	dims   []uint64 // GGUF order: innermost first
	typ    uint32   // ggml type
	offset uint64   // relative to the data section
}

// ggufFile is a parsed GGUF header. Metadata values are Go values: uint8,
// int8, uint16, int16, uint32, int32, float32, bool, string, uint64, int64,
// float64, or for arrays a typed slice of those ([]string, []float32,
// []int32, ...) or []any for arrays of arrays.
type ggufFile struct {
	version   uint32
	kv        map[string]any
	tensors   map[string]*ggufTensorInfo
	order     []string // tensor names in table order
	alignment int64
	dataStart int64 // absolute offset of the data section
}

// ggufReader decodes the header sequentially, checking every read against
// the end of the buffer.
type ggufReader struct {
	data []byte
	off  int64
}

func (r *ggufReader) remaining() int64 { return int64(len(r.data)) - r.off }

func (r *ggufReader) bytes(n int64, what string) ([]byte, error) {
	b, err := slice(r.data, r.off, n, "GGUF header: "+what)
	if err != nil {
		return nil, err
	}
	r.off += n
	return b, nil
}

func (r *ggufReader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return le.Uint32(b), nil
}

func (r *ggufReader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return le.Uint64(b), nil
}

func (r *ggufReader) str(what string) (string, error) {
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.remaining()) {
		return "", fmt.Errorf("GGUF header: %s claims %d bytes but only %d remain in the file; the file is truncated or corrupt",
			what, n, r.remaining())
	}
	b, err := r.bytes(int64(n), what)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ggufScalarSize is the encoded size of a fixed-size value type, or 0.
func ggufScalarSize(typ uint32) int64 {
	switch typ {
	case ggufTypeU8, ggufTypeI8, ggufTypeBool:
		return 1
	case ggufTypeU16, ggufTypeI16:
		return 2
	case ggufTypeU32, ggufTypeI32, ggufTypeF32:
		return 4
	case ggufTypeU64, ggufTypeI64, ggufTypeF64:
		return 8
	}
	return 0
}

func (r *ggufReader) value(typ uint32, key string, depth int) (any, error) {
	if typ == ggufTypeString {
		return r.str("value of " + key)
	}
	if typ == ggufTypeArray {
		return r.array(key, depth)
	}
	size := ggufScalarSize(typ)
	if size == 0 {
		return nil, fmt.Errorf("GGUF metadata key %q: unknown value type %d (valid: 0-12); the file is corrupt or from a newer GGUF version", key, typ)
	}
	b, err := r.bytes(size, "value of "+key)
	if err != nil {
		return nil, err
	}
	return ggufDecodeScalar(typ, b), nil
}

func ggufDecodeScalar(typ uint32, b []byte) any {
	switch typ {
	case ggufTypeU8:
		return b[0]
	case ggufTypeI8:
		return int8(b[0])
	case ggufTypeBool:
		return b[0] != 0
	case ggufTypeU16:
		return le.Uint16(b)
	case ggufTypeI16:
		return int16(le.Uint16(b))
	case ggufTypeU32:
		return le.Uint32(b)
	case ggufTypeI32:
		return int32(le.Uint32(b))
	case ggufTypeF32:
		return math.Float32frombits(le.Uint32(b))
	case ggufTypeU64:
		return le.Uint64(b)
	case ggufTypeI64:
		return int64(le.Uint64(b))
	case ggufTypeF64:
		return math.Float64frombits(le.Uint64(b))
	}
	return nil
}

func (r *ggufReader) array(key string, depth int) (any, error) {
	if depth >= ggufMaxArrayDepth {
		return nil, fmt.Errorf("GGUF metadata key %q: arrays nested more than %d deep; the file is corrupt", key, ggufMaxArrayDepth)
	}
	typ, err := r.u32("array type of " + key)
	if err != nil {
		return nil, err
	}
	n, err := r.u64("array length of " + key)
	if err != nil {
		return nil, err
	}
	// Each element takes at least minSize bytes, so a count larger than
	// the rest of the file allows is a lie; refuse it before allocating.
	minSize := ggufScalarSize(typ)
	switch typ {
	case ggufTypeString:
		minSize = 8
	case ggufTypeArray:
		minSize = 12
	}
	if minSize == 0 {
		return nil, fmt.Errorf("GGUF metadata key %q: array of unknown value type %d; the file is corrupt", key, typ)
	}
	if n > uint64(r.remaining()/minSize) {
		return nil, fmt.Errorf("GGUF metadata key %q: array claims %d elements but only %d bytes remain in the file; the file is truncated or corrupt",
			key, n, r.remaining())
	}
	count := int(n)
	switch typ {
	case ggufTypeString:
		out := make([]string, count)
		for i := range out {
			if out[i], err = r.str(fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case ggufTypeArray:
		out := make([]any, count)
		for i := range out {
			if out[i], err = r.array(key, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	b, err := r.bytes(int64(count)*minSize, "values of "+key)
	if err != nil {
		return nil, err
	}
	return ggufDecodeArray(typ, count, b), nil
}

func ggufDecodeArray(typ uint32, n int, b []byte) any {
	switch typ {
	case ggufTypeU8:
		return append([]uint8(nil), b...)
	case ggufTypeI8:
		return decodeNums(n, 1, b, func(b []byte) int8 { return int8(b[0]) })
	case ggufTypeBool:
		return decodeNums(n, 1, b, func(b []byte) bool { return b[0] != 0 })
	case ggufTypeU16:
		return decodeNums(n, 2, b, le.Uint16)
	case ggufTypeI16:
		return decodeNums(n, 2, b, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case ggufTypeU32:
		return decodeNums(n, 4, b, le.Uint32)
	case ggufTypeI32:
		return decodeNums(n, 4, b, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case ggufTypeF32:
		return decodeNums(n, 4, b, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case ggufTypeU64:
		return decodeNums(n, 8, b, le.Uint64)
	case ggufTypeI64:
		return decodeNums(n, 8, b, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case ggufTypeF64:
		return decodeNums(n, 8, b, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
	return nil
}

func decodeNums[T any](n, size int, b []byte, dec func([]byte) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[i*size:])
	}
	return out
}

// parseGGUF decodes the header of a GGUF file held in data. It copies the
// metadata out of data; tensor data is not touched.
func parseGGUF(data []byte) (*ggufFile, error) {
	r := &ggufReader{data: data}
	g := &ggufFile{kv: map[string]any{}, tensors: map[string]*ggufTensorInfo{}, alignment: ggufDefaultAlignment}
	nTensors, nKV, err := g.readHeader(r)
	if err != nil {
		return nil, err
	}
	if err := g.readMetadata(r, nKV); err != nil {
		return nil, err
	}
	if v, ok := g.kv["general.alignment"]; ok {
		a, ok := ggufInt(v)
		if !ok || a <= 0 || a > 1<<20 || a&(a-1) != 0 {
			return nil, fmt.Errorf("GGUF metadata general.alignment = %v is invalid: it must be a power of two integer", v)
		}
		g.alignment = a
	}
	if err := g.readTensorInfos(r, nTensors); err != nil {
		return nil, err
	}
	g.dataStart = (r.off + g.alignment - 1) / g.alignment * g.alignment
	if err := g.checkRanges(int64(len(data))); err != nil {
		return nil, err
	}
	return g, nil
}

// readHeader reads the magic, the version and the two counts, refusing
// counts the file cannot hold.
func (g *ggufFile) readHeader(r *ggufReader) (nTensors, nKV uint64, err error) {
	magic, err := r.bytes(4, "magic")
	if err != nil {
		return 0, 0, err
	}
	if string(magic) != "GGUF" {
		return 0, 0, fmt.Errorf("not a GGUF file: magic is %q, expected \"GGUF\"", magic)
	}
	if g.version, err = r.u32("version"); err != nil {
		return 0, 0, err
	}
	if g.version != 2 && g.version != 3 {
		hint := ""
		if g.version == 1 {
			hint = " (GGUF v1 is obsolete; re-convert the model with a current llama.cpp)"
		} else if g.version&0xffff == 0 {
			hint = " (this looks like a big-endian GGUF; only little-endian files are supported)"
		}
		return 0, 0, fmt.Errorf("GGUF version %d is not supported, expected 2 or 3%s", g.version, hint)
	}
	if nTensors, err = r.u64("tensor count"); err != nil {
		return 0, 0, err
	}
	if nKV, err = r.u64("metadata count"); err != nil {
		return 0, 0, err
	}
	// A metadata pair takes at least 8+4+1 bytes, a tensor info 8+4+4+8.
	if nKV > uint64(r.remaining()/13) {
		return 0, 0, fmt.Errorf("GGUF header claims %d metadata entries, more than the %d-byte file can hold; the file is corrupt", nKV, len(r.data))
	}
	if nTensors > uint64(r.remaining()/24) {
		return 0, 0, fmt.Errorf("GGUF header claims %d tensors, more than the %d-byte file can hold; the file is corrupt", nTensors, len(r.data))
	}
	return nTensors, nKV, nil
}

// readMetadata reads n key/value pairs into g.kv.
func (g *ggufFile) readMetadata(r *ggufReader, n uint64) error {
	for i := uint64(0); i < n; i++ {
		key, err := r.str(fmt.Sprintf("key of metadata entry %d", i))
		if err != nil {
			return err
		}
		typ, err := r.u32("value type of " + key)
		if err != nil {
			return err
		}
		v, err := r.value(typ, key, 0)
		if err != nil {
			return err
		}
		if _, dup := g.kv[key]; dup {
			return fmt.Errorf("GGUF metadata key %q appears twice; the file is corrupt", key)
		}
		g.kv[key] = v
	}
	return nil
}

// readTensorInfos reads n entries of the tensor table.
func (g *ggufFile) readTensorInfos(r *ggufReader, n uint64) error {
	for i := uint64(0); i < n; i++ {
		name, err := r.str(fmt.Sprintf("name of tensor %d", i))
		if err != nil {
			return err
		}
		nd, err := r.u32("dimension count of tensor " + name)
		if err != nil {
			return err
		}
		if nd == 0 || nd > ggufMaxDims {
			return fmt.Errorf("GGUF tensor %q has %d dimensions; GGUF allows 1 to %d; the file is corrupt", name, nd, ggufMaxDims)
		}
		t := &ggufTensorInfo{name: name, dims: make([]uint64, nd)}
		for d := range t.dims {
			if t.dims[d], err = r.u64("dimensions of tensor " + name); err != nil {
				return err
			}
		}
		if t.typ, err = r.u32("type of tensor " + name); err != nil {
			return err
		}
		if t.offset, err = r.u64("data offset of tensor " + name); err != nil {
			return err
		}
		if _, dup := g.tensors[name]; dup {
			return fmt.Errorf("GGUF tensor %q appears twice in the tensor table; the file is corrupt", name)
		}
		g.tensors[name] = t
		g.order = append(g.order, name)
	}
	return nil
}

// ggufInt converts any integer metadata value to int64.
func ggufInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// intKey reads a non-negative integer key; ok is false when it is absent.
func (g *ggufFile) intKey(key string) (v int, ok bool, err error) {
	raw, ok := g.kv[key]
	if !ok {
		return 0, false, nil
	}
	n, isInt := ggufInt(raw)
	if !isInt || n < 0 || n > 1<<40 {
		return 0, true, fmt.Errorf("GGUF metadata %s = %v (%T) is not a valid non-negative integer", key, raw, raw)
	}
	return int(n), true, nil
}

// requiredInt reads an integer key that must be present.
func (g *ggufFile) requiredInt(key string) (int, error) {
	v, ok, err := g.intKey(key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("GGUF metadata key %s is missing; the file was not written by a llama-architecture converter or is damaged", key)
	}
	return v, nil
}

// floatKey reads a float key (any numeric type); ok is false when absent.
func (g *ggufFile) floatKey(key string) (v float64, ok bool, err error) {
	raw, ok := g.kv[key]
	if !ok {
		return 0, false, nil
	}
	switch x := raw.(type) {
	case float32:
		return float64(x), true, nil
	case float64:
		return x, true, nil
	}
	if n, isInt := ggufInt(raw); isInt {
		return float64(n), true, nil
	}
	return 0, true, fmt.Errorf("GGUF metadata %s = %v (%T) is not a number", key, raw, raw)
}

func (g *ggufFile) stringKey(key string) (v string, ok bool, err error) {
	raw, ok := g.kv[key]
	if !ok {
		return "", false, nil
	}
	s, isStr := raw.(string)
	if !isStr {
		return "", true, fmt.Errorf("GGUF metadata %s has type %T, expected a string", key, raw)
	}
	return s, true, nil
}

// tensor returns a view of the named tensor's data in data, with the
// row-major Shape (GGUF dims reversed).
func (g *ggufFile) tensor(data []byte, name string) (Tensor, error) {
	info, ok := g.tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("GGUF tensor %q is missing; the file does not hold a complete llama model", name)
	}
	dt, ok := ggmlDTypes[info.typ]
	if !ok {
		tn := "unknown"
		if n, ok := ggmlTypeNames[info.typ]; ok {
			tn = n
		}
		return Tensor{}, fmt.Errorf("tensor %s has ggml type %s (%d), which star does not read: use a %s file",
			name, tn, info.typ, readableTypes())
	}
	shape := make([]int, len(info.dims))
	numel := int64(1)
	for i, d := range info.dims {
		if d == 0 || d > uint64(len(data)) {
			return Tensor{}, fmt.Errorf("GGUF tensor %q has dimensions %v that do not fit in the %d-byte file; the header is corrupt", name, info.dims, len(data))
		}
		shape[len(shape)-1-i] = int(d)
		numel *= int64(d)
		if numel > int64(len(data)) {
			return Tensor{}, fmt.Errorf("GGUF tensor %q has dimensions %v that do not fit in the %d-byte file; the header is corrupt", name, info.dims, len(data))
		}
	}
	if info.offset > uint64(len(data)) {
		return Tensor{}, fmt.Errorf("GGUF tensor %q: data offset %d lies past the end of the %d-byte file; the file is truncated or its header is corrupt",
			name, info.offset, len(data))
	}
	if int64(info.offset)%g.alignment != 0 {
		return Tensor{}, fmt.Errorf("GGUF tensor %q: data offset %d is not a multiple of the alignment %d; the header is corrupt", name, info.offset, g.alignment)
	}
	if be := uint64(dt.BlockElems()); info.dims[0]%be != 0 {
		return Tensor{}, fmt.Errorf("GGUF tensor %q (%v %v): its rows of %d weights are not whole %v blocks of %d; the file is corrupt",
			name, dt, shape, info.dims[0], dt, be)
	}
	b, err := slice(data, g.dataStart+int64(info.offset), dt.Bytes(numel), fmt.Sprintf("GGUF tensor %q (%v %v)", name, dt, shape))
	if err != nil {
		return Tensor{}, err
	}
	return Tensor{Name: name, DType: dt, Shape: shape, Data: b}, nil
}

// config reads the llama hyperparameters from the metadata. When
// llama.vocab_size is absent the vocabulary is the row count of the token
// embedding.
func (g *ggufFile) config() (Config, error) {
	arch, ok, err := g.stringKey("general.architecture")
	if err != nil {
		return Config{}, err
	}
	if !ok {
		return Config{}, fmt.Errorf("GGUF metadata key general.architecture is missing; cannot tell what model this is")
	}
	if arch != "llama" {
		return Config{}, fmt.Errorf("unsupported architecture %q (general.architecture): only \"llama\" GGUF models are supported", arch)
	}
	c := Config{Arch: "llama", RopeTheta: 10000}
	for _, step := range []func(*Config) error{g.sizes, g.heads, g.normAndTheta, g.vocab, g.checkRopeType} {
		if err := step(&c); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// sizes reads the sizes every llama GGUF states.
func (g *ggufFile) sizes(c *Config) error {
	var err error
	for _, f := range []struct {
		key string
		dst *int
	}{
		{"llama.embedding_length", &c.Dim},
		{"llama.feed_forward_length", &c.HiddenDim},
		{"llama.block_count", &c.NLayers},
		{"llama.attention.head_count", &c.NHeads},
		{"llama.context_length", &c.SeqLen},
	} {
		if *f.dst, err = g.requiredInt(f.key); err != nil {
			return err
		}
		if *f.dst == 0 {
			return fmt.Errorf("GGUF metadata %s is 0; the file is damaged", f.key)
		}
	}
	if c.SeqLen > MaxContextLength {
		return fmt.Errorf("GGUF metadata llama.context_length = %d is beyond the supported %d; the file is corrupt", c.SeqLen, MaxContextLength)
	}
	return nil
}

// heads reads the key/value heads and the head size, with their defaults,
// and refuses value and rotary sizes other than the head size.
func (g *ggufFile) heads(c *Config) error {
	var ok bool
	var err error
	if c.NKVHeads, ok, err = g.intKey("llama.attention.head_count_kv"); err != nil {
		return err
	} else if !ok {
		c.NKVHeads = c.NHeads
	}
	if c.HeadDim, ok, err = g.intKey("llama.attention.key_length"); err != nil {
		return err
	} else if !ok {
		if c.Dim%c.NHeads != 0 {
			return fmt.Errorf("GGUF metadata: llama.embedding_length %d is not a multiple of llama.attention.head_count %d and llama.attention.key_length is absent",
				c.Dim, c.NHeads)
		}
		c.HeadDim = c.Dim / c.NHeads
	}
	if vl, ok, err := g.intKey("llama.attention.value_length"); err != nil {
		return err
	} else if ok && vl != c.HeadDim {
		return fmt.Errorf("GGUF metadata: llama.attention.value_length %d differs from the key length %d; such models are not supported", vl, c.HeadDim)
	}
	if rd, ok, err := g.intKey("llama.rope.dimension_count"); err != nil {
		return err
	} else if ok && rd != c.HeadDim {
		return fmt.Errorf("GGUF metadata: llama.rope.dimension_count %d differs from the head size %d; partial rotary embeddings are not supported", rd, c.HeadDim)
	}
	return nil
}

// normAndTheta reads the norm epsilon and the RoPE base.
func (g *ggufFile) normAndTheta(c *Config) error {
	eps, ok, err := g.floatKey("llama.attention.layer_norm_rms_epsilon")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("GGUF metadata key llama.attention.layer_norm_rms_epsilon is missing; the file is damaged")
	}
	c.NormEps = float32(eps)
	if theta, ok, err := g.floatKey("llama.rope.freq_base"); err != nil {
		return err
	} else if ok {
		c.RopeTheta = theta
	}
	return nil
}

// vocab reads the vocabulary size, by default the token embedding's rows.
func (g *ggufFile) vocab(c *Config) error {
	var ok bool
	var err error
	if c.VocabSize, ok, err = g.intKey("llama.vocab_size"); err != nil {
		return err
	} else if !ok {
		if emb := g.tensors[tokEmbTensor.GGUF]; emb != nil && len(emb.dims) == 2 && emb.dims[1] <= 1<<40 {
			c.VocabSize = int(emb.dims[1])
		}
	}
	return nil
}

// checkRopeType refuses RoPE scaling stated in metadata other than none
// (Llama 3's is recognised from RopeFreqs by ropeScaling).
func (g *ggufFile) checkRopeType(*Config) error {
	st, ok, err := g.stringKey("llama.rope.scaling.type")
	if err != nil {
		return err
	}
	if ok && st != "none" && st != "" {
		factor, _, err := g.floatKey("llama.rope.scaling.factor")
		if err != nil {
			return err
		}
		if !(st == "linear" && factor == 1) {
			return fmt.Errorf("GGUF metadata llama.rope.scaling.type = %q (factor %g) is not supported; only unscaled RoPE and Llama 3 scaling (%s) are", st, factor, RopeFreqs.GGUF)
		}
	}
	return nil
}

// ggufModel builds a Model over data from its parsed header. The tensors
// are views into data.
func ggufModel(g *ggufFile, data []byte) (*Model, error) {
	c, err := g.config()
	if err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("GGUF hyperparameters: %w", err)
	}
	// Refuse a block count the tensor table cannot back before allocating
	// the layers (Check allows up to 2^24).
	if c.NLayers > len(g.tensors)/len(layerTensors) {
		return nil, fmt.Errorf("GGUF metadata llama.block_count = %d but the file has only %d tensors (%d per block needed); the file is incomplete or corrupt",
			c.NLayers, len(g.tensors), len(layerTensors))
	}
	m := &Model{Config: c, Format: "gguf", Layers: make([]Layer, c.NLayers)}
	err = m.Walk(LoadOrder, func(s *TensorSpec, layer int, t *Tensor) error {
		name := s.GGUFName(layer)
		switch {
		case s == RopeFreqs:
			return nil // read by ropeScaling, once the layers are in
		case s.Classifier && g.tensors[name] == nil:
			m.Config.TiedEmbeddings = true
			*t = m.TokEmb
			return nil
		}
		var err error
		*t, err = g.tensor(data, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.Config.RopeScaling, err = g.ropeScaling(data, m.Config); err != nil {
		return nil, err
	}
	return m, nil
}

// ropeScaling recognises Llama 3 RoPE scaling. llama.cpp's converter does
// not record its parameters in metadata; it writes RopeFreqs, the
// per-frequency divisors computed from them. We match those divisors
// against Llama 3's formula with the parameters Llama 3.1/3.2 use
// (low_freq_factor 1, high_freq_factor 4, original context 8192, factor =
// the largest divisor) and refuse anything else rather than run a model
// with the wrong positions.
func (g *ggufFile) ropeScaling(data []byte, c Config) (*RopeScaling, error) {
	name := RopeFreqs.GGUF
	if _, ok := g.tensors[name]; !ok {
		return nil, nil
	}
	t, err := g.tensor(data, name)
	if err != nil {
		return nil, err
	}
	if t.DType != F32 || len(t.Shape) != 1 || t.Shape[0] != c.HeadDim/2 {
		return nil, fmt.Errorf("GGUF tensor %q is %v %v, expected F32 [%d] (one factor per rotary frequency)", name, t.DType, t.Shape, c.HeadDim/2)
	}
	got := t.Floats()
	factor := 1.0
	for _, f := range got {
		factor = math.Max(factor, float64(f))
	}
	if factor == 1 {
		return nil, nil // all ones: no scaling
	}
	rs := &RopeScaling{Type: "llama3", Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	if orig, ok, err := g.intKey("llama.rope.scaling.original_context_length"); err != nil {
		return nil, err
	} else if ok && orig > 0 {
		rs.OriginalMaxPos = orig
	}
	want := Llama3RopeFactors(rs, c.RopeTheta, c.HeadDim)
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-4*want[i] {
			return nil, fmt.Errorf("GGUF tensor %q: factor %d is %g but Llama 3 RoPE scaling (factor %g, low_freq_factor 1, high_freq_factor 4, original context %d) gives %g; this RoPE variant is not supported",
				name, i, got[i], rs.Factor, rs.OriginalMaxPos, want[i])
		}
	}
	return rs, nil
}

func loadGGUF(path string) (*Model, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	m, err := loadGGUFData(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.unmap = append(m.unmap, unmap)
	return m, nil
}

func loadGGUFData(data []byte) (*Model, error) {
	g, err := parseGGUF(data)
	if err != nil {
		return nil, err
	}
	m, err := ggufModel(g, data)
	if err != nil {
		return nil, err
	}
	spec, err := g.tokenizerSpec()
	if err != nil {
		return nil, err
	}
	if spec != nil {
		if len(spec.tokens) > m.Config.VocabSize {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.tokens has %d tokens but the model's vocabulary has %d rows; the file is inconsistent",
				len(spec.tokens), m.Config.VocabSize)
		}
		if m.Tokenizer, err = spec.build(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func loadGGUFTokenizer(path string) (tokenizer.Tokenizer, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	defer unmap()
	g, err := parseGGUF(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	spec, err := g.tokenizerSpec()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if spec == nil {
		return nil, fmt.Errorf("%s: GGUF file has no tokenizer (metadata key tokenizer.ggml.model is missing); pass a tokenizer file instead", path)
	}
	tok, err := spec.build()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// ggufTokenizerSpec is the vocabulary described by tokenizer.ggml.* keys.
type ggufTokenizerSpec struct {
	model          string // "llama" or "gpt2"
	tokens         []string
	scores         []float32
	types          []int32
	merges         []string
	bos, eos       int
	addSpacePrefix bool
	pre            string
}

// tokenizerSpec reads the tokenizer metadata; nil when there is none.
func (g *ggufFile) tokenizerSpec() (*ggufTokenizerSpec, error) {
	model, ok, err := g.stringKey("tokenizer.ggml.model")
	if err != nil || !ok {
		return nil, err
	}
	s := &ggufTokenizerSpec{model: model, bos: -1, eos: -1, addSpacePrefix: true}
	if model != "llama" && model != "gpt2" {
		return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.model = %q is not supported; supported: \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE)", model)
	}
	toks, ok := g.kv["tokenizer.ggml.tokens"].([]string)
	if !ok {
		return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.tokens is missing or not an array of strings")
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.tokens is empty")
	}
	s.tokens = toks
	if raw, ok := g.kv["tokenizer.ggml.scores"]; ok {
		if s.scores, ok = raw.([]float32); !ok {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.scores has type %T, expected an array of float32", raw)
		}
		if len(s.scores) != len(toks) {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.scores has %d entries for %d tokens", len(s.scores), len(toks))
		}
	}
	if raw, ok := g.kv["tokenizer.ggml.token_type"]; ok {
		if s.types, ok = ggufInt32s(raw); !ok {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.token_type has type %T, expected an array of integers", raw)
		}
		if len(s.types) != len(toks) {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.token_type has %d entries for %d tokens", len(s.types), len(toks))
		}
	}
	if raw, ok := g.kv["tokenizer.ggml.merges"]; ok {
		if s.merges, ok = raw.([]string); !ok {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.merges has type %T, expected an array of strings", raw)
		}
	}
	for _, e := range []struct {
		key string
		dst *int
	}{{"tokenizer.ggml.bos_token_id", &s.bos}, {"tokenizer.ggml.eos_token_id", &s.eos}} {
		raw, ok := g.kv[e.key]
		if !ok {
			continue
		}
		id, isInt := ggufInt(raw)
		if !isInt || id < 0 || id >= int64(len(toks)) {
			return nil, fmt.Errorf("GGUF metadata %s = %v is not a token id (the vocabulary has %d tokens)", e.key, raw, len(toks))
		}
		*e.dst = int(id)
	}
	if raw, ok := g.kv["tokenizer.ggml.add_space_prefix"]; ok {
		b, isBool := raw.(bool)
		if !isBool {
			return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.add_space_prefix has type %T, expected bool", raw)
		}
		s.addSpacePrefix = b
	}
	if s.pre, _, err = g.stringKey("tokenizer.ggml.pre"); err != nil {
		return nil, err
	}
	if model == "gpt2" && len(s.merges) == 0 {
		return nil, fmt.Errorf("GGUF metadata tokenizer.ggml.merges is missing; a \"gpt2\" tokenizer needs its BPE merges")
	}
	return s, nil
}

// build constructs the tokenizer (the only place GGUF reading calls into
// package tokenizer).
func (s *ggufTokenizerSpec) build() (tokenizer.Tokenizer, error) {
	var tok tokenizer.Tokenizer
	var err error
	switch s.model {
	case "llama":
		tok, err = tokenizer.NewSentencePiece(s.tokens, s.scores, s.types, s.bos, s.eos, s.addSpacePrefix)
	case "gpt2":
		tok, err = tokenizer.NewGPT2BPE(s.tokens, s.merges, s.types, s.bos, s.eos, s.pre)
	default:
		err = fmt.Errorf("tokenizer model %q is not supported", s.model)
	}
	if err != nil {
		return nil, fmt.Errorf("GGUF tokenizer (tokenizer.ggml.model %q): %w", s.model, err)
	}
	return tok, nil
}

// ggufInt32s converts an integer array of any width to []int32.
func ggufInt32s(v any) ([]int32, bool) {
	switch x := v.(type) {
	case []int32:
		return x, true
	case []uint32:
		return convertInts(x)
	case []int64:
		return convertInts(x)
	case []uint64:
		return convertInts(x)
	case []int16:
		return convertInts(x)
	case []uint16:
		return convertInts(x)
	case []int8:
		return convertInts(x)
	case []uint8:
		return convertInts(x)
	}
	return nil, false
}

func convertInts[T int8 | uint8 | int16 | uint16 | uint32 | int64 | uint64](in []T) ([]int32, bool) {
	out := make([]int32, len(in))
	for i, v := range in {
		w := int32(v)
		if T(w) != v || (v > 0) != (w > 0) { // does not fit in int32
			return nil, false
		}
		out[i] = w
	}
	return out, true
}

// GGUFMetadata reads the metadata pairs of the GGUF file at path (key to
// value: numbers, strings and slices of them, as decoded) and its keys,
// sorted. Tools use it to carry a file's tokenizer into another file.
func GGUFMetadata(path string) (keys []string, kv map[string]any, err error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, nil, err
	}
	defer unmap()
	r := &ggufReader{data: data}
	g := &ggufFile{kv: map[string]any{}, tensors: map[string]*ggufTensorInfo{}}
	_, nKV, err := g.readHeader(r)
	if err == nil {
		err = g.readMetadata(r, nKV)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for k := range g.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, g.kv, nil
}
