//go:build !(amd64 && cgo)

package layers

import "github.com/star-attn/star/weights"

// Without cgo on amd64 there are no SIMD kernels: NewCPU returns the
// pure-Go backend.

type kernels struct{ name string }

type resources struct{}

func newResources(threads int) *resources { return &resources{} }

func kernelVariants() []string { return nil }

func newKernels(name string) *kernels { return nil }

func (k *kernels) rounds() bool { return false }

func (k *kernels) rounding(dt weights.DType) Rounding { return RoundNone }

func (k *kernels) int8Suffix() string { return "vnni" }

func (k *kernels) withMaddubs() *kernels { return nil }

func avxVNNI() bool { return false }

func (k *kernels) exactOnly() *kernels { return k }

func (k *kernels) bf16Default() bool { return false }

func (k *kernels) withBF16() *kernels { return nil }

func (k *kernels) amxDefault() bool { return false }

func (k *kernels) withAMX(on bool) *kernels { return nil }

func (k *kernels) usesAMX(dt weights.DType) bool { return false }

func (k *kernels) matMul(res *resources, p *workerPool, nt int, out, x []float32, w *weights.Tensor, n int) {
	panic("layers: no SIMD kernels in this build")
}

func (k *kernels) attention(res *resources, p *workerPool, nt int, out, lse, q []float32, kk, v KVSpan, nq, nk int, s AttnShape, causal bool) {
	panic("layers: no SIMD kernels in this build")
}

func (k *kernels) swiGLU(h1, h3 []float32) {
	panic("layers: no SIMD kernels in this build")
}
