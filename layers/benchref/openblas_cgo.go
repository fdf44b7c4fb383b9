//go:build cgo && (linux || darwin || freebsd)

// Package benchref holds the yardsticks that `star bench` and package
// layers' benchmarks print beside their own figures: the system OpenBLAS
// cblas_sgemm and the machine's memory read bandwidth.
//
// OpenBLAS is opened at run time (dlopen), so that building and testing
// package layers never requires it; Available reports whether it was found.
// Its environment (OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS, ...) is left as
// the caller set it.
package benchref

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*threads_fn)(int);
typedef char *(*config_fn)(void);
typedef char *(*core_fn)(void);

static sgemm_fn sgemm;
static threads_fn set_threads;
static config_fn get_config;
static core_fn get_core;

static int ob_open(void) {
	const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib", NULL};
	void *h = NULL;
	for (int i = 0; names[i] && !h; i++)
		h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return 0;
	sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
	set_threads = (threads_fn)dlsym(h, "openblas_set_num_threads");
	get_config = (config_fn)dlsym(h, "openblas_get_config");
	get_core = (core_fn)dlsym(h, "openblas_get_corename");
	return sgemm != NULL;
}

// C[M][N] = A[M][K] . B[N][K]^T (row-major).
static void ob_sgemm_nt(int M, int N, int K, const float *A, const float *B, float *C) {
	// CblasRowMajor, CblasNoTrans, CblasTrans
	sgemm(101, 111, 112, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
}

static void ob_threads(int n) {
	if (set_threads)
		set_threads(n);
}

static const char *ob_config(void) { return get_config ? get_config() : ""; }
static const char *ob_core(void) { return get_core ? get_core() : ""; }
*/
import "C"

import (
	"sync"
	"unsafe"
)

var (
	once sync.Once
	ok   bool
)

// Available reports whether libopenblas could be loaded.
func Available() bool {
	once.Do(func() { ok = C.ob_open() != 0 })
	return ok
}

// Config describes the loaded library ("OpenBLAS 0.3.21 ... Haswell").
func Config() string {
	if !Available() {
		return ""
	}
	return C.GoString(C.ob_config()) + " core=" + C.GoString(C.ob_core())
}

// SetThreads sets OpenBLAS's thread count.
func SetThreads(n int) {
	if Available() {
		C.ob_threads(C.int(n))
	}
}

// SgemmNT computes c[m, n] = a[m, k] · b[n, k]ᵀ, all row-major float32.
func SgemmNT(c, a, b []float32, m, n, k int) {
	if !Available() {
		panic("benchref: OpenBLAS is not available")
	}
	_, _, _ = c[m*n-1], a[m*k-1], b[n*k-1]
	C.ob_sgemm_nt(C.int(m), C.int(n), C.int(k), (*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])),
		(*C.float)(unsafe.Pointer(&c[0])))
}
