// Integer dot-product kernels (RoundInt8) for quantized weights, included
// by kern_amd64.c once per 16-lane variant: avx512 with AVX512_VNNI
// (vpdpbusd) and emu512 (vpdpbusd emulated exactly on AVX2, for tests).
// The includer defines the float vocabulary of kern_impl.h (V, VL = 16,
// VZERO, VLOAD, VSTORE, VSET1, VBCAST, VFMA, VMUL, VADD, VHSUM) and:
//
//	IV              16 int32 lanes (64 bytes)
//	IZERO()         zero;  ILOAD(p)  64 bytes at p;  IBCAST4(p)  the 4 bytes at p in every lane
//	IDPBUSD(a, u, s)  lane i of a += Σ_j<4 u[4i+j]·s[4i+j] (u unsigned, s signed bytes)
//	ICVT(v)         int32 lanes to float
//	MRI             rows of the GEMM register tile (NR = 32 columns)
//
// Weights: unpack_row (kern_quant.h) gives unsigned quants u with a
// scale sc and offset of per group of G; activations: quant_x gives int8
// q per block of 32 with scale dx and xs = dx·Σq per group. A group's
// contribution to x·w is sc·dx·Σ u·q + of·xs: exact integer products,
// float32 for the rest.

#define NRI 32
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(name, SFX)
#define INL static inline __attribute__((always_inline))

// ---------------------------------------------------------------------------
// Matrix-vector: rows [r0, r1) of w times the n rows of x as star_quant_x
// left them: xq int8 [n][Kp] (Kp = K rounded up to 64, zero padded), xl
// [n][Kp/4] the scale dx of each lane's 4 activations, xs [n][K/G].

#define QCI 256
INL void F(dot_i8)(const uint8_t *w, const int dt, long K, long Kp, long r, const int R, const int8_t *xq,
                   const float *xl, const float *xs, const int T, float *out, long N) {
	uint8_t ub[4 * QCI] __attribute__((aligned(64)));
	float scl[4 * QCI / 4] __attribute__((aligned(64)));
	float sc[4 * 16], of[4 * 16];
	const int G = dt_group(dt);
	const long rowb = dt_bytes(dt, K), KG = K / G;
	V acc[4][4];
	float oacc[4][4];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			acc[i][t] = VZERO();
			oacc[i][t] = 0;
		}
	for (long k0 = 0; k0 < K; k0 += QCI) {
		const long kc = K - k0 < QCI ? K - k0 : QCI, kcp = (kc + 63) & ~63L, ng = kc / G;
		for (int i = 0; i < R; i++) {
			const uint8_t *row = w + (r + i) * rowb;
			_mm_prefetch((const char *)(row + R * rowb + dt_bytes(dt, k0)), _MM_HINT_T0);
			_mm_prefetch((const char *)(row + R * rowb + dt_bytes(dt, k0) + 64), _MM_HINT_T0);
			unpack_row(row, dt, k0, kc, ub + i * QCI, sc + i * 16, of + i * 16);
			for (long l = 0; l < kc / 4; l++)
				scl[i * (QCI / 4) + l] = sc[i * 16 + l * 4 / G];
			for (long l = kc; l < kcp; l++)
				ub[i * QCI + l] = 0;
			for (long l = kc / 4; l < kcp / 4; l++)
				scl[i * (QCI / 4) + l] = 0;
		}
		for (long k = 0; k < kcp; k += 64) {
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				IV u = ILOAD(ub + i * QCI + k);
				V s = VLOAD(scl + i * (QCI / 4) + k / 4);
#pragma GCC unroll 4
				for (int t = 0; t < T; t++) {
					IV p = IDPBUSD(IZERO(), u, ILOAD(xq + t * Kp + k0 + k));
					acc[i][t] = VFMA(ICVT(p), VMUL(s, VLOAD(xl + t * (Kp / 4) + (k0 + k) / 4)), acc[i][t]);
				}
			}
		}
		for (int i = 0; i < R; i++)
			for (int t = 0; t < T; t++) {
				const float *x = xs + t * KG + k0 / G;
				float s = 0;
				for (long g = 0; g < ng; g++)
					s += of[i * 16 + g] * x[g];
				oacc[i][t] += s;
			}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			out[t * N + r + i] = VHSUM(acc[i][t]) + oacc[i][t];
}
#undef QCI

static void F(gemv_i8)(const void *w, int dt, long K, const int8_t *xq, const float *xl, const float *xs, long n,
                       float *out, long N, long r0, long r1) {
	const uint8_t *wb = (const uint8_t *)w;
	const long Kp = (K + 63) & ~63L, KG = K / dt_group(dt);
	long r = r0;
	for (; r + 4 <= r1; r += 4) {
		long t = 0;
		for (; t + 4 <= n; t += 4)
			F(dot_i8)(wb, dt, K, Kp, r, 4, xq + t * Kp, xl + t * (Kp / 4), xs + t * KG, 4, out + t * N, N);
		switch (n - t) {
		case 3:
			F(dot_i8)(wb, dt, K, Kp, r, 4, xq + t * Kp, xl + t * (Kp / 4), xs + t * KG, 3, out + t * N, N);
			break;
		case 2:
			F(dot_i8)(wb, dt, K, Kp, r, 4, xq + t * Kp, xl + t * (Kp / 4), xs + t * KG, 2, out + t * N, N);
			break;
		case 1:
			F(dot_i8)(wb, dt, K, Kp, r, 4, xq + t * Kp, xl + t * (Kp / 4), xs + t * KG, 1, out + t * N, N);
			break;
		}
	}
	for (; r < r1; r++)
		for (long t = 0; t < n; t++)
			F(dot_i8)(wb, dt, K, Kp, r, 1, xq + t * Kp, xl + t * (Kp / 4), xs + t * KG, 1, out + t * N, N);
}

// ---------------------------------------------------------------------------
// GEMM. A panel of MRI rows of x (star_gemm_packa_i8): int8 a8[K/4][MRI][4],
// then float ad[K/G][MRI] (each group's dx) and as[K/G][MRI] (its xs);
// rows past M are zero. A B panel of NRI weight rows over kc columns:
// u8 b8[kc/4][NRI][4], then float bsc[kc/G][NRI] and bof[kc/G][NRI].

static long F(panel_a_bytes)(long K, int G) { return K * MRI + 8 * (K / G) * MRI; }
static long F(panel_b_bytes)(long kc, int G) { return kc * NRI + 8 * (kc / G) * NRI; }

static void F(gemm_packa_i8)(const float *x, long M, long K, int G, uint8_t *ap, long p0, long p1) {
	const long PS = F(panel_a_bytes)(K, G), KG = K / G;
	int8_t q[32];
	float dx, xs[2];
	for (long p = p0; p < p1; p++) {
		uint8_t *a8 = ap + p * PS;
		float *ad = (float *)(a8 + K * MRI), *as = ad + KG * MRI;
		for (int r = 0; r < MRI; r++) {
			const long i = p * MRI + r;
			for (long b = 0; b < K / 32; b++) {
				if (i < M) {
					quant_x(x + i * K + 32 * b, 32, G, q, &dx, xs);
				} else {
					memset(q, 0, 32);
					dx = xs[0] = xs[1] = 0;
				}
				for (int j = 0; j < 8; j++)
					memcpy(a8 + ((8 * b + j) * MRI + r) * 4, q + 4 * j, 4);
				for (int g = 0; g < 32 / G; g++) {
					ad[(b * 32 / G + g) * MRI + r] = dx;
					as[(b * 32 / G + g) * MRI + r] = xs[g];
				}
			}
		}
	}
}

// pack_b_i8 fills one B panel from weight rows [j0, j0+nr), columns
// [k0, k0+kc); rows past nr are zero.
static void F(pack_b_i8)(uint8_t *dst, const void *w, int dt, long K, long j0, int nr, long k0, long kc) {
	const int G = dt_group(dt);
	const long rowb = dt_bytes(dt, K), ng = kc / G;
	uint8_t u[256] __attribute__((aligned(32)));
	float sc[16], of[16];
	float *bsc = (float *)(dst + kc * NRI), *bof = bsc + ng * NRI;
	for (int j = 0; j < NRI; j++) {
		if (j >= nr) {
			for (long k = 0; k < kc; k += 4)
				memset(dst + (k / 4 * NRI + j) * 4, 0, 4);
			for (long g = 0; g < ng; g++)
				bsc[g * NRI + j] = bof[g * NRI + j] = 0;
			continue;
		}
		const uint8_t *row = (const uint8_t *)w + (j0 + j) * rowb;
		for (long c0 = 0; c0 < kc; c0 += 256) {
			const long cc = kc - c0 < 256 ? kc - c0 : 256;
			unpack_row(row, dt, k0 + c0, cc, u, sc, of);
			for (long k = 0; k < cc; k += 4)
				memcpy(dst + ((c0 + k) / 4 * NRI + j) * 4, u + k, 4);
			for (long g = 0; g < cc / G; g++) {
				bsc[(c0 / G + g) * NRI + j] = sc[g];
				bof[(c0 / G + g) * NRI + j] = of[g];
			}
		}
	}
}

// C[MRI][NRI] (=|+=) the product of an A panel and a B panel over kc
// columns (kc/G groups).
static void F(ukr_i8)(long ng, const int G, const uint8_t *a8, const float *ad, const float *as, const uint8_t *b8,
                      const float *bsc, const float *bof, float *c, long ldc, int acc) {
	V f0[MRI], f1[MRI];
#pragma GCC unroll 16
	for (int r = 0; r < MRI; r++) {
		f0[r] = acc ? VLOAD(c + r * ldc) : VZERO();
		f1[r] = acc ? VLOAD(c + r * ldc + VL) : VZERO();
	}
	for (long g = 0; g < ng; g++) {
		IV i0[MRI], i1[MRI];
#pragma GCC unroll 16
		for (int r = 0; r < MRI; r++) {
			i0[r] = IZERO();
			i1[r] = IZERO();
		}
		for (int s = 0; s < G / 4; s++) {
			IV b0 = ILOAD(b8), b1 = ILOAD(b8 + 64);
#pragma GCC unroll 16
			for (int r = 0; r < MRI; r++) {
				IV a = IBCAST4(a8 + 4 * r);
				i0[r] = IDPBUSD(i0[r], b0, a);
				i1[r] = IDPBUSD(i1[r], b1, a);
			}
			a8 += 4 * MRI;
			b8 += 4 * NRI;
		}
		V s0 = VLOAD(bsc), s1 = VLOAD(bsc + VL), o0 = VLOAD(bof), o1 = VLOAD(bof + VL);
#pragma GCC unroll 16
		for (int r = 0; r < MRI; r++) {
			V d = VBCAST(ad + r), x = VBCAST(as + r);
			f0[r] = VFMA(o0, x, VFMA(ICVT(i0[r]), VMUL(s0, d), f0[r]));
			f1[r] = VFMA(o1, x, VFMA(ICVT(i1[r]), VMUL(s1, d), f1[r]));
		}
		ad += MRI;
		as += MRI;
		bsc += NRI;
		bof += NRI;
	}
#pragma GCC unroll 16
	for (int r = 0; r < MRI; r++) {
		VSTORE(c + r * ldc, f0[r]);
		VSTORE(c + r * ldc + VL, f1[r]);
	}
}

// Output columns [j0, j1) of out[M, N] (j0 a multiple of NRI). bp holds
// the B panels of the claimed columns (panel_b_bytes(kc) each), tmp
// MRI*NRI floats.
static void F(gemm_cols_i8)(const uint8_t *ap, long M, long K, const void *w, int dt, float *out, long N, long j0,
                            long j1, uint8_t *bp, float *tmp, int KC, int MC) {
	const int G = dt_group(dt);
	const long PS = F(panel_a_bytes)(K, G), KG = K / G;
	MC -= MC % MRI;
	if (MC < MRI)
		MC = MRI;
	for (long pc = 0; pc < K; pc += KC) {
		const long kc = K - pc < KC ? K - pc : KC, BS = F(panel_b_bytes)(kc, G), ng = kc / G;
		for (long jr = j0; jr < j1; jr += NRI) {
			long nr = j1 - jr < NRI ? j1 - jr : NRI;
			F(pack_b_i8)(bp + (jr - j0) / NRI * BS, w, dt, K, jr, (int)nr, pc, kc);
		}
		for (long ic = 0; ic < M; ic += MC) {
			long ie = ic + MC < M ? ic + MC : M;
			for (long jr = j0; jr < j1; jr += NRI) {
				long nr = j1 - jr < NRI ? j1 - jr : NRI;
				const uint8_t *b8 = bp + (jr - j0) / NRI * BS;
				const float *bsc = (const float *)(b8 + kc * NRI), *bof = bsc + ng * NRI;
				for (long ir = ic; ir < ie; ir += MRI) {
					long mr = M - ir < MRI ? M - ir : MRI;
					const uint8_t *a = ap + ir / MRI * PS;
					const float *ad = (const float *)(a + K * MRI) + pc / G * MRI, *as = ad + KG * MRI;
					float *c = out + ir * N + jr;
					if (mr == MRI && nr == NRI) {
						F(ukr_i8)(ng, G, a + pc * MRI, ad, as, b8, bsc, bof, c, N, pc > 0);
						continue;
					}
					F(ukr_i8)(ng, G, a + pc * MRI, ad, as, b8, bsc, bof, tmp, NRI, 0);
					for (long r = 0; r < mr; r++)
						for (long j = 0; j < nr; j++)
							c[r * N + j] = pc > 0 ? c[r * N + j] + tmp[r * NRI + j] : tmp[r * NRI + j];
				}
			}
		}
	}
}

#undef NRI
#undef F
#undef CAT
#undef CAT2
#undef INL
