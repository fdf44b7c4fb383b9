package weightstest

import (
	"fmt"
	"math"

	"github.com/star-attn/star/weights"
)

// A quantizer for test files, written from ggml's block definitions (see
// weights.DType): it makes valid blocks of every quantized type that
// package weights reads, with simple choices of scales (not llama.cpp's
// searches). Tests check it round-trips through the dequantizer of
// package layers/quant, which is itself checked against llama.cpp's files.

// Quantize returns v as blocks of the quantized dtype dt; len(v) must be
// a multiple of dt.BlockElems() (a matrix whose rows are whole blocks).
func Quantize(v []float32, dt weights.DType) ([]byte, error) {
	if !dt.Quantized() {
		return nil, fmt.Errorf("weightstest: Quantize: %v is not a quantized type", dt)
	}
	be, bb := dt.BlockElems(), dt.BlockBytes()
	if len(v)%be != 0 {
		return nil, fmt.Errorf("weightstest: Quantize: %d values are not whole %v blocks of %d", len(v), dt, be)
	}
	out := make([]byte, len(v)/be*bb)
	for i := 0; i < len(v)/be; i++ {
		x, b := v[i*be:(i+1)*be], out[i*bb:(i+1)*bb]
		switch dt {
		case weights.Q8_0:
			quantizeQ8_0(b, x)
		case weights.Q4_0:
			quantizeQ4_0(b, x)
		case weights.Q4_K:
			quantizeK(b, x, 15)
		case weights.Q5_K:
			quantizeK(b, x, 31)
		case weights.Q6_K:
			quantizeQ6_K(b, x)
		}
	}
	return out, nil
}

// putF16 stores f as fp16 and returns the value it reads back as.
func putF16(b []byte, f float32) float32 {
	h := weights.F32ToF16(f)
	le.PutUint16(b, h)
	return weights.F16ToF32(h)
}

// roundClamp is round(x) limited to [lo, hi].
func roundClamp(x float32, lo, hi int) int {
	q := int(math.RoundToEven(float64(x)))
	return max(lo, min(hi, q))
}

// quantizeQ8_0: d = max|x|/127, q = round(x/d).
func quantizeQ8_0(b []byte, x []float32) {
	var amax float32
	for _, f := range x {
		amax = max(amax, abs32(f))
	}
	d := putF16(b, amax/127)
	for i, f := range x {
		q := 0
		if d != 0 {
			q = roundClamp(f/d, -127, 127)
		}
		b[2+i] = byte(int8(q))
	}
}

// quantizeQ4_0: the value of largest magnitude m maps to q = 0 (d =
// m/-8), so both signs keep their range; q = round(x/d) + 8.
func quantizeQ4_0(b []byte, x []float32) {
	var m float32
	for _, f := range x {
		if abs32(f) > abs32(m) {
			m = f
		}
	}
	d := putF16(b, m/-8)
	for i := range 16 {
		q0, q1 := 8, 8
		if d != 0 {
			q0, q1 = roundClamp(x[i]/d, -8, 7)+8, roundClamp(x[i+16]/d, -8, 7)+8
		}
		b[2+i] = byte(q0) | byte(q1)<<4
	}
}

// quantizeK makes a Q4_K (nmax 15) or Q5_K (nmax 31) super-block: each
// sub-block of 32 spans [min(0, min x), max x] in nmax steps; its step
// and -min are 6-bit multiples of the super-block's d and dmin.
func quantizeK(b []byte, x []float32, nmax int) {
	var step, mins [8]float32
	var maxStep, maxMin float32
	for j := range 8 {
		lo, hi := float32(0), float32(0)
		for _, f := range x[32*j : 32*j+32] {
			lo, hi = min(lo, f), max(hi, f)
		}
		step[j], mins[j] = (hi-lo)/float32(nmax), -lo
		maxStep, maxMin = max(maxStep, step[j]), max(maxMin, mins[j])
	}
	d := putF16(b, maxStep/63)
	dmin := putF16(b[2:], maxMin/63)
	var sc, m [8]uint8
	for j := range 8 {
		if d > 0 {
			sc[j] = uint8(roundClamp(step[j]/d, 0, 63))
		}
		if dmin > 0 {
			m[j] = uint8(roundClamp(mins[j]/dmin, 0, 63))
		}
	}
	s := weights.PackScaleMinK4(sc, m)
	copy(b[4:16], s[:])
	var q [256]int
	for j := range 8 {
		ed, em := d*float32(sc[j]), dmin*float32(m[j])
		for l := range 32 {
			if ed > 0 {
				q[32*j+l] = roundClamp((x[32*j+l]+em)/ed, 0, nmax)
			}
		}
	}
	qs := b[16:]
	if nmax == 31 {
		qh := b[16:48]
		qs = b[48:]
		for c := range 4 {
			for l := range 32 {
				qh[l] |= byte(q[64*c+l]>>4)<<(2*c) | byte(q[64*c+32+l]>>4)<<(2*c+1)
			}
		}
	}
	for c := range 4 {
		for l := range 32 {
			qs[32*c+l] = byte(q[64*c+l]&15) | byte(q[64*c+32+l]&15)<<4
		}
	}
}

// quantizeQ6_K: each sub-block of 16 maps its value of largest magnitude
// m to q-32 = -32 (step m/-32); the steps are int8 multiples of d.
func quantizeQ6_K(b []byte, x []float32) {
	var step [16]float32
	var maxStep float32
	for k := range 16 {
		var m float32
		for _, f := range x[16*k : 16*k+16] {
			if abs32(f) > abs32(m) {
				m = f
			}
		}
		step[k] = m / -32
		maxStep = max(maxStep, abs32(step[k]))
	}
	d := putF16(b[208:], maxStep/127)
	var q [256]int
	for k := range 16 {
		sc := 0
		if d > 0 {
			sc = roundClamp(step[k]/d, -127, 127)
		}
		b[192+k] = byte(int8(sc))
		ed := d * float32(sc)
		for l := range 16 {
			q[16*k+l] = 32
			if ed != 0 {
				q[16*k+l] = roundClamp(x[16*k+l]/ed, -32, 31) + 32
			}
		}
	}
	for h := range 2 {
		ql, qh := b[64*h:64*h+64], b[128+32*h:128+32*h+32]
		for l := range 32 {
			for part := range 4 {
				v := q[128*h+32*part+l]
				at := l + 32*(part&1) // parts 0, 2: ql[l]; 1, 3: ql[l+32]
				ql[at] |= byte(v&15) << (4 * (part >> 1))
				qh[l] |= byte(v>>4) << (2 * part)
			}
		}
	}
}

func abs32(f float32) float32 { return float32(math.Abs(float64(f))) }
