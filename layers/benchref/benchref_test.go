package benchref

import (
	"math"
	"sync"
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

// The bandwidth measurement reads the whole buffer, split over the
// threads in disjoint 64-element-aligned parts, five times; its result is
// a rate (positive, finite). How fast is not asserted: speed belongs to
// benchmarks, and a shared machine can be arbitrarily slow.
func TestReadBandwidth(t *testing.T) {
	for _, c := range []struct{ threads, n int }{{1, 1 << 12}, {3, 1 << 12}, {4, 64 * 4 * 5}} {
		var mu sync.Mutex
		covered := make([]int, c.n)
		calls := 0
		bw := bestRead(c.threads, c.n, 4, func(lo, hi int) float64 {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if lo%64 != 0 {
				t.Errorf("%d threads: part starts at %d, not 64-aligned", c.threads, lo)
			}
			for i := lo; i < hi; i++ {
				covered[i]++
			}
			return float64(hi - lo)
		})
		if calls != 5*c.threads {
			t.Errorf("%d threads: %d reads, want %d (5 rounds)", c.threads, calls, 5*c.threads)
		}
		for i, k := range covered {
			if k != 5 {
				t.Fatalf("%d threads, %d elements: element %d read %d times, want 5", c.threads, c.n, i, k)
			}
		}
		if !(bw > 0) || math.IsInf(bw, 0) {
			t.Errorf("%d threads: rate %g, want a positive finite number", c.threads, bw)
		}
	}
	if bw := ReadBandwidth(2, 4<<20); !(bw > 0) || math.IsInf(bw, 0) {
		t.Fatalf("ReadBandwidth = %g B/s, want a positive finite rate", bw)
	}
}
