package layers

import (
	"fmt"
	"math"
	"testing"

	"github.com/star-attn/star/weights"
)

// RoundKV gives, in place, exactly what a KVBuf stores and a span reads
// back, for every dtype: values of every magnitude, saturation at the
// largest half (never an infinity), and the tokens of every head.
func TestRoundKVIsWhatTheBufferHolds(t *testing.T) {
	const hkv, d, n = 2, 4, 3
	x := make([]float32, n*hkv*d)
	for i := range x {
		x[i] = float32(math.Pow(-3.7, float64(i%12))) * (1 + float32(i)/7)
	}
	x[5], x[6], x[7] = 1e6, -7e4, 65519 // beyond the largest half, and just below the boundary of rounding to it
	for _, dt := range KVDTypes {
		t.Run(KVDTypeName(dt), func(t *testing.T) {
			b := NewKVBuf(dt, n+1, hkv, d)
			b.Append(x, n)
			got := append([]float32(nil), x...)
			RoundKV(dt, got)
			sp := b.All()
			row := make([]float32, d)
			for j := 0; j < n; j++ {
				for h := 0; h < hkv; h++ {
					sp.Row(row, h, j)
					for e, want := range row {
						if g := got[j*hkv*d+h*d+e]; g != want {
							t.Fatalf("token %d head %d elem %d: RoundKV %g, the buffer holds %g", j, h, e, g, want)
						}
					}
				}
			}
			if !b.Finite(n) {
				t.Fatal("the buffer holds an infinity")
			}
			if dt == weights.F16 && (got[5] != 65504 || got[6] != -65504) {
				t.Fatalf("F16: 1e6 and -7e4 became %g and %g, want ±65504", got[5], got[6])
			}
			if dt == weights.F32 && fmt.Sprint(got) != fmt.Sprint(x) {
				t.Fatal("F32: RoundKV changed values")
			}
		})
	}
}
