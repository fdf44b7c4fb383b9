// C kernels of the fast CPU backend (kern_amd64.c); see kern_amd64.go.
#ifndef STAR_KERN_H
#define STAR_KERN_H

// Kernel variants. Each is one instantiation of kern_impl.h.
enum {
	STAR_AVX2 = 1,   // 8-lane AVX2/FMA/F16C
	STAR_AVX512 = 2, // 16-lane AVX-512F
	STAR_EMU512 = 3, // the 16-lane code lowered to AVX2 (tests only)
};

// Weight dtypes, as weights.DType.
enum { STAR_F32 = 0, STAR_F16 = 1, STAR_BF16 = 2 };

// star_cpu_level: 0 no usable SIMD, 1 AVX2+FMA+F16C, 2 also AVX-512F.
int star_cpu_level(void);

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

#endif
