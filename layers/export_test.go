package layers

import "github.com/star-attn/star/weights"

// Hooks into the CPU backend's internals for the external tests (package
// layers_test, which may import layerstest).

// KernelVariants lists the SIMD variants this processor runs, best first
// (emu512 included).
func KernelVariants() []string { return kernelVariants() }

// NewCPUVariant returns a CPU backend on the named SIMD variant, or nil if
// this processor cannot run it.
func NewCPUVariant(threads int, variant string) *CPU {
	k := newKernels(variant)
	if k == nil {
		return nil
	}
	return newCPU(threads, k)
}

// MatMulTuning returns the SIMD MatMul's blocking: products of at most
// gemv rows of x stream the weights, and GEMM's kc, mc, nc.
func MatMulTuning() (gemv, kc, mc, nc int) { return gemvMaxN, gemmKC, gemmMC, gemmNC }

// SetMatMulTuning sets the blocking that MatMulTuning returns and returns
// a function that restores the previous one. Not safe while a MatMul runs.
func SetMatMulTuning(gemv, kc, mc, nc int) (restore func()) {
	g, k, m, n := MatMulTuning()
	gemvMaxN, gemmKC, gemmMC, gemmNC = gemv, kc, mc, nc
	return func() { gemvMaxN, gemmKC, gemmMC, gemmNC = g, k, m, n }
}

// UsesAMX reports whether c's GEMM runs on AMX tiles for dtype dt.
func UsesAMX(c *CPU, dt weights.DType) bool { return c.k != nil && c.k.usesAMX(dt) }

// WithMaddubs returns a backend like c whose integer matrix-vector
// products use AVX2's vpmaddubsw where c's use AVX-VNNI (c itself where
// they already use vpmaddubsw), or nil where c's use neither.
func WithMaddubs(c *CPU) *CPU {
	if c.k == nil {
		return nil
	}
	k := c.k.withMaddubs()
	if k == nil {
		return nil
	}
	return newCPU(c.threads, k)
}

// HasAVXVNNI reports whether the processor has AVX-VNNI (the avx2
// variant's integer matrix-vector products use it).
func HasAVXVNNI() bool { return avxVNNI() }
