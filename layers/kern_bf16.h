// bfloat16 dot-product kernels (RoundBF16) for BF16 weights, included by
// kern_amd64.c once per 16-lane variant: avx512 with AVX512_BF16
// (vdpbf16ps) and emu512 (vdpbf16ps emulated with FMAs on AVX2, for
// tests). Activations are rounded to bfloat16 (to nearest even); a pair
// of bfloat16 products is exact in float32 and accumulated in float32.
// The includer defines V, VL = 16, VZERO, VLOAD, VSTORE, VADD, VHSUM,
// and:
//
//	BV               32 bfloat16 (64 bytes); BLOAD(p) 64 bytes at p; BBCAST2(p) the 4 bytes at p in every lane
//	VDPBF16(a, b, c) lane i of a += b[2i]·c[2i] + b[2i+1]·c[2i+1] (bfloat16 pairs)
//	MRB              rows of the register tile (NR = 32 columns)
//
// Rows of K (even) bfloat16 are K/2 32-bit words (pairs), which the F32
// packing code moves as they are: the GEMM packs x (converted) with pack_a
// and the weights with pack_b as F32 matrices of K/2 columns.

#define NRB 32
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(name, SFX)
#define INL static inline __attribute__((always_inline))

// Matrix-vector: out[t*N + r] for rows [r0, r1) of w [N][K] (bfloat16),
// t < n, xb the n rows of x in bfloat16.
INL void F(dotblk_bf)(const uint16_t *w, long K, long r, const int R, const uint16_t *xb, const int T, float *out,
                      long N) {
	V acc[4][4];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++)
			acc[i][t] = VZERO();
	const uint16_t *wr = w + r * K;
	long k = 0;
	for (; k + 32 <= K; k += 32) {
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			_mm_prefetch((const char *)(wr + (R + i) * K + k), _MM_HINT_T0);
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			BV wv = BLOAD(wr + i * K + k);
#pragma GCC unroll 4
			for (int t = 0; t < T; t++)
				acc[i][t] = VDPBF16(acc[i][t], wv, BLOAD(xb + t * K + k));
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			float s = VHSUM(acc[i][t]);
			for (long kk = k; kk < K; kk++)
				s += bf16_f32(wr[i * K + kk]) * bf16_f32(xb[t * K + kk]);
			out[t * N + r + i] = s;
		}
}

static void F(gemv_bf)(const void *w, long K, const uint16_t *xb, long n, float *out, long N, long r0, long r1) {
	const uint16_t *wb = (const uint16_t *)w;
	long r = r0;
	for (; r + 4 <= r1; r += 4) {
		long t = 0;
		for (; t + 4 <= n; t += 4)
			F(dotblk_bf)(wb, K, r, 2, xb + t * K, 4, out + t * N, N), F(dotblk_bf)(wb, K, r + 2, 2, xb + t * K, 4, out + t * N, N);
		switch (n - t) {
		case 3:
			F(dotblk_bf)(wb, K, r, 4, xb + t * K, 3, out + t * N, N);
			break;
		case 2:
			F(dotblk_bf)(wb, K, r, 4, xb + t * K, 2, out + t * N, N);
			break;
		case 1:
			F(dotblk_bf)(wb, K, r, 4, xb + t * K, 1, out + t * N, N);
			break;
		}
	}
	for (; r < r1; r++)
		for (long t = 0; t < n; t++)
			F(dotblk_bf)(wb, K, r, 1, xb + t * K, 1, out + t * N, N);
}

// C[MRB][NRB] (=|+=) sum over kc2 pairs: A pair (k, r) at a[k*MRB + r]
// (32-bit words), B row k at b + k*NRB.
static void F(ukr_bf)(long kc2, const uint32_t *a, const uint32_t *b, float *c, long ldc, int acc) {
	V c0[MRB], c1[MRB];
#pragma GCC unroll 16
	for (int r = 0; r < MRB; r++) {
		c0[r] = VZERO();
		c1[r] = VZERO();
	}
#pragma GCC unroll 2
	for (long k = 0; k < kc2; k++) {
		BV b0 = BLOAD(b), b1 = BLOAD(b + 16);
#pragma GCC unroll 16
		for (int r = 0; r < MRB; r++) {
			BV ar = BBCAST2(a + r);
			c0[r] = VDPBF16(c0[r], b0, ar);
			c1[r] = VDPBF16(c1[r], b1, ar);
		}
		a += MRB;
		b += NRB;
	}
	if (acc) {
#pragma GCC unroll 16
		for (int r = 0; r < MRB; r++) {
			VSTORE(c + r * ldc, VADD(VLOAD(c + r * ldc), c0[r]));
			VSTORE(c + r * ldc + VL, VADD(VLOAD(c + r * ldc + VL), c1[r]));
		}
	} else {
#pragma GCC unroll 16
		for (int r = 0; r < MRB; r++) {
			VSTORE(c + r * ldc, c0[r]);
			VSTORE(c + r * ldc + VL, c1[r]);
		}
	}
}

// Output columns [j0, j1) of out[M, N] (j0 a multiple of NRB): ap holds x
// in bfloat16 pairs packed by pack_a (MRB-row panels over K2 = K/2
// words), w the BF16 weights [N][K]; bp holds KC2*roundup(j1-j0, NRB)
// words, tmp MRB*NRB floats.
static void F(gemm_cols_bf)(const uint32_t *ap, long M, long K2, const void *w, float *out, long N, long j0, long j1,
                            uint32_t *bp, float *tmp, int KC2, int MC) {
	MC -= MC % MRB;
	if (MC < MRB)
		MC = MRB;
	for (long pc = 0; pc < K2; pc += KC2) {
		long kc = K2 - pc < KC2 ? K2 - pc : KC2;
		for (long jr = j0; jr < j1; jr += NRB) {
			long nr = j1 - jr < NRB ? j1 - jr : NRB;
			pack_b((float *)(bp + (jr - j0) * kc), w, STAR_F32, K2, jr, (int)nr, pc, (int)kc, NRB);
		}
		for (long ic = 0; ic < M; ic += MC) {
			long ie = ic + MC < M ? ic + MC : M;
			for (long jr = j0; jr < j1; jr += NRB) {
				long nr = j1 - jr < NRB ? j1 - jr : NRB;
				const uint32_t *b = bp + (jr - j0) * kc;
				for (long ir = ic; ir < ie; ir += MRB) {
					long mr = M - ir < MRB ? M - ir : MRB;
					const uint32_t *a = ap + ir * K2 + pc * MRB;
					float *c = out + ir * N + jr;
					if (mr == MRB && nr == NRB) {
						F(ukr_bf)(kc, a, b, c, N, pc > 0);
						continue;
					}
					F(ukr_bf)(kc, a, b, tmp, NRB, 0);
					for (long r = 0; r < mr; r++)
						for (long j = 0; j < nr; j++)
							c[r * N + j] = pc > 0 ? c[r * N + j] + tmp[r * NRB + j] : tmp[r * NRB + j];
				}
			}
		}
	}
}

#undef NRB
#undef F
#undef CAT
#undef CAT2
#undef INL
