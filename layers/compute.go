// Package layers is the model math of a Llama-family transformer: plain
// functions on float32 slices, in the spirit of llama2.c's run.c. It does no
// I/O and no communication. A forward pass runs on a Backend (backend.go),
// which keeps the weights, activations and K/V caches where it computes:
// OnHost is the CPU's, whose heavy kernels go through the small Compute
// interface; layers/cuda is a GPU's.
package layers

import (
	"fmt"

	"github.com/star-attn/star/weights"
)

// Compute is what a backend provides: the matrix products that dominate a
// forward pass and a way to spread independent work over its threads.
type Compute interface {
	// MatMul computes out[n, w.Rows] = x[n, w.Cols] · wᵀ for a stored
	// weight matrix w [rows=out, cols=in] of any supported dtype.
	MatMul(out, x []float32, w *weights.Tensor, n int)
	// Parallel calls f(lo, hi) on disjoint ranges covering [0, n), using up
	// to Threads() goroutines, and returns when all are done.
	Parallel(n int, f func(lo, hi int))
	// Threads is the number of worker threads.
	Threads() int
	// Name identifies the backend in logs and benchmarks.
	Name() string
}

// Rounding is how a backend's MatMul treats the activations x for weights
// of some dtype. The weights are always used exactly as stored
// (quantized types dequantized as ggml defines them), and products are
// summed in float32.
type Rounding int

const (
	// RoundNone: x in float32, every product exact float32 arithmetic on
	// the weights: |error| <= about 1e-5·Σ|x·w|.
	RoundNone Rounding = iota
	// RoundBF16: x rounded to bfloat16 (round to nearest even) before the
	// products (AVX512_BF16 dot products, vdpbf16ps), which are then
	// exact and summed in float32: |error| <= 2⁻⁸·Σ|x·w| + float32 sums.
	RoundBF16
	// RoundInt8: each row of x rounded, per block of 32 consecutive
	// values, to int8 multiples of the block's scale max|x|/127; the
	// integer products (VNNI vpdpbusd) are exact, each block's sum scaled
	// and summed in float32: |error| <= Σ_blocks (scale/2)·Σ_block |w| +
	// float32 sums.
	RoundInt8
)

func (r Rounding) String() string {
	switch r {
	case RoundNone:
		return "exact"
	case RoundBF16:
		return "bf16 activations"
	case RoundInt8:
		return "int8 activations"
	}
	return fmt.Sprintf("Rounding(%d)", int(r))
}

// ActivationRounding is implemented by backends whose MatMul may round
// its activations (see Rounding); a backend without it computes every
// product as RoundNone.
type ActivationRounding interface {
	ActivationRounding(dt weights.DType) Rounding
}

// RoundingOf is c's Rounding for weights of dtype dt.
func RoundingOf(c Compute, dt weights.DType) Rounding {
	if r, ok := c.(ActivationRounding); ok {
		return r.ActivationRounding(dt)
	}
	return RoundNone
}

// MatMulKernel is implemented by backends that name the kernel their
// MatMul runs for weights of a dtype (for benchmarks: "cpu-avx512vnni").
type MatMulKernel interface {
	MatMulKernel(dt weights.DType) string
}

// KernelOf names the kernel c runs for weights of dtype dt: its
// MatMulKernel, else its Name.
func KernelOf(c Compute, dt weights.DType) string {
	if k, ok := c.(MatMulKernel); ok {
		return k.MatMulKernel(dt)
	}
	return c.Name()
}
