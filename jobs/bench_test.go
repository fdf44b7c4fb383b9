package jobs

import (
	"math"
	"testing"

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
