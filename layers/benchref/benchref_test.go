package benchref

import (
	"math"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

func TestSgemmNT(t *testing.T) {
	if !Available() {
		shared.Missing(t, "libopenblas is not installed (libopenblas-dev; scripts/setup.sh installs it): nothing to compare")
	}
	const m, n, k = 3, 5, 7
	a, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	for i := range a {
		a[i] = float32(i%5) - 2
	}
	for i := range b {
		b[i] = float32(i%3) - 1
	}
	SgemmNT(c, a, b, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for x := 0; x < k; x++ {
				s += float64(a[i*k+x]) * float64(b[j*k+x])
			}
			if math.Abs(s-float64(c[i*n+j])) > 1e-5 {
				t.Fatalf("c[%d,%d] = %g, want %g", i, j, c[i*n+j], s)
			}
		}
	}
	if g := GFLOPS(64, 64, 64, 1); !(g > 0) {
		t.Fatalf("GFLOPS = %g", g)
	}
}

func TestReadBandwidth(t *testing.T) {
	// 64 MiB: beyond the caches of today's CPUs; a read rate between
	// 100 MB/s and 10 TB/s is a measurement, anything else a bug.
	if bw := ReadBandwidth(1, 64<<20); !(bw > 1e8 && bw < 1e13) {
		t.Fatalf("ReadBandwidth = %g B/s", bw)
	}
}
