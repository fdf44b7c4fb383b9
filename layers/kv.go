package layers

import (
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/star-attn/star/weights"
)

// K/V storage. A K/V cache holds the keys and values of a run of tokens in
// one element type (F32, or F16/BF16 as raw 16-bit words: half the memory
// and half the bytes a decode step reads) and, per layer, head-major:
// [HKV][Cap][D], so that one kv head's keys are one contiguous run that a
// decode step streams. Attention reads K/V through a KVSpan, which also
// describes the token-major layout [nk][HKV*D] of a forward pass's fresh
// projections. The query and every product stay float32.

// KVDTypes are the element types a K/V cache may have.
var KVDTypes = []weights.DType{weights.F32, weights.F16, weights.BF16}

// KVDTypeName is a K/V dtype's name as flags and files spell it ("f16").
func KVDTypeName(dt weights.DType) string { return strings.ToLower(dt.String()) }

// ParseKVDType reads a K/V dtype's name: f32, f16 or bf16.
func ParseKVDType(s string) (weights.DType, error) {
	for _, dt := range KVDTypes {
		if strings.EqualFold(s, KVDTypeName(dt)) {
			return dt, nil
		}
	}
	return 0, fmt.Errorf("unknown K/V dtype %q: use f32, f16 or bf16", s)
}

// KVSpan is the keys or the values that an attention call reads: element
// (kv head h, token j, d) at h*HeadStride + j*TokStride + d of F (DType
// F32) or H (F16 or BF16, raw bits).
type KVSpan struct {
	DType      weights.DType
	F          []float32
	H          []uint16
	HeadStride int
	TokStride  int
}

// TokenMajor is x [nk][HKV*D] (float32, token-major) as a span.
func TokenMajor(x []float32, s AttnShape) KVSpan {
	return KVSpan{DType: weights.F32, F: x, HeadStride: s.D, TokStride: s.HKV * s.D}
}

// elems is the number of elements the span's storage holds.
func (sp *KVSpan) elems() int {
	if sp.DType == weights.F32 {
		return len(sp.F)
	}
	return len(sp.H)
}

// check panics unless the span holds nk tokens of shape s.
func (sp *KVSpan) check(nk int, s AttnShape, what string) {
	if nk == 0 {
		return
	}
	if (sp.DType == weights.F32) != (sp.H == nil) || sp.TokStride < s.D || sp.HeadStride < 0 {
		panic(fmt.Sprintf("layers: attention %s: bad span (%v, strides %d/%d)", what, sp.DType, sp.HeadStride, sp.TokStride))
	}
	if need := (s.HKV-1)*sp.HeadStride + (nk-1)*sp.TokStride + s.D; sp.elems() < need {
		panic(fmt.Sprintf("layers: attention %s: %d elements hold fewer than %d tokens", what, sp.elems(), nk))
	}
}

// Row widens the D elements of (head h, token j) into dst [D].
func (sp *KVSpan) Row(dst []float32, h, j int) {
	o := h*sp.HeadStride + j*sp.TokStride
	switch sp.DType {
	case weights.F32:
		copy(dst, sp.F[o:o+len(dst)])
	case weights.F16:
		for d, x := range sp.H[o : o+len(dst)] {
			dst[d] = weights.F16ToF32(x)
		}
	default:
		for d, x := range sp.H[o : o+len(dst)] {
			dst[d] = weights.BF16ToF32(x)
		}
	}
}

// KVBuf is one layer's keys (or values) of up to Cap tokens, head-major:
// element (head h, token j, d) at h*Cap*D + j*D + d, in DType. Len tokens
// are held.
type KVBuf struct {
	DType    weights.DType
	F        []float32 // F32
	H        []uint16  // F16, BF16
	Cap, Len int
	HKV, D   int
}

// NewKVBuf makes an empty buffer for capacity tokens of hkv heads of d.
func NewKVBuf(dt weights.DType, capacity, hkv, d int) *KVBuf {
	b := &KVBuf{DType: dt, Cap: capacity, HKV: hkv, D: d}
	if dt == weights.F32 {
		b.F = make([]float32, capacity*hkv*d)
	} else {
		b.H = make([]uint16, capacity*hkv*d)
	}
	return b
}

// KVBufBytes is the memory NewKVBuf(dt, capacity, hkv, d) takes.
func KVBufBytes(dt weights.DType, capacity, hkv, d int) int64 {
	return int64(capacity) * int64(hkv) * int64(d) * int64(dt.Size())
}

// Bytes is the memory the buffer holds (its capacity).
func (b *KVBuf) Bytes() int64 { return KVBufBytes(b.DType, b.Cap, b.HKV, b.D) }

// Span is tokens [j0, j1) as attention reads them.
func (b *KVBuf) Span(j0, j1 int) KVSpan {
	sp := KVSpan{DType: b.DType, HeadStride: b.Cap * b.D, TokStride: b.D}
	if j1 <= j0 {
		return KVSpan{DType: b.DType, F: b.F[:0:0], H: b.H[:0:0], HeadStride: sp.HeadStride, TokStride: b.D}
	}
	lo, hi := j0*b.D, (b.HKV-1)*b.Cap*b.D+j1*b.D
	if b.DType == weights.F32 {
		sp.F = b.F[lo:hi]
	} else {
		sp.H = b.H[lo:hi]
	}
	return sp
}

// All is the span of the tokens held.
func (b *KVBuf) All() KVSpan { return b.Span(0, b.Len) }

// TokenMajor writes tokens [0, n) of b into dst [n][HKV*D], token-major
// float32 (the layout of a forward pass's fresh keys and values).
func (b *KVBuf) TokenMajor(dst []float32, n int) {
	sp := b.Span(0, n)
	kvd := b.HKV * b.D
	for j := 0; j < n; j++ {
		for h := 0; h < b.HKV; h++ {
			sp.Row(dst[j*kvd+h*b.D:j*kvd+(h+1)*b.D], h, j)
		}
	}
}

// Append stores n tokens' rows x [n][HKV*D] (token-major float32, as a
// forward pass makes them) after the tokens held, rounded to the buffer's
// dtype (F16: nearest even, saturating at ±65504 so that no key or value
// becomes infinite), growing the buffer (to twice its length or more) if
// it is full.
func (b *KVBuf) Append(x []float32, n int) {
	if b.Len+n > b.Cap {
		b.Grow(max(b.Len+n, 2*b.Cap))
	}
	b.Put(b.Len, x, n)
	b.Len += n
}

// Put stores n tokens' rows x [n][HKV*D] at tokens [j, j+n) (within Cap)
// without changing Len.
func (b *KVBuf) Put(j int, x []float32, n int) {
	D, kvd := b.D, b.HKV*b.D
	_ = x[n*kvd-1]
	if j+n > b.Cap {
		panic(fmt.Sprintf("layers: KVBuf.Put: tokens [%d, %d) beyond the capacity %d", j, j+n, b.Cap))
	}
	for h := 0; h < b.HKV; h++ {
		base := h*b.Cap*D + j*D
		for i := 0; i < n; i++ {
			src := x[i*kvd+h*D : i*kvd+(h+1)*D]
			switch b.DType {
			case weights.F32:
				copy(b.F[base+i*D:base+(i+1)*D], src)
			case weights.F16:
				EncodeF16(b.H[base+i*D:base+(i+1)*D], src)
			default:
				EncodeBF16(b.H[base+i*D:base+(i+1)*D], src)
			}
		}
	}
}

// CopyFrom replaces the buffer's tokens by src's first n (same dtype and
// shape; n <= Cap).
func (b *KVBuf) CopyFrom(src *KVBuf, n int) {
	if src.DType != b.DType || src.HKV != b.HKV || src.D != b.D || n > b.Cap || n > src.Len {
		panic("layers: KVBuf.CopyFrom: another dtype or shape, or too many tokens")
	}
	b.CopyRange(0, src, 0, n)
	b.Len = n
}

// CopyRange copies src's tokens [s0, s0+n) to tokens [d0, d0+n) of b
// (same dtype and shape; within both capacities), leaving Len alone.
func (b *KVBuf) CopyRange(d0 int, src *KVBuf, s0, n int) {
	D := b.D
	for h := 0; h < b.HKV; h++ {
		do, so := h*b.Cap*D+d0*D, h*src.Cap*D+s0*D
		if b.DType == weights.F32 {
			copy(b.F[do:do+n*D], src.F[so:so+n*D])
		} else {
			copy(b.H[do:do+n*D], src.H[so:so+n*D])
		}
	}
}

// Grow reallocates the buffer for capacity tokens, keeping those held.
func (b *KVBuf) Grow(capacity int) {
	if capacity <= b.Cap {
		return
	}
	nb := NewKVBuf(b.DType, capacity, b.HKV, b.D)
	nb.CopyRange(0, b, 0, b.Len)
	nb.Len = b.Len
	*b = *nb
}

// Truncate keeps the first n tokens.
func (b *KVBuf) Truncate(n int) {
	if n < b.Len {
		b.Len = n
	}
}

// Raw is the buffer's storage as bytes (little-endian elements, all of
// Cap; tokens past Len are zero or stale).
func (b *KVBuf) Raw() []byte {
	if b.DType == weights.F32 {
		return f32Bytes(b.F)
	}
	return u16Bytes(b.H)
}

// HeadRaw is the bytes of head h's first n tokens (one contiguous run).
func (b *KVBuf) HeadRaw(h, n int) []byte {
	lo, hi := h*b.Cap*b.D, h*b.Cap*b.D+n*b.D
	if b.DType == weights.F32 {
		return f32Bytes(b.F[lo:hi])
	}
	return u16Bytes(b.H[lo:hi])
}

// Finite reports whether the first n tokens hold no NaN or infinity.
func (b *KVBuf) Finite(n int) bool {
	for h := 0; h < b.HKV; h++ {
		lo, hi := h*b.Cap*b.D, h*b.Cap*b.D+n*b.D
		if b.DType == weights.F32 {
			for _, x := range b.F[lo:hi] {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return false
				}
			}
			continue
		}
		exp := uint16(0x7c00) // F16: exponent all ones
		if b.DType == weights.BF16 {
			exp = 0x7f80
		}
		for _, x := range b.H[lo:hi] {
			if x&exp == exp {
				return false
			}
		}
	}
	return true
}

// f16Max is the largest finite half.
const f16Max = 65504

// EncodeF16 rounds src to IEEE halves (nearest even) into dst, saturating
// finite values beyond ±65504 there.
func EncodeF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		if x > f16Max {
			x = f16Max
		} else if x < -f16Max {
			x = -f16Max
		}
		dst[i] = weights.F32ToF16(x)
	}
}

// EncodeBF16 rounds src to bfloat16 (nearest even) into dst.
func EncodeBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = weights.F32ToBF16(x)
	}
}

// RoundKV rounds x in place to the values a K/V buffer of dtype dt holds
// (as Put stores them, widened back to float32): a forward pass attends to
// its fresh keys and values as the cache will hold them. F32: unchanged.
func RoundKV(dt weights.DType, x []float32) {
	switch dt {
	case weights.F16:
		for i, v := range x {
			v = min(max(v, -f16Max), f16Max)
			x[i] = weights.F16ToF32(weights.F32ToF16(v))
		}
	case weights.BF16:
		for i, v := range x {
			x[i] = weights.BF16ToF32(weights.F32ToBF16(v))
		}
	}
}

func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

func u16Bytes(h []uint16) []byte {
	if len(h) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(h))), 2*len(h))
}
