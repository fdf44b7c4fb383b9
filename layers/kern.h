// C kernels of the fast CPU backend (kern_amd64.c); see kern_amd64.go.
#ifndef STAR_KERN_H
#define STAR_KERN_H

#include <stdint.h>

// Kernel variants. Each is one instantiation of kern_impl.h.
enum {
	STAR_AVX2 = 1,   // 8-lane AVX2/FMA/F16C
	STAR_AVX512 = 2, // 16-lane AVX-512F
	STAR_EMU512 = 3, // the 16-lane code lowered to AVX2 (tests only)
	STAR_AVXVNNI = 4, // integer matrix-vector products only: emu512's code on AVX-VNNI's 256-bit vpdpbusd
};

// Weight dtypes, as weights.DType.
enum {
	STAR_F32 = 0,
	STAR_F16 = 1,
	STAR_BF16 = 2,
	STAR_Q8_0 = 3,
	STAR_Q4_0 = 4,
	STAR_Q4_K = 5,
	STAR_Q5_K = 6,
	STAR_Q6_K = 7,
};

// star_cpu_level: 0 no usable SIMD, 1 AVX2+FMA+F16C, 2 also AVX-512F.
int star_cpu_level(void);

// star_cpu_features: what the processor adds to AVX-512 (level 2), as
// bits: VNNI (integer dot products vpdpbusd, with AVX512BW/VL) and BF16
// (vdpbf16ps); and AMD, the vendor (where vdpbf16ps outruns the FMAs);
// AMX: AMX-BF16 tiles, the OS having granted this process the tile state
// (arch_prctl ARCH_REQ_XCOMP_PERM, asked here once). AVXVNNI (any level
// >= 1): AVX-VNNI, vpdpbusd on 256-bit vectors without AVX-512 (Intel
// since Alder Lake, AMD since Zen 5).
enum { STAR_FEAT_VNNI = 1, STAR_FEAT_BF16 = 2, STAR_FEAT_AMD = 4, STAR_FEAT_AMX = 8, STAR_FEAT_AVXVNNI = 16 };
int star_cpu_features(void);

// The GEMM of BF16 weights on AMX tiles (kern_amx.h; avx512 native where
// star_cpu_features reports AMX, emu512 emulated), x rounded to bfloat16:
// star_gemm_packa_amx rounds x into panels of 32 rows
// (star_panel_a_amx_elems(K) bfloat16 each), star_gemm_cols_amx computes
// output columns [j0, j1); bp holds kc*32 bfloat16 per 32 claimed
// columns, ws 32*32 floats.
long star_panel_a_amx_elems(long K);
void star_gemm_packa_amx(int v, const float *x, long M, long K, uint16_t *ap, long p0, long p1);
void star_gemm_cols_amx(int v, const uint16_t *ap, long M, long K, const uint16_t *w, float *out, long N, long j0,
                        long j1, uint16_t *bp, float *ws, int kc, int mc);

// star_params reports the register tile (mr x nr), the attention key tile
// and the x packing chunk of variant v.
void star_params(int v, int *mr, int *nr, int *atk, int *chunk);

// GEMM out[M, N] = x[M, K] . w[N, K]^T in two phases: pack x into MR-row
// panels ap (panels [p0, p1)), then compute output columns [j0, j1).
void star_gemm_packa(int v, const float *x, long M, long K, float *ap, long p0, long p1);
void star_gemm_cols(int v, const float *ap, long M, long K, const void *w, int dt,
                    float *out, long N, long j0, long j1, float *bp, float *tmp, int kc, int mc);

// Small-n product: out[t*N + r] for t < n, rows [r0, r1). xp is x as
// star_pack_x left it (BF16: even/odd split per chunk).
void star_pack_x(int v, int dt, const float *x, long n, long K, float *xp);
void star_gemv(int v, const void *w, int dt, long K, const float *xp, long n,
               float *out, long N, long r0, long r1);

// Integer dot products for quantized weights (RoundInt8), on variant
// avx512 (native VNNI; only where star_cpu_features says so) or emu512.
// Matrix-vector: star_quant_x prepares the n rows of x for dtype dt (per
// row: xq Kp bytes, Kp = K rounded up to 64; xc Kp/4 int32; xs and dxn
// Kp/32 + 8 floats; dx16 Kp/16 + 8 floats), star_gemv_i8 computes rows
// [r0, r1). GEMM: x packed into panels of 6 rows, K*6 + 8*(K/G)*6 bytes
// each (G = 16 for Q6_K, else 32), then output columns [j0, j1) with
// kc*32 + 8*(kc/G)*32 bytes of bp per 32 columns and 6*32 floats of tmp.
void star_quant_x(int dt, const float *x, long n, long K, int8_t *xq, int32_t *xc, float *xs, float *dxn, float *dx16);
void star_gemv_i8(int v, const void *w, int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                  const float *dxn, const float *dx16, long n, float *out, long N, long r0, long r1);
void star_gemm_packa_i8(int v, int dt, const float *x, long M, long K, uint8_t *ap, long p0, long p1);
void star_gemm_cols_i8(int v, const uint8_t *ap, long M, long K, const void *w, int dt, float *out, long N, long j0,
                       long j1, uint8_t *bp, float *tmp, int kc, int mc);

// bfloat16 dot products for BF16 weights (RoundBF16), on variant avx512
// (native AVX512_BF16; only where star_cpu_features says so) or emu512,
// rows of even length K. star_to_bf16 rounds x to bfloat16 (nearest
// even). Matrix-vector: star_gemv_bf on the n rounded rows. GEMM: the
// rounded rows packed by star_gemm_packa as floats of K/2 columns (pairs),
// then output columns [j0, j1) with kc2*roundup(j1-j0, 32) words of bp.
void star_to_bf16(const float *x, long n, uint16_t *y);
void star_gemv_bf(int v, const void *w, long K, const uint16_t *xb, long n, float *out, long N, long r0, long r1);
void star_gemm_cols_bf(int v, const uint32_t *ap, long M, long K2, const void *w, float *out, long N, long j0, long j1,
                       uint32_t *bp, float *tmp, int kc2, int mc);

// h1[i] = silu(h1[i]) * h3[i].
void star_swiglu(int v, float *h1, const float *h3, long n);

// Attention of the queries [i0, i1) of kv head kh over the keys [kb, ke),
// written to out [nq][H][D] and lse [nq][H]. K and V (dtype dt) hold
// element (kv head h, token j, d) at h*khs + j*kts + d (k) and h*vhs +
// j*vts + d (vv). ws: star_attn_ws(v, (i1-i0)*H/HKV, D) floats.
long star_attn_ws(int v, long rows, long D);
void star_attn(int v, const float *q, const void *k, const void *vv, int dt, long khs, long kts, long vhs, long vts,
               float *out, float *lse, long nq, long nk, long H, long HKV, long D, int causal, long i0, long i1, long kh,
               long kb, long ke, float *ws);

// The matrix-vector products above on one thread of nt: runs of 4-row
// items [0, items) claimed from the shared cursor next (a Go atomic.Int64,
// as claimGuided: about the remaining / (2 nt), within [4, chunk]) until
// none is left.
void star_gemv_claim(int v, const void *w, int dt, long K, const float *xp, long n, float *out, long N,
                     long long *next, long items, long nt, long chunk);
void star_gemv_i8_claim(int v, const void *w, int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                        const float *dxn, const float *dx16, long n, float *out, long N, long long *next, long items,
                        long nt, long chunk);
void star_gemv_bf_claim(int v, const void *w, long K, const uint16_t *xb, long n, float *out, long N, long long *next,
                        long items, long nt, long chunk);

#endif
