//go:build cgo && amd64 && (linux || darwin || freebsd)

package benchref

/*
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

// Sums n floats (n a multiple of 32) with four independent vector
// accumulators: a streaming read whose arithmetic never limits it. AVX2
// where the CPU has it, else the baseline SSE2.
#include <immintrin.h>

// dist > 0: with software prefetch dist bytes ahead (two lines per 128
// bytes read): where the hardware prefetcher alone does not keep enough
// lines in flight (measured on an Intel Xeon: a plain scan 21 GB/s, with
// prefetch 2-4 KiB ahead 25, what the matrix-vector kernels, which
// prefetch, stream), the plain scan understates the bandwidth. Inlined
// with a constant dist: the plain scan has no prefetch at all.
__attribute__((target("avx2"), always_inline)) static inline float bw_scan_avx2(const float *p, size_t n, size_t dist) {
	__m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
	for (size_t i = 0; i + 32 <= n; i += 32) {
		if (dist) {
			_mm_prefetch((const char *)(p + i) + dist, _MM_HINT_T0);
			_mm_prefetch((const char *)(p + i) + dist + 64, _MM_HINT_T0);
		}
		a = _mm256_add_ps(a, _mm256_loadu_ps(p + i));
		b = _mm256_add_ps(b, _mm256_loadu_ps(p + i + 8));
		c = _mm256_add_ps(c, _mm256_loadu_ps(p + i + 16));
		d = _mm256_add_ps(d, _mm256_loadu_ps(p + i + 24));
	}
	float o[8];
	_mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
	return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

__attribute__((target("avx2"))) static float bw_sum_avx2(const float *p, size_t n, int kind) {
	switch (kind) {
	case 0:
		return bw_scan_avx2(p, n, 0);
	case 1:
		return bw_scan_avx2(p, n, 2048);
	default:
		return bw_scan_avx2(p, n, 4096);
	}
}

static float bw_sum_sse(const float *p, size_t n) {
	__m128 a = _mm_setzero_ps(), b = a, c = a, d = a;
	for (size_t i = 0; i + 16 <= n; i += 16) {
		a = _mm_add_ps(a, _mm_loadu_ps(p + i));
		b = _mm_add_ps(b, _mm_loadu_ps(p + i + 4));
		c = _mm_add_ps(c, _mm_loadu_ps(p + i + 8));
		d = _mm_add_ps(d, _mm_loadu_ps(p + i + 12));
	}
	float o[4];
	_mm_storeu_ps(o, _mm_add_ps(_mm_add_ps(a, b), _mm_add_ps(c, d)));
	return o[0] + o[1] + o[2] + o[3];
}

// bw_sum reads n floats: kind 0 a plain scan, 1 and 2 with software
// prefetch 2 and 4 KiB ahead (AVX2 only; SSE2 scans plainly).
static float bw_sum(const float *p, size_t n, int kind) {
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2"))
		return bw_sum_sse(p, n);
	return bw_sum_avx2(p, n, kind);
}
*/
import "C"

import "unsafe"

// readKinds are bw_sum's scans: plain, and prefetching 2 and 4 KiB ahead.
const readKinds = 3

// sumFloats is bw_sum of kind over buf (len a multiple of 32).
func sumFloats(buf []float32, kind int) float64 {
	return float64(C.bw_sum((*C.float)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), C.int(kind)))
}

// ReadBandwidth measures the memory read bandwidth in bytes/s with the
// given number of threads each streaming its share of a buffer of the
// given size (make it several times the last-level cache): the best of 5
// reads by each of three scans (plain, and with software prefetch 2 and 4
// KiB ahead), the rate a streaming kernel can reach on this machine.
func ReadBandwidth(threads int, bytes int64) float64 {
	n := int(bytes/4) &^ 127
	// C memory, handed back to the system on return: the buffer must not
	// stay in the caller's resident set (benchmarks measure peak RSS).
	p := C.malloc(C.size_t(n) * 4)
	if p == nil {
		return 0
	}
	defer C.free(p)
	buf := unsafe.Slice((*float32)(p), n)
	for i := range buf {
		buf[i] = 1
	}
	best := 0.0
	for kind := 0; kind < readKinds; kind++ {
		best = max(best, bestRead(threads, n, 4, func(lo, hi int) float64 { return sumFloats(buf[lo:hi], kind) }))
	}
	return best
}
