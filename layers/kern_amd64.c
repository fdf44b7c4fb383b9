//go:build amd64 && cgo

// SIMD kernels of the fast CPU backend. Nothing here is compiled for a
// baseline wider than x86-64: every function that uses AVX2 or AVX-512 is
// compiled under a target pragma, and star_cpu_level tells the Go side at
// run time which of them the CPU (and OS) supports.
//
// kern_impl.h holds the kernels once, written against a small vector
// vocabulary; it is instantiated three times:
//
//	avx2    8 lanes, 6x16 register tile   (AVX2 + FMA + F16C)
//	avx512  16 lanes, 14x32 register tile (AVX-512F)
//	emu512  the avx512 instantiation's code with each 16-lane vector held
//	        as two AVX2 halves: lets the 16-lane logic be tested on
//	        machines without AVX-512; never chosen automatically.

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kern.h"

int star_cpu_level(void) {
	__builtin_cpu_init();
	if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
		return 0;
	if (__builtin_cpu_supports("avx512f"))
		return 2;
	return 1;
}

// amx_usable reports whether the processor has AMX-TILE and AMX-BF16
// (CPUID leaf 7: EDX bits 24 and 22), the OS enables their state (XCR0
// bits 17 and 18), and Linux grants it to this process (the tile data is
// off until asked for: ARCH_REQ_XCOMP_PERM). Asked once: the answer is
// cached, the permission is the process's.
static int amx_usable(void) {
	static int known = -1;
	if (known >= 0)
		return known;
	known = 0;
	unsigned a, b, c, d;
	__asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
	if (a < 7)
		return 0;
	__asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	if (!(d & (1u << 24)) || !(d & (1u << 22)))
		return 0;
	__asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	if (!(c & (1u << 27))) // OSXSAVE
		return 0;
	unsigned lo, hi;
	__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & (3u << 17)) != (3u << 17))
		return 0;
#ifdef __linux__
	if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0)
		return 0;
#endif
	known = 1;
	return 1;
}

int star_cpu_features(void) {
	__builtin_cpu_init();
	int f = 0;
	if (star_cpu_level() >= 2 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
		if (__builtin_cpu_supports("avx512vnni"))
			f |= STAR_FEAT_VNNI;
		if (__builtin_cpu_supports("avx512bf16"))
			f |= STAR_FEAT_BF16;
	}
	if (__builtin_cpu_is("amd"))
		f |= STAR_FEAT_AMD;
	if ((f & STAR_FEAT_VNNI) && (f & STAR_FEAT_BF16) && amx_usable())
		f |= STAR_FEAT_AMX;
	if (star_cpu_level() >= 1 && __builtin_cpu_supports("avxvnni"))
		f |= STAR_FEAT_AVXVNNI;
	return f;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

// ---------------------------------------------------------------------------
// dtype helpers and B packing, shared by every variant (AVX2 suffices).

static inline __attribute__((always_inline)) float wval(const void *w, const int dt, long i) {
	if (dt == STAR_F32)
		return ((const float *)w)[i];
	uint16_t h = ((const uint16_t *)w)[i];
	if (dt == STAR_F16)
		return _cvtsh_ss(h);
	uint32_t b = (uint32_t)h << 16;
	float f;
	memcpy(&f, &b, 4);
	return f;
}

static inline __attribute__((always_inline)) __m256 w8(const void *w, const int dt, long i) {
	if (dt == STAR_F32)
		return _mm256_loadu_ps((const float *)w + i);
	__m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
	if (dt == STAR_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) void tr8x8(__m256 *r) {
	__m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
	__m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
	__m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
	__m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
	__m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
	r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
	r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
	r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
	r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
	r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
	r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
	r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
	r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// pack_b writes rows [j0, j0+nr) (nr <= nrr), columns [k0, k0+kc) of the
// row-major matrix w (row stride ldw elements, dtype dt) transposed and
// widened into dst[kc][nrr]; rows past nr are zero. nrr is a multiple of 8.
static inline __attribute__((always_inline)) void pack_b_dt(float *dst, const void *w, const int dt, long ldw,
                                                            long j0, int nr, long k0, int kc, int nrr) {
	for (int g = 0; g < nrr; g += 8) {
		int rows = nr - g < 8 ? nr - g : 8;
		float *d = dst + g;
		int k = 0;
		if (rows == 8) {
			long base = (j0 + g) * ldw + k0;
			for (; k + 8 <= kc; k += 8) {
				__m256 r[8];
				for (int i = 0; i < 8; i++)
					r[i] = w8(w, dt, base + i * ldw + k);
				tr8x8(r);
				for (int i = 0; i < 8; i++)
					_mm256_storeu_ps(d + (long)(k + i) * nrr, r[i]);
			}
		}
		for (; k < kc; k++)
			for (int i = 0; i < 8; i++)
				d[(long)k * nrr + i] = i < rows ? wval(w, dt, (j0 + g + i) * ldw + k0 + k) : 0.0f;
	}
}

#include "kern_quant.h"

// pack_b_q is pack_b for a quantized dtype: ldw is the row length in
// weights, k0 and kc multiples of the block. Up to 256 columns of 8 rows
// are dequantized at a time, then transposed into dst.
static void pack_b_q(float *dst, const void *w, int dt, long ldw, long j0, int nr, long k0, int kc, int nrr) {
	const long rowb = dt_bytes(dt, ldw);
	float tmp[8 * 256];
	for (int c0 = 0; c0 < kc; c0 += 256) {
		int cc = kc - c0 < 256 ? kc - c0 : 256;
		for (int g = 0; g < nrr; g += 8) {
			int rows = nr - g < 8 ? nr - g : 8;
			if (rows < 0)
				rows = 0;
			for (int i = 0; i < 8; i++) {
				if (i < rows)
					deq_row((const uint8_t *)w + (j0 + g + i) * rowb, dt, k0 + c0, cc, tmp + i * 256);
				else
					memset(tmp + i * 256, 0, sizeof(float) * cc);
			}
			float *d = dst + (long)c0 * nrr + g;
			for (int k = 0; k < cc; k += 8) {
				__m256 r[8];
				for (int i = 0; i < 8; i++)
					r[i] = _mm256_loadu_ps(tmp + i * 256 + k);
				tr8x8(r);
				for (int i = 0; i < 8; i++)
					_mm256_storeu_ps(d + (long)(k + i) * nrr, r[i]);
			}
		}
	}
}

static void pack_b(float *dst, const void *w, int dt, long ldw, long j0, int nr, long k0, int kc, int nrr) {
	if (dt >= STAR_Q8_0) {
		pack_b_q(dst, w, dt, ldw, j0, nr, k0, kc, nrr);
		return;
	}
	switch (dt) {
	case STAR_F32:
		pack_b_dt(dst, w, STAR_F32, ldw, j0, nr, k0, kc, nrr);
		break;
	case STAR_F16:
		pack_b_dt(dst, w, STAR_F16, ldw, j0, nr, k0, kc, nrr);
		break;
	default:
		pack_b_dt(dst, w, STAR_BF16, ldw, j0, nr, k0, kc, nrr);
		break;
	}
}

// pack_a writes MR-row panels [p0, p1) of x[M][K] into ap: panel p holds
// rows p*MR.. as ap[p*MR*K + k*MR + r], rows past M zero. Eight columns of
// up to eight rows at a time, transposed in registers.
static void pack_a(const float *x, long M, long K, float *ap, long p0, long p1, int mr_) {
	const long MRl = mr_;
	for (long p = p0; p < p1; p++) {
		float *d = ap + p * MRl * K;
		for (int g = 0; g < mr_; g += 8) {
			int gr = mr_ - g < 8 ? mr_ - g : 8; // rows of this group in the panel
			long i0 = p * MRl + g;
			int valid = M - i0 < gr ? (int)(M - i0) : gr; // rows that exist in x
			if (valid < 0)
				valid = 0;
			long k = 0;
			for (; k + 8 <= K; k += 8) {
				__m256 r[8];
				for (int i = 0; i < 8; i++)
					r[i] = i < valid ? _mm256_loadu_ps(x + (i0 + i) * K + k) : _mm256_setzero_ps();
				tr8x8(r);
				for (int c = 0; c < 8; c++) {
					float *o = d + (k + c) * MRl + g;
					if (gr == 8) {
						_mm256_storeu_ps(o, r[c]);
					} else {
						__m128 lo = _mm256_castps256_ps128(r[c]), hi = _mm256_extractf128_ps(r[c], 1);
						int j = 0;
						if (gr >= 4) {
							_mm_storeu_ps(o, lo);
							lo = hi;
							j = 4;
						}
						for (; j < gr; j++) {
							o[j] = _mm_cvtss_f32(lo);
							lo = _mm_shuffle_ps(lo, lo, _MM_SHUFFLE(0, 3, 2, 1));
						}
					}
				}
			}
			for (; k < K; k++)
				for (int i = 0; i < gr; i++)
					d[k * MRl + g + i] = i < valid ? x[(i0 + i) * K + k] : 0.0f;
		}
	}
}

static inline float hsum8(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------------------
// avx2: 8 lanes.

#define SFX avx2
#define VL 8
#define MR 6
#define ATK 64
#define V __m256
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VHSUM hsum8
#define VHMAX hmax8
#define VROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VPOW2I(n) \
	_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define VSEL_LT(a, b, x, y) _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ))
#define VF16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VRED8(v) (v)
#define VBF16PAIR(p, e, o)                                                                           \
	do {                                                                                         \
		__m256i w_ = _mm256_loadu_si256((const __m256i *)(p));                               \
		e = _mm256_castsi256_ps(_mm256_slli_epi32(w_, 16));                                  \
		o = _mm256_castsi256_ps(_mm256_and_si256(w_, _mm256_set1_epi32((int)0xffff0000u))); \
	} while (0)
#include "kern_impl.h"
#undef SFX
#undef VL
#undef MR
#undef ATK
#undef V
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VSET1
#undef VFMA
#undef VADD
#undef VSUB
#undef VMUL
#undef VDIV
#undef VMAX
#undef VMIN
#undef VHSUM
#undef VHMAX
#undef VROUND
#undef VPOW2I
#undef VSEL_LT
#undef VF16
#undef VRED8
#undef VBF16PAIR

// ---------------------------------------------------------------------------
// emu512: 16 lanes as two AVX2 halves, for testing the 16-lane instantiation.

typedef struct {
	__m256 a, b;
} e16;

#define EI static inline __attribute__((always_inline))
EI e16 e16_zero(void) { return (e16){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
EI e16 e16_load(const float *p) { return (e16){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
EI void e16_store(float *p, e16 v) {
	_mm256_storeu_ps(p, v.a);
	_mm256_storeu_ps(p + 8, v.b);
}
EI e16 e16_set1(float x) { return (e16){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
EI e16 e16_bcast(const float *p) { return e16_set1(*p); }
EI e16 e16_fma(e16 x, e16 y, e16 z) { return (e16){_mm256_fmadd_ps(x.a, y.a, z.a), _mm256_fmadd_ps(x.b, y.b, z.b)}; }
EI e16 e16_add(e16 x, e16 y) { return (e16){_mm256_add_ps(x.a, y.a), _mm256_add_ps(x.b, y.b)}; }
EI e16 e16_sub(e16 x, e16 y) { return (e16){_mm256_sub_ps(x.a, y.a), _mm256_sub_ps(x.b, y.b)}; }
EI e16 e16_mul(e16 x, e16 y) { return (e16){_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)}; }
EI e16 e16_div(e16 x, e16 y) { return (e16){_mm256_div_ps(x.a, y.a), _mm256_div_ps(x.b, y.b)}; }
EI e16 e16_max(e16 x, e16 y) { return (e16){_mm256_max_ps(x.a, y.a), _mm256_max_ps(x.b, y.b)}; }
EI e16 e16_min(e16 x, e16 y) { return (e16){_mm256_min_ps(x.a, y.a), _mm256_min_ps(x.b, y.b)}; }
EI float e16_hsum(e16 x) { return hsum8(_mm256_add_ps(x.a, x.b)); }
EI float e16_hmax(e16 x) { return hmax8(_mm256_max_ps(x.a, x.b)); }
EI e16 e16_round(e16 x) {
	return (e16){_mm256_round_ps(x.a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
	             _mm256_round_ps(x.b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
EI __m256 p2_8(__m256 n) {
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
EI e16 e16_pow2i(e16 n) { return (e16){p2_8(n.a), p2_8(n.b)}; }
EI e16 e16_sel_lt(e16 x, e16 y, e16 s, e16 t) {
	return (e16){_mm256_blendv_ps(t.a, s.a, _mm256_cmp_ps(x.a, y.a, _CMP_LT_OQ)),
	             _mm256_blendv_ps(t.b, s.b, _mm256_cmp_ps(x.b, y.b, _CMP_LT_OQ))};
}
EI e16 e16_f16(const uint16_t *p) {
	return (e16){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
	             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
}
// Lane l of a 16-lane vector holds bfloat16 elements 2l and 2l+1.
EI void e16_bf16pair(const uint16_t *p, e16 *e, e16 *o) {
	__m256i m = _mm256_set1_epi32((int)0xffff0000u);
	__m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)(p + 16));
	*e = (e16){_mm256_castsi256_ps(_mm256_slli_epi32(lo, 16)), _mm256_castsi256_ps(_mm256_slli_epi32(hi, 16))};
	*o = (e16){_mm256_castsi256_ps(_mm256_and_si256(lo, m)), _mm256_castsi256_ps(_mm256_and_si256(hi, m))};
}

#define SFX emu512
#define VL 16
#define MR 14
#define ATK 64
#define V e16
#define VZERO e16_zero
#define VLOAD e16_load
#define VSTORE e16_store
#define VBCAST e16_bcast
#define VSET1 e16_set1
#define VFMA e16_fma
#define VADD e16_add
#define VSUB e16_sub
#define VMUL e16_mul
#define VDIV e16_div
#define VMAX e16_max
#define VMIN e16_min
#define VHSUM e16_hsum
#define VHMAX e16_hmax
#define VROUND e16_round
#define VPOW2I e16_pow2i
#define VSEL_LT e16_sel_lt
#define VF16(p) e16_f16((const uint16_t *)(p))
#define VRED8(v) _mm256_add_ps((v).a, (v).b)
#define VBF16PAIR(p, e, o) e16_bf16pair((const uint16_t *)(p), &(e), &(o))
#include "kern_impl.h"
#undef SFX
#undef VL
#undef MR
#undef ATK
#undef V
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VSET1
#undef VFMA
#undef VADD
#undef VSUB
#undef VMUL
#undef VDIV
#undef VMAX
#undef VMIN
#undef VHSUM
#undef VHMAX
#undef VROUND
#undef VPOW2I
#undef VSEL_LT
#undef VF16
#undef VRED8
#undef VBF16PAIR

// emu512's integer kernels: vpdpbusd emulated exactly (bytes widened to
// 16 bits, vpmaddwd, pairs added).
typedef struct {
	__m256i a, b;
} ie16;

EI __m256i dpbusd8(__m256i acc, __m256i u, __m256i s) {
	__m256i ulo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(u)), uhi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(u, 1));
	__m256i slo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(s)), shi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(s, 1));
	__m256i h = _mm256_hadd_epi32(_mm256_madd_epi16(ulo, slo), _mm256_madd_epi16(uhi, shi));
	return _mm256_add_epi32(acc, _mm256_permute4x64_epi64(h, _MM_SHUFFLE(3, 1, 2, 0)));
}
EI ie16 ie16_zero(void) { return (ie16){_mm256_setzero_si256(), _mm256_setzero_si256()}; }
EI ie16 ie16_load(const void *p) {
	return (ie16){_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)((const char *)p + 32))};
}
EI ie16 ie16_bcast4(const void *p) {
	int v;
	memcpy(&v, p, 4);
	return (ie16){_mm256_set1_epi32(v), _mm256_set1_epi32(v)};
}
EI ie16 ie16_dpbusd(ie16 acc, ie16 u, ie16 s) { return (ie16){dpbusd8(acc.a, u.a, s.a), dpbusd8(acc.b, u.b, s.b)}; }
EI e16 ie16_cvt(ie16 v) { return (e16){_mm256_cvtepi32_ps(v.a), _mm256_cvtepi32_ps(v.b)}; }
EI ie16 ie16_join(__m256i a, __m256i b) { return (ie16){a, b}; }
EI ie16 ie16_and(ie16 x, ie16 y) { return (ie16){_mm256_and_si256(x.a, y.a), _mm256_and_si256(x.b, y.b)}; }
EI ie16 ie16_or(ie16 x, ie16 y) { return (ie16){_mm256_or_si256(x.a, y.a), _mm256_or_si256(x.b, y.b)}; }
EI ie16 ie16_set1b(int c) { return (ie16){_mm256_set1_epi8((char)c), _mm256_set1_epi8((char)c)}; }
EI ie16 ie16_bcast32(const void *p) {
	__m256i v = _mm256_loadu_si256((const __m256i *)p);
	return (ie16){v, v};
}
#define ie16_srl16(v, n) ((ie16){_mm256_srli_epi16((v).a, n), _mm256_srli_epi16((v).b, n)})
#define ie16_sll16(v, n) ((ie16){_mm256_slli_epi16((v).a, n), _mm256_slli_epi16((v).b, n)})
#define ie16_srlv16h(v, x, y) ((ie16){_mm256_srli_epi16((v).a, x), _mm256_srli_epi16((v).b, y)})
EI ie16 ie16_head4(const void *p0, const void *p1, const void *p2, const void *p3) {
	return (ie16){_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
	                                      _mm_loadu_si128((const __m128i *)p1), 1),
	              _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p2)),
	                                      _mm_loadu_si128((const __m128i *)p3), 1)};
}
EI ie16 ie16_shufb(ie16 v, ie16 c) { return (ie16){_mm256_shuffle_epi8(v.a, c.a), _mm256_shuffle_epi8(v.b, c.b)}; }
EI e16 ie16_u8f(__m128i x) {
	return (e16){_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(x, 8)))};
}
#define ie16_u8f_lane(v, i) \
	ie16_u8f((i) == 0   ? _mm256_castsi256_si128((v).a)      \
	         : (i) == 1 ? _mm256_extracti128_si256((v).a, 1) \
	         : (i) == 2 ? _mm256_castsi256_si128((v).b)      \
	                    : _mm256_extracti128_si256((v).b, 1))
EI __m256 ie16_f16p4(ie16 v) {
	__m128i lo = _mm_unpacklo_epi32(_mm256_castsi256_si128(v.a), _mm256_extracti128_si256(v.a, 1));
	__m128i hi = _mm_unpacklo_epi32(_mm256_castsi256_si128(v.b), _mm256_extracti128_si256(v.b, 1));
	return _mm256_cvtph_ps(_mm_unpacklo_epi64(lo, hi));
}
EI ie16 ie16_add32(ie16 x, ie16 y) { return (ie16){_mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b)}; }
EI ie16 ie16_sel128(ie16 x, ie16 y, int h) { return h ? (ie16){x.b, y.b} : (ie16){x.a, y.a}; }
EI __m256 e16_perm16h(e16 v, __m256i i) {
	return _mm256_blendv_ps(_mm256_permutevar8x32_ps(v.a, i), _mm256_permutevar8x32_ps(v.b, i),
	                        _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
}
EI e16 e16_perm16(e16 v, const int *idx) {
	return (e16){e16_perm16h(v, _mm256_loadu_si256((const __m256i *)idx)),
	             e16_perm16h(v, _mm256_loadu_si256((const __m256i *)(idx + 8)))};
}
EI e16 e16_f16x4(uint64_t r0, uint64_t r1, uint64_t r2, uint64_t r3) {
	return (e16){_mm256_cvtph_ps(_mm_set_epi64x((long long)r1, (long long)r0)),
	             _mm256_cvtph_ps(_mm_set_epi64x((long long)r3, (long long)r2))};
}
EI e16 e16_bcast4f(const float *p) {
	__m256 v = _mm256_broadcast_ps((const __m128 *)p);
	return (e16){v, v};
}
EI e16 e16_perm8(__m256 v, const int *idx) {
	return (e16){_mm256_permutevar8x32_ps(v, _mm256_loadu_si256((const __m256i *)idx)),
	             _mm256_permutevar8x32_ps(v, _mm256_loadu_si256((const __m256i *)(idx + 8)))};
}

#define SFX emu512
#define IDPBUSD ie16_dpbusd
#define IDPBUSD7 ie16_dpbusd
#define IDPBUSDQ8 ie16_dpbusd
#include "kern_i8_e16.h"

// avx2's integer kernels, for processors with AVX2 but no AVX-512 VNNI: the
// matrix-vector products of kern_i8.h on emu512's two-half vectors, with
// vpdpbusd done by vpmaddubsw (byte pairs into saturating 16-bit sums)
// and vpmaddwd (16-bit pairs into the 32-bit lanes). Exact: a pair's sum
// never saturates, since |s| <= 127 (quant_x), the quants u of every
// dtype but Q8_0 are below 128 (IDPBUSD7) and Q8_0's are taken signed
// (IDPBUSDQ8). The same integer sums and float arithmetic as emu512: the
// same results, bit for bit. The GEMM stays on the float kernels (the 6x32
// integer tile of kern_i8.h needs more registers than AVX2 has).
EI __m256i dpbusd_mb7(__m256i acc, __m256i u, __m256i s) {
	return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
// Q8_0 (IDPBUSDQ8): Σ w·s from the signed quants w = u - 128 as |w| and
// s with w's sign (each pair within 2·128·127), which is c + Σ u·s for c
// = -128·Σs: c is not read.
EI __m256i dpbusd_q8(__m256i u, __m256i s) {
	const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
	return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(s, w)), _mm256_set1_epi16(1));
}
EI ie16 ie16_dpbusd_q8(ie16 c, ie16 u, ie16 s) {
	(void)c;
	return (ie16){dpbusd_q8(u.a, s.a), dpbusd_q8(u.b, s.b)};
}
EI ie16 ie16_dpbusd_mb7(ie16 acc, ie16 u, ie16 s) {
	return (ie16){dpbusd_mb7(acc.a, u.a, s.a), dpbusd_mb7(acc.b, u.b, s.b)};
}

#define STAR_I8_GEMV_ONLY
#define SFX avx2
#define IDPBUSD ie16_dpbusd // (unused: the GEMM is not instantiated)
#define IDPBUSD7 ie16_dpbusd_mb7
#define IDPBUSDQ8 ie16_dpbusd_q8
#include "kern_i8_e16.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
// avxvnni: the same matrix-vector products with AVX-VNNI's vpdpbusd on
// 256-bit vectors (processors with AVX-VNNI but not AVX512_VNNI): exact
// for every byte (no 16-bit pair sums), so IDPBUSD7 and IDPBUSDQ8 are it
// too (Q8_0 adds the lane correction c like emu512). Bit for bit emu512's
// results.
EI ie16 ie16_dpbusd_vnni(ie16 acc, ie16 u, ie16 s) {
	return (ie16){_mm256_dpbusd_avx_epi32(acc.a, u.a, s.a), _mm256_dpbusd_avx_epi32(acc.b, u.b, s.b)};
}

#define STAR_I8_GEMV_ONLY
#define SFX avxvnni
#define IDPBUSD ie16_dpbusd_vnni
#define IDPBUSD7 ie16_dpbusd_vnni
#define IDPBUSDQ8 ie16_dpbusd_vnni
#include "kern_i8_e16.h"
#pragma GCC pop_options // back to avx2,fma,f16c

// Activations for gemv_i8 with weights of dtype dt (see kern_i8.h): each
// row of x quantized per block of 32 (quant_x), zero padded to Kp = K
// rounded up to 64, its bytes moved into the lane order of the dtype's
// unpacked weights (16-byte pieces: Q4_0 orders each whole 128 as 0 2 4
// 6 1 3 5 7 (four blocks' weights 0-15, then 16-31) and swaps the middle
// two of each 64 after the last whole 128,
// Q4_K and Q5_K order each 256 as sub-blocks 0 2 1 3 4 6 5 7); xc each
// lane's -c·Σq for the offset c of the dtype's unsigned quants (128 for
// Q8_0, 8 for Q4_0, 32 for Q6_K, 0 for the K-quants with mins); per block
// xs = dx·Σq and dxn = dx, per group of 16 dx16 = dx (zero past K).
static void quant_x_rows(int dt, const float *x, long n, long K, int8_t *xq, int32_t *xc, float *xs, float *dxn,
                         float *dx16) {
	const long Kp = (K + 63) & ~63L, nb = Kp / 32, B = nb + 8, B16 = Kp / 16 + 8;
	int8_t qn[Kp];
	const int c = dt == STAR_Q8_0 ? 128 : dt == STAR_Q4_0 ? 8 : dt == STAR_Q6_K ? 32 : 0;
	static const int k4[8] = {0, 2, 1, 3, 4, 6, 5, 7}, q40[4] = {0, 2, 1, 3}, q4w[8] = {0, 2, 4, 6, 1, 3, 5, 7};
	for (long t = 0; t < n; t++) {
		int8_t *q = xq + t * Kp;
		int32_t *cc = xc + t * (Kp / 4);
		float *s = xs + t * B, *d = dxn + t * B, *d16 = dx16 + t * B16;
		memset(s, 0, sizeof(float) * B);
		memset(d, 0, sizeof(float) * B);
		memset(d16, 0, sizeof(float) * B16);
		quant_x(x + t * K, K, 32, qn, d, s);
		memset(qn + K, 0, Kp - K);
		for (long b = 0; b < K / 32; b++)
			d16[2 * b] = d16[2 * b + 1] = d[b];
		for (long pc = 0; pc < Kp / 16; pc++) { // destination 16-byte piece
			long src = pc;
			if (dt == STAR_Q4_K || dt == STAR_Q5_K)
				src = pc / 16 * 16 + 2 * k4[pc / 2 % 8] + pc % 2;
			else if (dt == STAR_Q4_0 && (pc / 8 + 1) * 128 <= K)
				src = pc / 8 * 8 + q4w[pc % 8];
			else if (dt == STAR_Q4_0)
				src = pc / 4 * 4 + q40[pc % 4];
			memcpy(q + 16 * pc, qn + 16 * src, 16);
		}
		for (long j = 0; j < Kp / 4; j++)
			cc[j] = -c * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
	}
}

static inline __attribute__((always_inline)) float bf16_f32(uint16_t h) {
	uint32_t b = (uint32_t)h << 16;
	float f;
	memcpy(&f, &b, 4);
	return f;
}

// to_bf16 rounds x[0:n] to bfloat16, to nearest even (NaN stays NaN).
static void to_bf16(const float *x, long n, uint16_t *y) {
	long i = 0;
	const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), q = _mm256_set1_epi32(0x400000);
	for (; i + 16 <= n; i += 16) {
		__m256i r[2];
		for (int h = 0; h < 2; h++) {
			__m256 f = _mm256_loadu_ps(x + i + 8 * h);
			__m256i b = _mm256_castps_si256(f);
			__m256i rn = _mm256_add_epi32(b, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b, 16), one)));
			__m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
			r[h] = _mm256_srli_epi32(_mm256_blendv_epi8(rn, _mm256_or_si256(b, q), nan), 16);
		}
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), _MM_SHUFFLE(3, 1, 2, 0));
		_mm256_storeu_si256((__m256i *)(y + i), p);
	}
	for (; i < n; i++) {
		uint32_t b;
		memcpy(&b, x + i, 4);
		y[i] = x[i] != x[i] ? (uint16_t)((b | 0x400000) >> 16) : (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
	}
}

// emu512's bfloat16 dot products: vdpbf16ps as two FMAs per lane (each
// product of two bfloat16 is exact in float32).
EI __m256 dpbf16_8(__m256 acc, __m256i b, __m256i c) {
	const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
	acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), _mm256_castsi256_ps(_mm256_slli_epi32(c, 16)), acc);
	return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(b, hi)), _mm256_castsi256_ps(_mm256_and_si256(c, hi)), acc);
}
EI e16 e16_dpbf16(e16 acc, ie16 b, ie16 c) { return (e16){dpbf16_8(acc.a, b.a, c.a), dpbf16_8(acc.b, b.b, c.b)}; }

#define SFX emu512
#define VL 16
#define MRB 14
#define V e16
#define VZERO e16_zero
#define VLOAD e16_load
#define VSTORE e16_store
#define VADD e16_add
#define VHSUM e16_hsum
#define BV ie16
#define BLOAD ie16_load
#define BBCAST2 ie16_bcast4
#define VDPBF16 e16_dpbf16
#include "kern_bf16.h"
#undef SFX
#undef VL
#undef MRB
#undef V
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VADD
#undef VHSUM
#undef BV
#undef BLOAD
#undef BBCAST2
#undef VDPBF16

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// avx512 with AVX512_BF16: the bfloat16 dot-product kernels (called only
// where star_cpu_features reports BF16).

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")

#define SFX avx512
#define VL 16
#define MRB 14
#define V __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VADD _mm512_add_ps
#define VHSUM _mm512_reduce_add_ps
#define BV __m512bh
#define BLOAD(p) ((__m512bh)_mm512_loadu_si512((const void *)(p)))
#define BBCAST2(p) ((__m512bh)_mm512_set1_epi32(*(const int *)(p)))
#define VDPBF16(a, b, c) _mm512_dpbf16_ps(a, b, c)
#include "kern_bf16.h"
#undef SFX
#undef VL
#undef MRB
#undef V
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VADD
#undef VHSUM
#undef BV
#undef BLOAD
#undef BBCAST2
#undef VDPBF16

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// avx512 with AVX512_VNNI: the integer kernels (called only where
// star_cpu_features reports VNNI).

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")

#define SFX avx512
#define VL 16
#define MRI 6
#define V __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL _mm512_mul_ps
#define VADD _mm512_add_ps
#define VHSUM _mm512_reduce_add_ps
#define IV __m512i
#define IZERO() _mm512_setzero_si512()
#define ILOAD(p) _mm512_loadu_si512((const void *)(p))
#define IBCAST4(p) _mm512_set1_epi32(*(const int *)(p))
#define IDPBUSD(a, u, s) _mm512_dpbusd_epi32(a, u, s)
#define IDPBUSD7 IDPBUSD
#define IDPBUSDQ8 IDPBUSD
#define ICVT(v) _mm512_cvtepi32_ps(v)
#define IJOIN(a, b) _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1)
#define VPERM8(v, idx) _mm512_permutexvar_ps(_mm512_loadu_si512((const void *)(idx)), _mm512_castps256_ps512(v))
#define IAND _mm512_and_si512
#define IOR _mm512_or_si512
#define ISET1B(c) _mm512_set1_epi8((char)(c))
#define ISRL16(v, n) _mm512_srli_epi16(v, n)
#define ISLL16(v, n) _mm512_slli_epi16(v, n)
#define IBCAST32(p) _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p)))
#define ISRLV16H(v, x, y) \
	_mm512_srlv_epi16(v, _mm512_inserti64x4(_mm512_set1_epi16(x), _mm256_set1_epi16(y), 1))
#define IHEAD4(p0, p1, p2, p3) \
	_mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p0))), \
	                                                         _mm_loadu_si128((const __m128i *)(p1)), 1),                     \
	                                      _mm_loadu_si128((const __m128i *)(p2)), 2),                                        \
	                   _mm_loadu_si128((const __m128i *)(p3)), 3)
#define ISHUFB(v, c) _mm512_shuffle_epi8(v, c)
#define IU8F(v, i) _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, i)))
#define IF16P4(v) \
	_mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), v)))
#define VLO8(v) _mm512_castps512_ps256(v)
#define VHI8(v) _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
#define IADD32 _mm512_add_epi32
#define ISEL128(a, b, h) ((h) ? _mm512_shuffle_i64x2(a, b, 0xEE) : _mm512_shuffle_i64x2(a, b, 0x44))
#define VPERM16(v, idx) _mm512_permutexvar_ps(_mm512_loadu_si512((const void *)(idx)), v)
#define VF16X4(r0, r1, r2, r3) \
	_mm512_cvtph_ps(_mm256_set_epi64x((long long)(r3), (long long)(r2), (long long)(r1), (long long)(r0)))
#define VBCAST4F(p) _mm512_broadcast_f32x4(_mm_loadu_ps(p))
#include "kern_i8.h" // releases the vocabulary above

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// The GEMM on AMX tiles (kern_amx.h): emu512 with every tile instruction
// emulated in C (slow and exact, for tests on processors without AMX), and
// avx512 native (called only where star_cpu_features reports AMX).

struct star_tilecfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

static __thread uint8_t etile[8][16][64]; // a thread's eight emulated tiles
static void et_zero(int t) { memset(etile[t], 0, sizeof etile[t]); }
static void et_load(int t, const void *p, long stride) {
	for (int r = 0; r < 16; r++)
		memcpy(etile[t][r], (const char *)p + r * stride, 64);
}
static void et_store(int t, void *p, long stride) {
	for (int r = 0; r < 16; r++)
		memcpy((char *)p + r * stride, etile[t][r], 64);
}
static void et_dpbf16ps(int c, int a, int b) {
	for (int m = 0; m < 16; m++)
		for (int n = 0; n < 16; n++) {
			float acc;
			memcpy(&acc, etile[c][m] + 4 * n, 4);
			for (int k = 0; k < 16; k++) {
				uint16_t a0, a1, b0, b1;
				memcpy(&a0, etile[a][m] + 4 * k, 2);
				memcpy(&a1, etile[a][m] + 4 * k + 2, 2);
				memcpy(&b0, etile[b][k] + 4 * n, 2);
				memcpy(&b1, etile[b][k] + 4 * n + 2, 2);
				acc += bf16_f32(a0) * bf16_f32(b0) + bf16_f32(a1) * bf16_f32(b1);
			}
			memcpy(etile[c][m] + 4 * n, &acc, 4);
		}
}
#define TCFG() memset(etile, 0, sizeof etile)
#define TZERO(t) et_zero(t)
#define TLOAD(t, p, s) et_load(t, p, s)
#define TSTORE(t, p, s) et_store(t, p, s)
#define TDPBF16PS(c, a, b) et_dpbf16ps(c, a, b)
#define TRELEASE() ((void)0)
#define SFX emu512
#include "kern_amx.h"
#undef SFX

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c,amx-tile,amx-bf16")

// GCC's tile intrinsics are asm statements that tell the compiler of the
// pointer only, not of the memory read: the barrier before a load or a
// configuration makes sure every store to it has been made.
#define STAR_BARRIER() __asm__ volatile("" ::: "memory")
static inline __attribute__((always_inline)) void amx_cfg(void) {
	struct star_tilecfg c;
	memset(&c, 0, sizeof c);
	c.palette = 1;
	for (int t = 0; t < 8; t++) {
		c.rows[t] = 16;
		c.colsb[t] = 64;
	}
	STAR_BARRIER();
	_tile_loadconfig(&c);
}
#define TCFG() amx_cfg()
#define TZERO(t) _tile_zero(t)
#define TLOAD(t, p, s)                  \
	do {                            \
		STAR_BARRIER();         \
		_tile_loadd(t, p, s);   \
	} while (0)
#define TSTORE(t, p, s) _tile_stored(t, p, s)
#define TDPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define TRELEASE() _tile_release()
#define SFX avx512
#include "kern_amx.h"
#undef SFX

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// avx512: 16 lanes.

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")

#define SFX avx512
#define VL 16
#define MR 14
#define ATK 64
#define V __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VHSUM _mm512_reduce_add_ps
#define VHMAX _mm512_reduce_max_ps
#define VROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VPOW2I(n) \
	_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define VSEL_LT(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x)
#define VF16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VRED8(v) \
	_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
#define VBF16PAIR(p, e, o)                                                                           \
	do {                                                                                         \
		__m512i w_ = _mm512_loadu_si512((const void *)(p));                                  \
		e = _mm512_castsi512_ps(_mm512_slli_epi32(w_, 16));                                  \
		o = _mm512_castsi512_ps(_mm512_and_si512(w_, _mm512_set1_epi32((int)0xffff0000u))); \
	} while (0)
#include "kern_impl.h"

#pragma GCC pop_options

// ---------------------------------------------------------------------------
// Entry points: dispatch on the variant.

#define DISPATCH(v, call)           \
	switch (v) {                \
	case STAR_AVX512:           \
		call(avx512);       \
		break;              \
	case STAR_EMU512:           \
		call(emu512);       \
		break;              \
	default:                    \
		call(avx2);         \
		break;              \
	}

void star_params(int v, int *mr, int *nr, int *atk, int *chunk) {
	*atk = 64;
	if (v == STAR_AVX512 || v == STAR_EMU512) {
		*mr = 14;
		*nr = 32;
	} else {
		*mr = 6;
		*nr = 16;
	}
	*chunk = *nr;
}

void star_swiglu(int v, float *h1, const float *h3, long n) {
#define C_(s) swiglu_##s(h1, h3, n)
	DISPATCH(v, C_)
#undef C_
}

void star_gemm_packa(int v, const float *x, long M, long K, float *ap, long p0, long p1) {
#define C_(s) gemm_packa_##s(x, M, K, ap, p0, p1)
	DISPATCH(v, C_)
#undef C_
}

void star_gemm_cols(int v, const float *ap, long M, long K, const void *w, int dt, float *out, long N, long j0,
                    long j1, float *bp, float *tmp, int kc, int mc) {
#define C_(s) gemm_cols_##s(ap, M, K, w, dt, out, N, j0, j1, bp, tmp, kc, mc)
	DISPATCH(v, C_)
#undef C_
}

void star_pack_x(int v, int dt, const float *x, long n, long K, float *xp) {
	if (dt != STAR_BF16) {
		memcpy(xp, x, sizeof(float) * n * K);
		return;
	}
#define C_(s) pack_x_##s(x, n, K, xp)
	DISPATCH(v, C_)
#undef C_
}

void star_gemv(int v, const void *w, int dt, long K, const float *xp, long n, float *out, long N, long r0,
               long r1) {
#define C_(s) gemv_##s(w, dt, K, xp, n, out, N, r0, r1)
	DISPATCH(v, C_)
#undef C_
}

long star_attn_ws(int v, long rows, long D) {
	long r = 0;
#define C_(s) r = attn_ws_##s(rows, D)
	DISPATCH(v, C_)
#undef C_
	return r;
}

void star_attn(int v, const float *q, const void *k, const void *vv, int dt, long khs, long kts, long vhs, long vts,
               float *out, float *lse, long nq, long nk, long H, long HKV, long D, int causal, long i0, long i1, long kh,
               long kb, long ke, float *ws) {
#define C_(s) attn_##s(q, k, vv, dt, khs, kts, vhs, vts, out, lse, nq, nk, H, HKV, D, causal, i0, i1, kh, kb, ke, ws)
	DISPATCH(v, C_)
#undef C_
}

// Integer dot products, bfloat16 dot products and AMX tiles: avx512
// (native, where star_cpu_features reports them) or emu512 (emulated).
#define DISPATCH_I8(v, call)        \
	switch (v) {                \
	case STAR_AVX512:           \
		call(avx512);       \
		break;              \
	default:                    \
		call(emu512);       \
		break;              \
	}

void star_quant_x(int dt, const float *x, long n, long K, int8_t *xq, int32_t *xc, float *xs, float *dxn, float *dx16) {
	quant_x_rows(dt, x, n, K, xq, xc, xs, dxn, dx16);
}

void star_gemv_i8(int v, const void *w, int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                  const float *dxn, const float *dx16, long n, float *out, long N, long r0, long r1) {
#define C_(s) gemv_i8_##s(w, dt, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1)
	if (v == STAR_AVX2) {
		C_(avx2); // vpmaddubsw (the GEMM: float kernels)
		return;
	}
	if (v == STAR_AVXVNNI) {
		C_(avxvnni); // 256-bit vpdpbusd (the GEMM: float kernels)
		return;
	}
	DISPATCH_I8(v, C_)
#undef C_
}

void star_gemm_packa_i8(int v, int dt, const float *x, long M, long K, uint8_t *ap, long p0, long p1) {
#define C_(s) gemm_packa_i8_##s(x, M, K, dt == STAR_Q6_K ? 16 : 32, ap, p0, p1)
	DISPATCH_I8(v, C_)
#undef C_
}

void star_gemm_cols_i8(int v, const uint8_t *ap, long M, long K, const void *w, int dt, float *out, long N, long j0,
                       long j1, uint8_t *bp, float *tmp, int kc, int mc) {
#define C_(s) gemm_cols_i8_##s(ap, M, K, w, dt, out, N, j0, j1, bp, tmp, kc, mc)
	DISPATCH_I8(v, C_)
#undef C_
}

// The GEMM on AMX tiles: avx512 (native) or emu512 (emulated).
long star_panel_a_amx_elems(long K) { return panel_a_amx_elems_emu512((K + 31) & ~31L); }

void star_gemm_packa_amx(int v, const float *x, long M, long K, uint16_t *ap, long p0, long p1) {
#define C_(s) gemm_packa_amx_##s(x, M, K, ap, p0, p1)
	DISPATCH_I8(v, C_)
#undef C_
}

void star_gemm_cols_amx(int v, const uint16_t *ap, long M, long K, const uint16_t *w, float *out, long N, long j0,
                        long j1, uint16_t *bp, float *ws, int kc, int mc) {
#define C_(s) gemm_cols_amx_##s(ap, M, K, w, out, N, j0, j1, bp, ws, kc, mc)
	DISPATCH_I8(v, C_)
#undef C_
}

// bfloat16 dot products: avx512 (native AVX512_BF16) or emu512.
void star_to_bf16(const float *x, long n, uint16_t *y) { to_bf16(x, n, y); }

void star_gemv_bf(int v, const void *w, long K, const uint16_t *xb, long n, float *out, long N, long r0, long r1) {
#define C_(s) gemv_bf_##s(w, K, xb, n, out, N, r0, r1)
	DISPATCH_I8(v, C_)
#undef C_
}

void star_gemm_cols_bf(int v, const uint32_t *ap, long M, long K2, const void *w, float *out, long N, long j0, long j1,
                       uint32_t *bp, float *tmp, int kc2, int mc) {
#define C_(s) gemm_cols_bf_##s(ap, M, K2, w, out, N, j0, j1, bp, tmp, kc2, mc)
	DISPATCH_I8(v, C_)
#undef C_
}

// ---------------------------------------------------------------------------
// The matrix-vector phases, one call per thread: each thread claims runs of
// 4-row items from the shared cursor next (a Go atomic.Int64) until none is
// left, as claimGuided (kern_amd64.go) does, and computes them. One cgo
// call per thread and product instead of one per run: a call that outlasts
// the Go scheduler's 20 µs check hands its processor to another thread,
// and a decode step makes a thousand runs (tens of thousands of context
// switches a second, measured).
static int claim_guided(long long *next, long total, long nt, long minu, long maxu, long *lo, long *hi) {
	for (;;) {
		long long cur = __atomic_load_n(next, __ATOMIC_SEQ_CST);
		if (cur >= total)
			return 0;
		long n = (total - (long)cur) / (2 * nt);
		n = n < minu ? minu : n > maxu ? maxu : n;
		long long h = cur + n < total ? cur + n : total;
		if (__atomic_compare_exchange_n(next, &cur, h, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			*lo = (long)cur;
			*hi = (long)h;
			return 1;
		}
	}
}

void star_gemv_claim(int v, const void *w, int dt, long K, const float *xp, long n, float *out, long N,
                     long long *next, long items, long nt, long chunk) {
	long b0, b1;
	while (claim_guided(next, items, nt, 4, chunk, &b0, &b1))
		star_gemv(v, w, dt, K, xp, n, out, N, b0 * 4, b1 * 4 < N ? b1 * 4 : N);
}

void star_gemv_i8_claim(int v, const void *w, int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                        const float *dxn, const float *dx16, long n, float *out, long N, long long *next, long items,
                        long nt, long chunk) {
	long b0, b1;
	while (claim_guided(next, items, nt, 4, chunk, &b0, &b1))
		star_gemv_i8(v, w, dt, K, xq, xc, xs, dxn, dx16, n, out, N, b0 * 4, b1 * 4 < N ? b1 * 4 : N);
}

void star_gemv_bf_claim(int v, const void *w, long K, const uint16_t *xb, long n, float *out, long N, long long *next,
                        long items, long nt, long chunk) {
	long b0, b1;
	while (claim_guided(next, items, nt, 4, chunk, &b0, &b1))
		star_gemv_bf(v, w, K, xb, n, out, N, b0 * 4, b1 * 4 < N ? b1 * 4 : N);
}
