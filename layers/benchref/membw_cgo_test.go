//go:build cgo && amd64 && (linux || darwin || freebsd)

package benchref

import "testing"

// Every scan of ReadBandwidth reads every float once: its sum of small
// integers (exact in float32) is the buffer's, prefetching or not.
func TestScansReadEverything(t *testing.T) {
	for _, n := range []int{32, 4096, 4096 + 96} {
		buf := make([]float32, n)
		want := 0.0
		for i := range buf {
			buf[i] = float32(i%7 - 2)
			want += float64(buf[i])
		}
		for kind := 0; kind < readKinds; kind++ {
			if got := sumFloats(buf, kind); got != want {
				t.Errorf("scan %d of %d floats: sum %g, want %g", kind, n, got, want)
			}
		}
	}
}
