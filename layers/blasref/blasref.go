// Package blasref measures the reference single-precision GEMM of the
// machine (OpenBLAS's cblas_sgemm) on a given shape, so benchmarks can
// print our kernels' throughput beside it.
package blasref

/*
#cgo CFLAGS: -I/usr/include/x86_64-linux-gnu/openblas-pthread
#cgo LDFLAGS: -lopenblas
#include <cblas.h>

static void sgemm_nt(int m, int n, int k, const float *a, const float *b, float *c) {
	// C[m,n] = A[m,k] · B[n,k]ᵀ: activations times a weight matrix stored [out, in]
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
}
static void set_threads(int t) { openblas_set_num_threads(t); }
*/
import "C"

import (
	"math/rand/v2"
	"time"
	"unsafe"
)

// SgemmNT computes c[m,n] = a[m,k] · b[n,k]ᵀ with OpenBLAS.
func SgemmNT(c, a, b []float32, m, n, k int) {
	C.sgemm_nt(C.int(m), C.int(n), C.int(k), (*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&c[0])))
}

// GFLOPS is the best cblas_sgemm throughput of three runs (after a warm-up)
// for C[m,n] = A[m,k]·B[n,k]ᵀ on threads OpenBLAS threads.
func GFLOPS(m, n, k, threads int) float64 {
	C.set_threads(C.int(max(threads, 1)))
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
