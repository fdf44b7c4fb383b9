//go:build cgo && amd64 && (linux || darwin || freebsd)

package benchref

/*
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

// Sums the 32-bit words of n bytes (n a multiple of 128) with four
// independent vector accumulators (integer adds, so that any bytes, a
// model's weights too, read at the same speed): a streaming read whose
// arithmetic never limits it. AVX2 where the CPU has it, else the
// baseline SSE2.
#include <immintrin.h>

// dist > 0: with software prefetch dist bytes ahead (two lines per 128
// bytes read): where the hardware prefetcher alone does not keep enough
// lines in flight (measured on an Intel Xeon: a plain scan 21 GB/s, with
// prefetch 2-4 KiB ahead 25, what the matrix-vector kernels, which
// prefetch, stream), the plain scan understates the bandwidth. Inlined
// with a constant dist: the plain scan has no prefetch at all.
__attribute__((target("avx2"), always_inline)) static inline uint32_t bw_scan_avx2(const uint8_t *p, size_t n, size_t dist) {
	__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
	for (size_t i = 0; i + 128 <= n; i += 128) {
		if (dist) {
			_mm_prefetch((const char *)(p + i) + dist, _MM_HINT_T0);
			_mm_prefetch((const char *)(p + i) + dist + 64, _MM_HINT_T0);
		}
		a = _mm256_add_epi32(a, _mm256_loadu_si256((const __m256i *)(p + i)));
		b = _mm256_add_epi32(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
		c = _mm256_add_epi32(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
		d = _mm256_add_epi32(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
	}
	uint32_t o[8];
	_mm256_storeu_si256((__m256i *)o, _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
	return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

__attribute__((target("avx2"))) static uint32_t bw_sum_avx2(const uint8_t *p, size_t n, int kind) {
	switch (kind) {
	case 0:
		return bw_scan_avx2(p, n, 0);
	case 1:
		return bw_scan_avx2(p, n, 2048);
	default:
		return bw_scan_avx2(p, n, 4096);
	}
}

static uint32_t bw_sum_sse(const uint8_t *p, size_t n) {
	__m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
	for (size_t i = 0; i + 64 <= n; i += 64) {
		a = _mm_add_epi32(a, _mm_loadu_si128((const __m128i *)(p + i)));
		b = _mm_add_epi32(b, _mm_loadu_si128((const __m128i *)(p + i + 16)));
		c = _mm_add_epi32(c, _mm_loadu_si128((const __m128i *)(p + i + 32)));
		d = _mm_add_epi32(d, _mm_loadu_si128((const __m128i *)(p + i + 48)));
	}
	uint32_t o[4];
	_mm_storeu_si128((__m128i *)o, _mm_add_epi32(_mm_add_epi32(a, b), _mm_add_epi32(c, d)));
	return o[0] + o[1] + o[2] + o[3];
}

// bw_sum reads n bytes: kind 0 a plain scan, 1 and 2 with software
// prefetch 2 and 4 KiB ahead (AVX2 only; SSE2 scans plainly).
static uint32_t bw_sum(const uint8_t *p, size_t n, int kind) {
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2"))
		return bw_sum_sse(p, n);
	return bw_sum_avx2(p, n, kind);
}
*/
import "C"

import "unsafe"

// readKinds are scanWords' scans: plain, and prefetching 2 and 4 KiB
// ahead.
const readKinds = 3

// scanWords is bw_sum of kind over the whole 128-byte units of b: the sum
// of their 32-bit words, wrapping.
func scanWords(b []byte, kind int) uint32 {
	if len(b) < 128 {
		return 0
	}
	return uint32(C.bw_sum((*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b)), C.int(kind)))
}

// ReadBandwidth measures the memory read bandwidth in bytes/s with the
// given number of threads each streaming its share of a buffer of the
// given size (make it several times the last-level cache): the best of 5
// reads by each of three scans (plain, and with software prefetch 2 and 4
// KiB ahead), the rate a streaming kernel can reach on this machine.
func ReadBandwidth(threads int, bytes int64) float64 {
	n := int(bytes) &^ 8191
	// C memory, handed back to the system on return: the buffer must not
	// stay in the caller's resident set (benchmarks measure peak RSS).
	p := C.malloc(C.size_t(n))
	if p == nil {
		return 0
	}
	defer C.free(p)
	buf := unsafe.Slice((*byte)(p), n)
	for i := range buf {
		buf[i] = 1
	}
	return scanBuffer(threads, buf)
}
