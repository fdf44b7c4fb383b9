package benchref

import (
	"math/rand/v2"
	"time"
)

// GFLOPS is the best cblas_sgemm throughput (GFLOP/s) of three runs after
// a warm-up for C[m,n] = A[m,k]·B[n,k]ᵀ on threads OpenBLAS threads, or 0
// when OpenBLAS is not available.
func GFLOPS(m, n, k, threads int) float64 {
	if !Available() {
		return 0
	}
	SetThreads(max(threads, 1))
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	for i := range a {
		a[i] = r.Float32() - 0.5
	}
	for i := range b {
		b[i] = r.Float32() - 0.5
	}
	SgemmNT(c, a, b, m, n, k)
	best := 0.0
	for i := 0; i < 3; i++ {
		t := time.Now()
		SgemmNT(c, a, b, m, n, k)
		if g := 2 * float64(m) * float64(n) * float64(k) / float64(time.Since(t).Nanoseconds()); g > best {
			best = g
		}
	}
	return best
}
