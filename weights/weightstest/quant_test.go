package weightstest_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// The test quantizer round-trips through the reference dequantizer
// (itself checked against llama.cpp's files): on several kinds of data
// the RMS error relative to the data's RMS stays under each type's
// bound (about twice what its step size gives; a wrong layout gives
// errors of order 1), all-zero blocks stay zero, and the largest value's
// magnitude is kept within one step.
func TestQuantizeRoundTrip(t *testing.T) {
	bounds := map[weights.DType]float64{
		weights.Q8_0: 0.01, weights.Q4_0: 0.15, weights.Q4_K: 0.15, weights.Q5_K: 0.08, weights.Q6_K: 0.035,
	}
	r := rand.New(rand.NewPCG(3, 4))
	kinds := map[string]func(i int) float32{
		"normal":   func(int) float32 { return float32(r.NormFloat64()) },
		"uniform":  func(int) float32 { return float32(r.Float64()*2 - 1) },
		"positive": func(int) float32 { return float32(r.Float64()*3 + 0.5) },
		"negative": func(int) float32 { return float32(-r.Float64()*0.01 - 0.001) },
		"outliers": func(i int) float32 {
			if i%97 == 5 {
				return 40
			}
			return float32(r.NormFloat64())
		},
	}
	const n = 4096
	for _, dt := range weights.QuantTypes() {
		for kind, gen := range kinds {
			v := make([]float32, n)
			for i := range v {
				v[i] = gen(i)
			}
			b, err := weightstest.Quantize(v, dt)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != int(dt.Bytes(n)) {
				t.Fatalf("%v: %d bytes for %d weights, want %d", dt, len(b), n, dt.Bytes(n))
			}
			got := make([]float32, n)
			quant.Row(dt, got, b)
			var se, ss float64
			for i := range v {
				d := float64(got[i] - v[i])
				se += d * d
				ss += float64(v[i]) * float64(v[i])
			}
			rel := math.Sqrt(se / ss)
			bound := bounds[dt]
			if kind == "outliers" {
				bound *= 4 // blocks with an outlier have a coarse step for everything else
			}
			t.Logf("%v %s: relative RMS error %.4f (bound %.3f)", dt, kind, rel, bound)
			if !(rel <= bound) {
				t.Errorf("%v %s: relative RMS error %.4f > %.3f", dt, kind, rel, bound)
			}
		}
		zero := make([]float32, 512)
		b, _ := weightstest.Quantize(zero, dt)
		got := make([]float32, 512)
		quant.Row(dt, got, b)
		for i, f := range got {
			if f != 0 {
				t.Fatalf("%v: zeros come back as %g at %d", dt, f, i)
			}
		}
	}
	if _, err := weightstest.Quantize(make([]float32, 33), weights.Q8_0); err == nil {
		t.Fatal("33 values quantized as Q8_0 blocks of 32")
	}
	if _, err := weightstest.Quantize(make([]float32, 32), weights.F16); err == nil {
		t.Fatal("F16 accepted as a quantized type")
	}
}
