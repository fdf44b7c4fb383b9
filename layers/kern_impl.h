// Kernel template, included by kern_amd64.c once per variant inside a
// target pragma. The includer defines:
//
//	SFX            function name suffix
//	VL             float lanes per vector;  MR  rows of the register tile
//	V              the vector type, and the operations below on it
//	VZERO() VLOAD(p) VSTORE(p, v) VBCAST(p) VSET1(x) VFMA(a, b, c) = a*b+c
//	VADD VSUB VMUL VDIV VMAX VMIN VHSUM(v) VHMAX(v) VROUND(v) VPOW2I(n)
//	VSEL_LT(a, b, x, y) = a < b ? x : y (lane-wise)
//	VF16(p)        VL halves at p, widened
//	VBF16PAIR(p, e, o)  2*VL bfloat16 at p: e = the even elements, o = the odd
//
// The register tile is MR x NR (NR = 2*VL) floats: MR broadcast rows of A
// times two vectors of B per k step.

#define NR (2 * VL)
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(name, SFX)

#define INL static inline __attribute__((always_inline))

// ---------------------------------------------------------------------------
// Register-tile kernels.

// C[MR][NR] (=|+=) sum_k A[k][0:MR]^T B[k][0:NR]; A element (k, r) at
// a[k*lda + r], B row k at b + k*ldb, C row r at c + r*ldc.
static void F(ukr)(long kc, const float *a, long lda, const float *b, long ldb, float *c, long ldc, int acc) {
	V c0[MR], c1[MR];
	// The C tile is needed only at the end: start fetching it now.
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++) {
		_mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
		_mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
	}
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++) {
		c0[r] = VZERO();
		c1[r] = VZERO();
	}
#pragma GCC unroll 2
	for (long k = 0; k < kc; k++) {
		V b0 = VLOAD(b), b1 = VLOAD(b + VL);
#pragma GCC unroll 16
		for (int r = 0; r < MR; r++) {
			V ar = VBCAST(a + r);
			c0[r] = VFMA(ar, b0, c0[r]);
			c1[r] = VFMA(ar, b1, c1[r]);
		}
		a += lda;
		b += ldb;
	}
	if (acc) {
#pragma GCC unroll 16
		for (int r = 0; r < MR; r++) {
			VSTORE(c + r * ldc, VADD(VLOAD(c + r * ldc), c0[r]));
			VSTORE(c + r * ldc + VL, VADD(VLOAD(c + r * ldc + VL), c1[r]));
		}
	} else {
#pragma GCC unroll 16
		for (int r = 0; r < MR; r++) {
			VSTORE(c + r * ldc, c0[r]);
			VSTORE(c + r * ldc + VL, c1[r]);
		}
	}
}

// As ukr with A row-major: element (k, r) at a[r*ATK + k]; accumulates.
static void F(ukr_rows)(long kc, const float *a, const float *b, long ldb, float *c, long ldc) {
	V c0[MR], c1[MR];
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++) {
		c0[r] = VZERO();
		c1[r] = VZERO();
	}
#pragma GCC unroll 2
	for (long k = 0; k < kc; k++) {
		V b0 = VLOAD(b), b1 = VLOAD(b + VL);
#pragma GCC unroll 16
		for (int r = 0; r < MR; r++) {
			V ar = VBCAST(a + r * ATK + k);
			c0[r] = VFMA(ar, b0, c0[r]);
			c1[r] = VFMA(ar, b1, c1[r]);
		}
		b += ldb;
	}
#pragma GCC unroll 16
	for (int r = 0; r < MR; r++) {
		VSTORE(c + r * ldc, VADD(VLOAD(c + r * ldc), c0[r]));
		VSTORE(c + r * ldc + VL, VADD(VLOAD(c + r * ldc + VL), c1[r]));
	}
}

// ---------------------------------------------------------------------------
// GEMM.

static void F(gemm_packa)(const float *x, long M, long K, float *ap, long p0, long p1) {
	pack_a(x, M, K, ap, p0, p1, MR);
}

// Output columns [j0, j1) of out[M, N] (j0 a multiple of NR). bp holds
// kc*roundup(j1-j0, NR) floats, tmp MR*NR.
static void F(gemm_cols)(const float *ap, long M, long K, const void *w, int dt, float *out, long N,
                         long j0, long j1, float *bp, float *tmp, int KC, int MC) {
	MC -= MC % MR;
	if (MC < MR)
		MC = MR;
	for (long pc = 0; pc < K; pc += KC) {
		long kc = K - pc < KC ? K - pc : KC;
		for (long jr = j0; jr < j1; jr += NR) {
			long nr = j1 - jr < NR ? j1 - jr : NR;
			pack_b(bp + (jr - j0) * kc, w, dt, K, jr, (int)nr, pc, (int)kc, NR);
		}
		// While computing on this panel, fetch the next one's weights into
		// L2 (a few lines per register tile): packing reads short strided
		// runs of rows that hardware prefetchers do not follow.
		const long pn = pc + KC < K ? pc + KC : K, pe = pn + KC < K ? pn + KC : K;
		const long rowb = dt_bytes(dt, K), pnb = dt_bytes(dt, pn), lines = (dt_bytes(dt, pe) - pnb + 63) / 64;
		for (long ic = 0; ic < M; ic += MC) {
			long ie = ic + MC < M ? ic + MC : M;
			for (long jr = j0; jr < j1; jr += NR) {
				long nr = j1 - jr < NR ? j1 - jr : NR;
				const float *b = bp + (jr - j0) * kc;
				long pf = ic == 0 ? nr * lines : 0, pfi = 0; // lines to prefetch, done
				const long pfper = (pf + (ie - ic + MR - 1) / MR - 1) / ((ie - ic + MR - 1) / MR);
				for (long ir = ic; ir < ie; ir += MR) {
					for (long e = pfi + pfper < pf ? pfi + pfper : pf; pfi < e; pfi++)
						_mm_prefetch((const char *)w + (jr + pfi / lines) * rowb + pnb + pfi % lines * 64,
						             _MM_HINT_T1);
					long mr = M - ir < MR ? M - ir : MR;
					const float *a = ap + ir * K + pc * MR;
					float *c = out + ir * N + jr;
					if (mr == MR && nr == NR) {
						F(ukr)(kc, a, MR, b, NR, c, N, pc > 0);
						continue;
					}
					F(ukr)(kc, a, MR, b, NR, tmp, NR, 0);
					for (long r = 0; r < mr; r++)
						for (long j = 0; j < nr; j++)
							c[r * N + j] = pc > 0 ? c[r * N + j] + tmp[r * NR + j] : tmp[r * NR + j];
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Small-n products that stream the weights in their stored dtype.

// For BF16, each chunk of 2*VL elements of a row of x is stored as its VL
// even elements then its VL odd ones, to match VBF16PAIR; the tail after
// the last whole chunk is copied as is. Other dtypes use x unchanged.
static void F(pack_x)(const float *x, long n, long K, float *xp) {
	for (long t = 0; t < n; t++) {
		const float *s = x + t * K;
		float *d = xp + t * K;
		long k = 0;
		for (; k + NR <= K; k += NR)
			for (int l = 0; l < VL; l++) {
				d[k + l] = s[k + 2 * l];
				d[k + VL + l] = s[k + 2 * l + 1];
			}
		for (; k < K; k++)
			d[k] = s[k];
	}
}

// out[t*N + r + i] for i < R, t < T: dot products of weight rows r+i with
// the T rows of xp. Two accumulator sets while they fit in registers. The
// next R rows are prefetched as these are read: hardware prefetchers stop
// at page boundaries, and a BF16 row of 2048 is one page.
INL void F(dotblk)(const void *w, const int dt, long K, long r, const int R, const float *xp, const int T,
                   float *out, long N) {
	V acc[4][4], acc2[4][4];
	const int two = R * T <= 4;
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			acc[i][t] = VZERO();
			acc2[i][t] = VZERO();
		}
	long k = 0;
	if (dt == STAR_BF16) {
		const uint16_t *wr = (const uint16_t *)w + r * K;
		for (; k + NR <= K; k += NR) {
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				_mm_prefetch((const char *)(wr + (R + i) * K + k), _MM_HINT_T0);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				V e, o;
				VBF16PAIR(wr + i * K + k, e, o);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++) {
					acc[i][t] = VFMA(e, VLOAD(xp + t * K + k), acc[i][t]);
					if (two)
						acc2[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc2[i][t]);
					else
						acc[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc[i][t]);
				}
			}
		}
	} else if (dt == STAR_F16) {
		const uint16_t *wr = (const uint16_t *)w + r * K;
		for (; k + NR <= K; k += NR) {
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				_mm_prefetch((const char *)(wr + (R + i) * K + k), _MM_HINT_T0);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				V e = VF16(wr + i * K + k), o = VF16(wr + i * K + k + VL);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++) {
					acc[i][t] = VFMA(e, VLOAD(xp + t * K + k), acc[i][t]);
					if (two)
						acc2[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc2[i][t]);
					else
						acc[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc[i][t]);
				}
			}
		}
	} else {
		const float *wr = (const float *)w + r * K;
		for (; k + NR <= K; k += NR) {
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				_mm_prefetch((const char *)(wr + (R + i) * K + k), _MM_HINT_T0);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				V e = VLOAD(wr + i * K + k), o = VLOAD(wr + i * K + k + VL);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++) {
					acc[i][t] = VFMA(e, VLOAD(xp + t * K + k), acc[i][t]);
					if (two)
						acc2[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc2[i][t]);
					else
						acc[i][t] = VFMA(o, VLOAD(xp + t * K + k + VL), acc[i][t]);
				}
			}
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			float s = VHSUM(two ? VADD(acc[i][t], acc2[i][t]) : acc[i][t]);
			for (long kk = k; kk < K; kk++)
				s += wval(w, dt, (r + i) * K + kk) * xp[t * K + kk];
			out[t * N + r + i] = s;
		}
}

INL void F(gemv_dt)(const void *w, const int dt, long K, const float *xp, long n, float *out, long N, long r0,
                    long r1) {
	long r = r0;
	for (; r + 4 <= r1; r += 4) {
		long t = 0;
		for (; t + 4 <= n; t += 4)
			F(dotblk)(w, dt, K, r, 2, xp + t * K, 4, out + t * N, N), F(dotblk)(w, dt, K, r + 2, 2, xp + t * K, 4, out + t * N, N);
		switch (n - t) {
		case 3:
			F(dotblk)(w, dt, K, r, 4, xp + t * K, 3, out + t * N, N);
			break;
		case 2:
			F(dotblk)(w, dt, K, r, 4, xp + t * K, 2, out + t * N, N);
			break;
		case 1:
			F(dotblk)(w, dt, K, r, 4, xp + t * K, 1, out + t * N, N);
			break;
		}
	}
	for (; r < r1; r++)
		for (long t = 0; t < n; t++)
			F(dotblk)(w, dt, K, r, 1, xp + t * K, 1, out + t * N, N);
}

// Quantized rows (exact path): QC weights at a time of R rows are
// dequantized into wb (as layers/quant computes them), then multiplied
// with the T rows of xp (x as is) in float32.
#define QC 256
INL void F(dotblk_q)(const uint8_t *w, const int dt, long K, long r, const int R, const float *xp, const int T,
                     float *out, long N) {
	float wb[4 * QC];
	const long rowb = dt_bytes(dt, K);
	V acc[4][4];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[i][t] = VZERO();
	for (long k0 = 0; k0 < K; k0 += QC) {
		const long kc = K - k0 < QC ? K - k0 : QC;
		for (int i = 0; i < R; i++) {
			const uint8_t *row = w + (r + i) * rowb;
			_mm_prefetch((const char *)(row + R * rowb + dt_bytes(dt, k0)), _MM_HINT_T0);
			deq_row(row, dt, k0, kc, wb + i * QC);
		}
		for (long k = 0; k < kc; k += VL) // kc is a multiple of 32
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				V wv = VLOAD(wb + i * QC + k);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++)
					acc[i][t] = VFMA(wv, VLOAD(xp + t * K + k0 + k), acc[i][t]);
			}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			out[t * N + r + i] = VHSUM(acc[i][t]);
}
#undef QC

static void F(gemv_q)(const void *w, int dt, long K, const float *xp, long n, float *out, long N, long r0, long r1) {
	const uint8_t *wb = (const uint8_t *)w;
	long r = r0;
	for (; r + 4 <= r1; r += 4) {
		long t = 0;
		for (; t + 4 <= n; t += 4)
			F(dotblk_q)(wb, dt, K, r, 2, xp + t * K, 4, out + t * N, N), F(dotblk_q)(wb, dt, K, r + 2, 2, xp + t * K, 4, out + t * N, N);
		switch (n - t) {
		case 3:
			F(dotblk_q)(wb, dt, K, r, 4, xp + t * K, 3, out + t * N, N);
			break;
		case 2:
			F(dotblk_q)(wb, dt, K, r, 4, xp + t * K, 2, out + t * N, N);
			break;
		case 1:
			F(dotblk_q)(wb, dt, K, r, 4, xp + t * K, 1, out + t * N, N);
			break;
		}
	}
	for (; r < r1; r++)
		for (long t = 0; t < n; t++)
			F(dotblk_q)(wb, dt, K, r, 1, xp + t * K, 1, out + t * N, N);
}

static void F(gemv)(const void *w, int dt, long K, const float *xp, long n, float *out, long N, long r0, long r1) {
	if (dt >= STAR_Q8_0) {
		F(gemv_q)(w, dt, K, xp, n, out, N, r0, r1);
		return;
	}
	switch (dt) {
	case STAR_F32:
		F(gemv_dt)(w, STAR_F32, K, xp, n, out, N, r0, r1);
		break;
	case STAR_F16:
		F(gemv_dt)(w, STAR_F16, K, xp, n, out, N, r0, r1);
		break;
	default:
		F(gemv_dt)(w, STAR_BF16, K, xp, n, out, N, r0, r1);
		break;
	}
}

// ---------------------------------------------------------------------------
// Attention.

// exp, Cephes-style: |rel err| ~ 2e-7; x < -87.3 (and -Inf) gives 0.
INL V F(vexp)(V x) {
	V lo = VSET1(-87.3f);
	V xc = VMIN(VMAX(x, lo), VSET1(88.3f));
	V n = VROUND(VMUL(xc, VSET1(1.44269504088896341f)));
	V r = VFMA(n, VSET1(-0.693359375f), xc);
	r = VFMA(n, VSET1(2.12194440e-4f), r);
	V p = VSET1(1.9875691500E-4f);
	p = VFMA(p, r, VSET1(1.3981999507E-3f));
	p = VFMA(p, r, VSET1(8.3334519073E-3f));
	p = VFMA(p, r, VSET1(4.1665795894E-2f));
	p = VFMA(p, r, VSET1(1.6666665459E-1f));
	p = VFMA(p, r, VSET1(5.0000001201E-1f));
	p = VFMA(p, VMUL(r, r), VADD(r, VSET1(1.0f)));
	return VSEL_LT(x, lo, VZERO(), VMUL(p, VPOW2I(n)));
}

// h1[i] = silu(h1[i]) * h3[i] = h1[i] / (1 + exp(-h1[i])) * h3[i].
static void F(swiglu)(float *h1, const float *h3, long n) {
	long i = 0;
	for (; i + VL <= n; i += VL) {
		V g = VLOAD(h1 + i);
		V e = F(vexp)(VSUB(VZERO(), g));
		VSTORE(h1 + i, VMUL(VDIV(g, VADD(VSET1(1.0f), e)), VLOAD(h3 + i)));
	}
	for (; i < n; i++)
		h1[i] = h1[i] / (1.0f + expf(-h1[i])) * h3[i];
}

#include "kern_attn.h"

#undef NR
#undef F
#undef CAT
#undef CAT2
#undef INL
