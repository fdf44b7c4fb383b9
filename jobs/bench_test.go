package jobs

import (
	"math"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// The reference figure is total flops over total time of a layer's linear
// products, each shape at its own measured rate.
func TestLayerSgemm(t *testing.T) {
	c := &weights.Config{Dim: 8, HiddenDim: 32, NHeads: 2, NKVHeads: 1, HeadDim: 4}
	calls := map[[3]int]int{}
	rate := func(m, n, k int) float64 {
		calls[[3]int{m, n, k}]++
		if n == 32 || k == 32 { // MLP shapes
			return 100
		}
		return 25
	}
	got := layerSgemm(c, rate)
	// flops per token: attention 8*8 + 2*4*8 + 8*8 = 192 at 25; MLP 3*32*8 = 768 at 100
	want := (192 + 768) / (192/25.0 + 768/100.0)
	if math.Abs(got-want) > 1e-9 {
		t.Fatalf("layerSgemm = %g, want %g", got, want)
	}
	for k, n := range calls {
		if n != 1 || k[0] != 512 {
			t.Fatalf("shape %v measured %d times, want once at 512 tokens", k, n)
		}
	}
	if g := layerSgemm(c, func(m, n, k int) float64 { return 0 }); g != 0 {
		t.Fatalf("no reference: %g, want 0", g)
	}
}

// Counting (bench's timing wrapper) keeps every optional kernel of the
// backend it wraps: what bench times is what a run computes. It once hid
// the vectorised SwiGLU, and bench timed the scalar loop instead.
func TestCountingKeepsKernels(t *testing.T) {
	cpu := layers.NewCPU(1)
	c := &Counting{Compute: cpu}
	var inner, outer any = cpu, c
	for _, iface := range []struct {
		name string
		has  func(any) bool
	}{
		{"SwiGLUKernel", func(v any) bool { _, ok := v.(layers.SwiGLUKernel); return ok }},
		{"AttentionKernel", func(v any) bool { _, ok := v.(layers.AttentionKernel); return ok }},
		{"ActivationRounding", func(v any) bool { _, ok := v.(layers.ActivationRounding); return ok }},
		{"MatMulKernel", func(v any) bool { _, ok := v.(layers.MatMulKernel); return ok }},
	} {
		if iface.has(inner) && !iface.has(outer) {
			t.Errorf("%s implements %s but Counting around it does not", cpu.Name(), iface.name)
		}
	}
	// The same SwiGLU, bit for bit, through the wrapper and directly.
	h1, h3 := make([]float32, 1000), make([]float32, 1000)
	for i := range h1 {
		h1[i], h3[i] = float32(i-500)/37, float32(i%7)-3
	}
	a, b := append([]float32(nil), h1...), append([]float32(nil), h1...)
	layers.SwiGLU(cpu, a, h3)
	layers.SwiGLU(c, b, h3)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("SwiGLU through Counting differs at %d: %g, directly %g", i, b[i], a[i])
		}
	}
}
