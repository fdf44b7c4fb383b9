// Package quant is the pure-Go reference dequantizer of the ggml block
// types package weights reads (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K): bytes of
// blocks in, float32 weights out, computed as ggml's reference
// dequantizers do (each weight one float32 product and, for Q4_K/Q5_K,
// one subtraction, rounded step by step), so the values are the model.
// The CPU backend's pure-Go MatMul and token embeddings use it, and the
// tests of the SIMD kernels compare against it.
package quant

import (
	"encoding/binary"
	"math"

	"github.com/star-attn/star/weights"
)

var le = binary.LittleEndian

// f16 reads the fp16 at b.
func f16(b []byte) float32 { return weights.F16ToF32(le.Uint16(b)) }

// Row dequantizes one row of dtype dt: src holds the row's blocks and
// dst receives its len(dst) weights (a multiple of dt.BlockElems()).
// Plain dtypes are converted.
func Row(dt weights.DType, dst []float32, src []byte) {
	be, bb := dt.BlockElems(), dt.BlockBytes()
	nb := len(dst) / be
	_ = src[nb*bb-1]
	for i := 0; i < nb; i++ {
		blk, out := src[i*bb:(i+1)*bb], dst[i*be:(i+1)*be]
		switch dt {
		case weights.F32:
			out[0] = math.Float32frombits(le.Uint32(blk))
		case weights.F16:
			out[0] = f16(blk)
		case weights.BF16:
			out[0] = weights.BF16ToF32(le.Uint16(blk))
		case weights.Q8_0:
			Q8_0(out, blk)
		case weights.Q4_0:
			Q4_0(out, blk)
		case weights.Q4_K:
			Q4_K(out, blk)
		case weights.Q5_K:
			Q5_K(out, blk)
		case weights.Q6_K:
			Q6_K(out, blk)
		default:
			panic("quant: no dequantizer for " + dt.String())
		}
	}
}

// RowsTo writes rows [r0, r0+n) of the matrix t, of any dtype, as float32
// into dst[n*cols].
func RowsTo(dst []float32, t *weights.Tensor, r0, n int) {
	if !t.DType.Quantized() {
		t.RowsTo(dst, r0, n)
		return
	}
	cols := t.Cols()
	for i := 0; i < n; i++ {
		Row(t.DType, dst[i*cols:(i+1)*cols], t.Row(r0+i))
	}
}

// Q8_0 dequantizes one block (34 bytes: fp16 d, 32 int8 q): w = d·q.
func Q8_0(dst []float32, b []byte) {
	d := f16(b)
	q := b[2:34]
	for i := range 32 {
		dst[i] = d * float32(int8(q[i]))
	}
}

// Q4_0 dequantizes one block (18 bytes: fp16 d, 16 bytes of nibbles; the
// low nibbles are weights 0-15, the high ones 16-31): w = d·(q-8).
func Q4_0(dst []float32, b []byte) {
	d := f16(b)
	q := b[2:18]
	for i := range 16 {
		dst[i] = d * float32(int(q[i]&15)-8)
		dst[i+16] = d * float32(int(q[i]>>4)-8)
	}
}

// ScaleMinK4 is the 6-bit scale and min of sub-block j (0-7) of a Q4_K or
// Q5_K super-block from its 12 bytes: sub-blocks 0-3 in the low 6 bits of
// bytes j and j+4; sub-blocks 4-7 with their low 4 bits in byte j+4 (the
// scale's in the low nibble, the min's in the high one) and their top 2
// bits in the top bits of bytes j-4 and j.
func ScaleMinK4(q []byte, j int) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | q[j-4]>>6<<4, q[j+4]>>4 | q[j]>>6<<4
}

// Q4_K dequantizes one super-block (144 bytes: fp16 d, fp16 dmin, 12
// bytes of scales and mins, 128 bytes of nibbles): sub-block j of 32
// weights is w = (d·scale_j)·q - dmin·min_j. Each 32 bytes of nibbles
// hold two sub-blocks: the low nibbles the first, the high the second.
func Q4_K(dst []float32, b []byte) {
	d, dmin := f16(b), f16(b[2:])
	scales, qs := b[4:16], b[16:144]
	for c := range 4 { // 64 weights per 32 bytes
		q := qs[32*c : 32*c+32]
		s0, m0 := ScaleMinK4(scales, 2*c)
		s1, m1 := ScaleMinK4(scales, 2*c+1)
		d0, n0 := d*float32(s0), dmin*float32(m0)
		d1, n1 := d*float32(s1), dmin*float32(m1)
		o := dst[64*c : 64*c+64]
		for l := range 32 {
			o[l] = float32(d0*float32(q[l]&15)) - n0
			o[32+l] = float32(d1*float32(q[l]>>4)) - n1
		}
	}
}

// Q5_K dequantizes one super-block (176 bytes: fp16 d, fp16 dmin, 12
// bytes of scales and mins, 32 bytes of fifth bits qh, 128 bytes of
// nibbles): as Q4_K with q = nibble + 16·(fifth bit); weight l of the
// two sub-blocks of nibble chunk c takes bits 2c and 2c+1 of qh[l].
func Q5_K(dst []float32, b []byte) {
	d, dmin := f16(b), f16(b[2:])
	scales, qh, qs := b[4:16], b[16:48], b[48:176]
	for c := range 4 {
		q := qs[32*c : 32*c+32]
		s0, m0 := ScaleMinK4(scales, 2*c)
		s1, m1 := ScaleMinK4(scales, 2*c+1)
		d0, n0 := d*float32(s0), dmin*float32(m0)
		d1, n1 := d*float32(s1), dmin*float32(m1)
		o := dst[64*c : 64*c+64]
		for l := range 32 {
			h0 := qh[l] >> (2 * c) & 1
			h1 := qh[l] >> (2*c + 1) & 1
			o[l] = float32(d0*float32(q[l]&15|h0<<4)) - n0
			o[32+l] = float32(d1*float32(q[l]>>4|h1<<4)) - n1
		}
	}
}

// Q6_K dequantizes one super-block (210 bytes: 128 bytes of low 4 bits
// ql, 64 of high 2 bits qh, 16 int8 scales of sub-blocks of 16, fp16 d):
// w = (d·scale)·(q-32). Each half of 128 weights uses 64 bytes of ql and
// 32 of qh: weight l (< 32) and l+32, l+64, l+96 take the low nibbles of
// ql[l] and ql[l+32], then their high nibbles, with bits 0-1, 2-3, 4-5
// and 6-7 of qh[l] on top.
func Q6_K(dst []float32, b []byte) {
	d := f16(b[208:])
	for h := range 2 {
		ql, qh, sc := b[64*h:64*h+64], b[128+32*h:128+32*h+32], b[192+8*h:192+8*h+8]
		o := dst[128*h : 128*h+128]
		for l := range 32 {
			is := l / 16
			q1 := int(ql[l]&15|(qh[l]&3)<<4) - 32
			q2 := int(ql[l+32]&15|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			o[l] = d * float32(int8(sc[is])) * float32(q1)
			o[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			o[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			o[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
	}
}
