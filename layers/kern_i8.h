// Integer dot-product kernels (RoundInt8) for quantized weights, included
// by kern_amd64.c once per 16-lane variant: avx512 with AVX512_VNNI
// (vpdpbusd) and emu512 (vpdpbusd emulated exactly on AVX2, for tests).
// The includer defines the float vocabulary of kern_impl.h (V, VL = 16,
// VZERO, VLOAD, VSTORE, VSET1, VBCAST, VFMA, VMUL, VADD, VHSUM) and:
//
//	IV              16 int32 lanes (64 bytes)
//	IZERO()         zero;  ILOAD(p)  64 bytes at p;  IBCAST4(p)  the 4 bytes at p in every lane
//	IJOIN(a, b)     the __m256i a (low half) and b (high half)
//	IAND IOR (a, b); ISET1B(c) every byte c; ISRL16 ISLL16 (v, n) 16-bit lanes shifted by n
//	IBCAST32(p)     the 32 bytes at p in both halves; ISRLV16H(v, a, b) 16-bit lanes of the low half >> a, high >> b
//	VPERM8(v, idx)  lane i = v[idx[i]] for an __m256 v and 16 indices < 8
//	IDPBUSD(a, u, s)  lane i of a += Σ_j<4 u[4i+j]·s[4i+j] (u unsigned, s signed bytes in [-127, 127])
//	IDPBUSD7(a, u, s) the same for u < 128 (every dtype's quants but Q8_0's): may be cheaper
//	IDPBUSDQ8(c, u, s) the same for Q8_0's u = w + 128 (w its signed quants) and c = -128·Σs
//	                (quant_x_rows' xc): Σ w·s, which may be computed from w directly
//	ICVT(v)         int32 lanes to float
//	IHEAD4(p0, p1, p2, p3)  the 16 bytes at pi in 128-bit lane i
//	ISHUFB(v, c)    vpshufb: byte j of each 128-bit lane = that lane's byte c[j] & 15 (0 where c[j] < 0)
//	IU8F(v, i)      the 16 bytes of 128-bit lane i (a constant) as 16 floats, unsigned
//	IF16P4(v)       the two fp16 at bytes 0-3 of each 128-bit lane as 8 floats (lane 0's first)
//	VLO8(v) VHI8(v) lanes 0-7 and 8-15 as an __m256
//	IADD32(a, b)    int32 lanes added
//	ISEL128(a, b, h) 128-bit lanes [a0, a1, b0, b1] (h = 0) or [a2, a3, b2, b3] (h = 1)
//	VPERM16(v, idx) lane i = v[idx[i]] for 16 indices < 16
//	VF16X4(r0, r1, r2, r3)  the 16 fp16 of four 64-bit words (r0's lowest first) as 16 floats
//	VBCAST4F(p)     the 4 floats at p in each 128-bit lane
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
// Matrix-vector: rows [r0, r1) of w times the n rows of x as
// star_quant_x left them for dtype dt (see quant_x_rows): per row, xq
// int8 [Kp] in the dtype's lane order (Kp = K rounded up to 64, zero
// padded), xc [Kp/4] each lane's integer offset correction, and per
// block of 32 (Kp/32 + 8 floats) xs = dx·Σq and dxn = dx, per group of 16
// (Kp/16 + 8) dx16 = its block's dx. The weights are unpacked in
// registers, a unit at a time (64 weights of Q8_0 and Q4_0, a super-block
// of the K-quants), into unsigned bytes; the lanes' integer sums start
// from xc, so that Σ u·q + xc is the sum of the signed quants' products
// (Q8_0, Q4_0, Q6_K), and K-quants' mins are applied per super-block.

#ifndef STAR_I8_PERMS
#define STAR_I8_PERMS
static const int perm_8x8[4][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                    {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
                                    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
                                    {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7}};
static const int perm_k4[4][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2},
                                   {1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3},
                                   {4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6},
                                   {5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7}};
// perm_r4[q][i]: the lanes of row i's two block scales (lanes 2i, 2i+1 of
// four rows' eight) in a unit's 16 lanes: Q8_0 (q = 0) and Q4_0 (q = 1),
// as perm_8x8[q] for one row.
static const int perm_r4[2][4][16] = {{{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                       {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
                                       {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
                                       {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}},
                                      {{0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
                                       {2, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3},
                                       {4, 4, 4, 4, 5, 5, 5, 5, 4, 4, 4, 4, 5, 5, 5, 5},
                                       {6, 6, 6, 6, 7, 7, 7, 7, 6, 6, 6, 6, 7, 7, 7, 7}}};
// K-quant super-block heads (bytes 0-15: d, dmin, 12 bytes of 6-bit
// scales and mins; a, b, c the bytes 4-7, 8-11, 12-15), per 128-bit lane:
// k_cx gathers [a, c, b, c] and k_cy [0, a, 0, b]; k_m1 and k_m2 mask
// them into the 8 scales and 8 mins (see k_scales4). perm_dm[i]: row i's
// d in lanes 0-7 and dmin in 8-15, from k_scales4's 8 floats.
#define K_LANES4(...) __VA_ARGS__, __VA_ARGS__, __VA_ARGS__, __VA_ARGS__
static const int8_t k_cx[64] = {K_LANES4(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15)};
static const int8_t k_cy[64] = {K_LANES4(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11)};
static const int8_t k_m1[64] = {K_LANES4(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)};
static const int8_t k_m2[64] = {K_LANES4(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)};
#undef K_LANES4
// perm_q4[i]: lanes 4i..4i+3 (row i's four block scales) each over four
// lanes, for q4_r4_unit128.
static const int perm_q4[4][16] = {{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
                                   {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
                                   {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
                                   {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15}};
static const int perm_dm[4][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                   {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
                                   {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
                                   {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}};
#endif

// k_scales4: the scales and mins of one super-block of four Q4_K or Q5_K
// rows at p[i], unpacked together in vector registers (the same values
// as unit's one row at a time in scalar registers, which took about as
// long as the row's dot products): W[i] lanes 0-7 the 8 sub-blocks'
// d·scale, lanes 8-15 their dmin·min.
INL void F(k_scales4)(const uint8_t *const p[4], V W[4]) {
	const IV h = IHEAD4(p[0], p[1], p[2], p[3]);
	const IV x = ISHUFB(h, ILOAD(k_cx)), y = ISHUFB(h, ILOAD(k_cy));
	// bytes 0-3 a & 63, 4-7 (c & 15) | (a >> 6) << 4, 8-11 b & 63, 12-15 (c >> 4) | (b >> 6) << 4
	const IV sm = IOR(IOR(IAND(x, ILOAD(k_m1)), IAND(ISRL16(x, 4), ILOAD(k_m2))), IAND(ISRL16(y, 2), ISET1B(0x30)));
	const __m256 d = IF16P4(h);
	W[0] = VMUL(IU8F(sm, 0), VPERM8(d, perm_dm[0]));
	W[1] = VMUL(IU8F(sm, 1), VPERM8(d, perm_dm[1]));
	W[2] = VMUL(IU8F(sm, 2), VPERM8(d, perm_dm[2]));
	W[3] = VMUL(IU8F(sm, 3), VPERM8(d, perm_dm[3]));
}

// unit unpacks the weights [k, k+64·nu) of a row at p (bytes of the unit
// at k) into u[j], j < nu, with the weights' scales w8: Q8_0 and Q4_0
// lanes 0, 1 the two blocks' d; the K-quants the 8 sub-blocks' d·scale
// (and m8 their dmin·min); Q6_K w8[h] the 8 sub-blocks' d·scale of half
// h. half: only the first 32 weights exist (the last block of a Q8_0 or
// Q4_0 row of an odd number of blocks). ks: the K-quants' w8 and m8 are
// wanted (else k_scales4 gives them).
INL int F(unit)(const uint8_t *p, const int dt, const int half, const int ks, IV *u, __m256 *w8, __m256 *m8) {
	switch (dt) {
	case STAR_Q8_0: {
		const __m256i x80 = _mm256_set1_epi8((char)0x80);
		__m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), x80);
		__m256i b = half ? _mm256_setzero_si256() : _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 36)), x80);
		u[0] = IJOIN(a, b);
		uint16_t h0, h1 = 0;
		memcpy(&h0, p, 2);
		if (!half)
			memcpy(&h1, p + 34, 2);
		w8[0] = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16))));
		return 1;
	}
	case STAR_Q4_0: {
		const __m256i m15 = _mm256_set1_epi8(15);
		__m128i a = _mm_loadu_si128((const __m128i *)(p + 2));
		__m128i b = half ? _mm_setzero_si128() : _mm_loadu_si128((const __m128i *)(p + 20));
		__m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
		u[0] = IJOIN(_mm256_and_si256(v, m15), _mm256_and_si256(_mm256_srli_epi16(v, 4), m15));
		uint16_t h0, h1 = 0;
		memcpy(&h0, p, 2);
		if (!half)
			memcpy(&h1, p + 18, 2);
		w8[0] = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16))));
		return 1;
	}
	case STAR_Q4_K:
	case STAR_Q5_K: {
		const int five = dt == STAR_Q5_K;
		if (ks) {
			uint32_t a, b, c;
			memcpy(&a, p + 4, 4);
			memcpy(&b, p + 8, 4);
			memcpy(&c, p + 12, 4);
			const uint64_t sc = (a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 6) & 0x03030303u) << 4) << 32;
			const uint64_t mn = (b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 6) & 0x03030303u) << 4) << 32;
			w8[0] = _mm256_mul_ps(_mm256_set1_ps(q_f16(p)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))));
			*m8 = _mm256_mul_ps(_mm256_set1_ps(q_f16(p + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))));
		}
		const uint8_t *qs = p + (five ? 48 : 16);
		const IV m15 = ISET1B(15);
		IV v0 = ILOAD(qs), v1 = ILOAD(qs + 64); // nibble chunks 0, 1 and 2, 3
		u[0] = IAND(v0, m15);
		u[1] = IAND(ISRL16(v0, 4), m15);
		u[2] = IAND(v1, m15);
		u[3] = IAND(ISRL16(v1, 4), m15);
		if (five) { // fifth bits: bit 2c of qh for sub-block 2c, 2c+1 for 2c+1
			const IV one = ISET1B(1), hb = IBCAST32(p + 16);
			u[0] = IOR(u[0], ISLL16(IAND(ISRLV16H(hb, 0, 2), one), 4));
			u[1] = IOR(u[1], ISLL16(IAND(ISRLV16H(hb, 1, 3), one), 4));
			u[2] = IOR(u[2], ISLL16(IAND(ISRLV16H(hb, 4, 6), one), 4));
			u[3] = IOR(u[3], ISLL16(IAND(ISRLV16H(hb, 5, 7), one), 4));
		}
		return 4;
	}
	default: { // Q6_K
		const IV m15 = ISET1B(15), m3 = ISET1B(3);
		const __m256 d = _mm256_set1_ps(q_f16(p + 208));
		for (int h = 0; h < 2; h++) {
			IV l = ILOAD(p + 64 * h), qh = IBCAST32(p + 128 + 32 * h);
			u[2 * h] = IOR(IAND(l, m15), ISLL16(IAND(ISRLV16H(qh, 0, 2), m3), 4));
			u[2 * h + 1] = IOR(IAND(ISRL16(l, 4), m15), ISLL16(IAND(ISRLV16H(qh, 4, 6), m3), 4));
			w8[h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 192 + 8 * h)))));
		}
		return 4;
	}
	}
}

// dot_i8: out[t*N + r + i] for i < R, t < T. Per unit and token the
// lanes' scales are (weight scale · dx) of their group, from 8 products.
INL void F(dot_i8)(const uint8_t *w, const int dt, long K, long Kp, long r, const int R, const int8_t *xq,
                   const int32_t *xc, const float *xs, const float *dxn, const float *dx16, const int T, float *out,
                   long N) {
	const long rowb = dt_bytes(dt, K);
	const int kq = dt >= STAR_Q4_K && dt <= STAR_Q5_K; // mins
	const int big = dt >= STAR_Q4_K;                     // units of 256 weights
	const long ue = big ? 256 : 64, ubytes = big ? dt_block_bytes(dt) : 2 * dt_block_bytes(dt);
	const long X = Kp / 4, B = Kp / 32 + 8, B16 = Kp / 16 + 8;
	V acc[4][4];
	__m256 oacc[4][4];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			acc[i][t] = VZERO();
			oacc[i][t] = _mm256_setzero_ps();
		}
	const int ks4 = kq && R == 4; // the K-quants' scales of four rows together
	for (long k = 0; k < K; k += ue) {
		const int half = K - k < ue;
		V W[4];
		if (ks4) {
			const uint8_t *const h[4] = {w + r * rowb + k / ue * ubytes, w + (r + 1) * rowb + k / ue * ubytes,
			                             w + (r + 2) * rowb + k / ue * ubytes, w + (r + 3) * rowb + k / ue * ubytes};
			F(k_scales4)(h, W);
		}
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			const uint8_t *p = w + (r + i) * rowb + k / ue * ubytes;
			_mm_prefetch((const char *)(p + R * rowb), _MM_HINT_T0);
			_mm_prefetch((const char *)(p + R * rowb + 64), _MM_HINT_T0);
			if (big)
				_mm_prefetch((const char *)(p + R * rowb + 128), _MM_HINT_T0);
			IV u[4];
			__m256 w8[2], m8;
			F(unit)(p, dt, half, !ks4, u, w8, &m8);
			if (ks4) {
				w8[0] = VLO8(W[i]);
				m8 = VHI8(W[i]);
			}
#pragma GCC unroll 4
			for (int t = 0; t < T; t++) {
				const int8_t *q = xq + t * Kp + k;
				if (dt == STAR_Q8_0 || dt == STAR_Q4_0) {
					__m256 p8 = _mm256_mul_ps(w8[0], _mm256_loadu_ps(dxn + t * B + k / 32));
					IV c, s;
					const long g = k & ~127L;
					if (dt == STAR_Q4_0 && g + 128 <= K) { // x of a whole 128 in q4_r4_unit128's order
						const int h = k != g;
						c = ISEL128(ILOAD(xc + t * X + g / 4), ILOAD(xc + t * X + g / 4 + 16), h);
						s = ISEL128(ILOAD(xq + t * Kp + g), ILOAD(xq + t * Kp + g + 64), h);
					} else {
						c = ILOAD(xc + t * X + k / 4);
						s = ILOAD(q);
					}
					IV d = dt == STAR_Q8_0 ? IDPBUSDQ8(c, u[0], s) : IDPBUSD7(c, u[0], s);
					acc[i][t] = VFMA(ICVT(d), VPERM8(p8, perm_8x8[dt == STAR_Q8_0 ? 0 : 1]), acc[i][t]);
				} else if (kq) {
					__m256 p8 = _mm256_mul_ps(w8[0], _mm256_loadu_ps(dxn + t * B + k / 32));
#pragma GCC unroll 4
					for (int j = 0; j < 4; j++)
						acc[i][t] = VFMA(ICVT(IDPBUSD7(IZERO(), u[j], ILOAD(q + 64 * j))), VPERM8(p8, perm_k4[j]), acc[i][t]);
					oacc[i][t] = _mm256_fnmadd_ps(m8, _mm256_loadu_ps(xs + t * B + k / 32), oacc[i][t]);
				} else { // Q6_K
#pragma GCC unroll 2
					for (int h = 0; h < 2; h++) {
						__m256 p8 = _mm256_mul_ps(w8[h], _mm256_loadu_ps(dx16 + t * B16 + k / 16 + 8 * h));
#pragma GCC unroll 2
						for (int j = 0; j < 2; j++) {
							const long o = 128 * h + 64 * j;
							IV d = IDPBUSD7(ILOAD(xc + t * X + (k + o) / 4), u[2 * h + j], ILOAD(q + o));
							acc[i][t] = VFMA(ICVT(d), VPERM8(p8, perm_8x8[2 + j]), acc[i][t]);
						}
					}
				}
			}
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			__m256 o = oacc[i][t];
			__m128 o4 = _mm_add_ps(_mm256_castps256_ps128(o), _mm256_extractf128_ps(o, 1));
			o4 = _mm_add_ps(o4, _mm_movehl_ps(o4, o4));
			o4 = _mm_add_ss(o4, _mm_movehdup_ps(o4));
			out[t * N + r + i] = VHSUM(acc[i][t]) + _mm_cvtss_f32(o4);
		}
}

// q0_r4_unit: a unit of 64 weights (half: 32) of four Q8_0 or Q4_0 rows at
// p[i] into acc[i], with one token's int8 q, lane corrections c and the
// unit's two dx at dx2; the same unit of the rows pf bytes on is
// prefetched. The eight block scales (2 per row) are converted together
// and multiplied by the two dx at once; each row then takes its pair by one
// permute: less than half the vector work dot_i8 spends on scales.
INL void F(q0_r4_unit)(const uint8_t *const p[4], const int dt, const int half, const long pf, const IV q,
                       const IV c, const float *dx2, V acc[4]) {
	const long bb = dt_block_bytes(dt);
	const int qi = dt == STAR_Q4_0;
	uint64_t sc[2]; // fp16 scales: rows 2j, 2j+1, blocks 0, 1 each
#pragma GCC unroll 2
	for (int j = 0; j < 2; j++) {
		uint16_t a, b, e = 0, f = 0;
		memcpy(&a, p[2 * j], 2);
		memcpy(&b, p[2 * j + 1], 2);
		if (!half) {
			memcpy(&e, p[2 * j] + bb, 2);
			memcpy(&f, p[2 * j + 1] + bb, 2);
		}
		sc[j] = a | (uint64_t)e << 16 | (uint64_t)b << 32 | (uint64_t)f << 48;
	}
	double d2;
	memcpy(&d2, dx2, 8);
	const __m256 s8 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set_epi64x((long long)sc[1], (long long)sc[0])),
	                                _mm256_castpd_ps(_mm256_set1_pd(d2)));
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		_mm_prefetch((const char *)(p[i] + pf), _MM_HINT_T0);
		_mm_prefetch((const char *)(p[i] + pf + 64), _MM_HINT_T0);
		IV u[4];
		__m256 w8[2], m8;
		F(unit)(p[i], dt, half, 1, u, w8, &m8);
		const IV d = qi ? IDPBUSD7(c, u[0], q) : IDPBUSDQ8(c, u[0], q);
		acc[i] = VFMA(ICVT(d), VPERM8(s8, perm_r4[qi][i]), acc[i]);
	}
}

// q4_r4_unit128: 128 weights (four blocks) of four Q4_0 rows at p[i]
// into acc[i], with one token's x in the order quant_x_rows gives a whole
// 128 of Q4_0 (the four blocks' weights 0-15, then their 16-31): one
// register holds a row's four blocks' low nibbles and one their high
// nibbles, two vpdpbusd sum them into lanes 4b..4b+3 of block b, and one
// conversion, permute and FMA apply the four blocks' scales (dot_q0_r4's
// per-64 unit needs one of each per two blocks). The same 128 of the rows
// pf bytes on is prefetched.
INL void F(q4_r4_unit128)(const uint8_t *const p[4], const long pf, const int8_t *xq, const int32_t *xc,
                          const float *dx4, V acc[4]) {
	uint64_t sc[4]; // row i's four fp16 block scales
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		uint16_t a, b, c, d;
		memcpy(&a, p[i], 2);
		memcpy(&b, p[i] + 18, 2);
		memcpy(&c, p[i] + 36, 2);
		memcpy(&d, p[i] + 54, 2);
		sc[i] = a | (uint64_t)b << 16 | (uint64_t)c << 32 | (uint64_t)d << 48;
	}
	const V s16 = VMUL(VF16X4(sc[0], sc[1], sc[2], sc[3]), VBCAST4F(dx4));
	const IV x0 = ILOAD(xq), x1 = ILOAD(xq + 64), c01 = IADD32(ILOAD(xc), ILOAD(xc + 16)), m15 = ISET1B(15);
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		_mm_prefetch((const char *)(p[i] + pf), _MM_HINT_T0);
		_mm_prefetch((const char *)(p[i] + pf + 64), _MM_HINT_T0);
		const IV v = IHEAD4(p[i] + 2, p[i] + 20, p[i] + 38, p[i] + 56);
		const IV d = IDPBUSD7(IDPBUSD7(c01, IAND(v, m15), x0), IAND(ISRL16(v, 4), m15), x1);
		acc[i] = VFMA(ICVT(d), VPERM16(s16, perm_q4[i]), acc[i]);
	}
}

// dot_q0_r4: out[r + i], i < 4, of one token (xq, xc, dxn as for dot_i8)
// and Q8_0 or Q4_0 rows: dot_i8's (4, 1) case, the decode step's. The next
// four rows are prefetched as these are read.
INL void F(dot_q0_r4)(const uint8_t *w, const int dt, long K, long r, const int8_t *xq, const int32_t *xc,
                      const float *dxn, float *out) {
	const long rowb = dt_bytes(dt, K), ub = 2 * dt_block_bytes(dt);
	V acc[4];
	const uint8_t *p[4];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		acc[i] = VZERO();
		p[i] = w + (r + i) * rowb;
	}
	long k = 0;
	if (dt == STAR_Q4_0)
		for (; k + 128 <= K; k += 128) {
			F(q4_r4_unit128)(p, 4 * rowb, xq + k, xc + k / 4, dxn + k / 32, acc);
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++)
				p[i] += 2 * ub;
		}
	for (; k + 64 <= K; k += 64) {
		F(q0_r4_unit)(p, dt, 0, 4 * rowb, ILOAD(xq + k), ILOAD(xc + k / 4), dxn + k / 32, acc);
#pragma GCC unroll 4
		for (int i = 0; i < 4; i++)
			p[i] += ub;
	}
	if (k < K)
		F(q0_r4_unit)(p, dt, 1, 4 * rowb, ILOAD(xq + k), ILOAD(xc + k / 4), dxn + k / 32, acc);
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		out[r + i] = VHSUM(acc[i]);
}

INL void F(gemv_i8_dt)(const void *w, const int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                       const float *dxn, const float *dx16, long n, float *out, long N, long r0, long r1) {
	const uint8_t *wb = (const uint8_t *)w;
	const long Kp = (K + 63) & ~63L, X = Kp / 4, B = Kp / 32 + 8, B16 = Kp / 16 + 8;
	long r = r0;
#define DOT(R, T) F(dot_i8)(wb, dt, K, Kp, r, R, xq + t * Kp, xc + t * X, xs + t * B, dxn + t * B, dx16 + t * B16, T, out + t * N, N)
	for (; r + 4 <= r1; r += 4) {
		long t = 0;
		for (; t + 2 <= n; t += 2)
			DOT(4, 2);
		if (t < n && (dt == STAR_Q8_0 || dt == STAR_Q4_0))
			F(dot_q0_r4)(wb, dt, K, r, xq + t * Kp, xc + t * X, dxn + t * B, out + t * N);
		else if (t < n)
			DOT(4, 1);
	}
	for (; r < r1; r++)
		for (long t = 0; t < n; t++)
			DOT(1, 1);
#undef DOT
}

static void F(gemv_i8)(const void *w, int dt, long K, const int8_t *xq, const int32_t *xc, const float *xs,
                       const float *dxn, const float *dx16, long n, float *out, long N, long r0, long r1) {
	switch (dt) {
	case STAR_Q8_0:
		F(gemv_i8_dt)(w, STAR_Q8_0, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1);
		break;
	case STAR_Q4_0:
		F(gemv_i8_dt)(w, STAR_Q4_0, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1);
		break;
	case STAR_Q4_K:
		F(gemv_i8_dt)(w, STAR_Q4_K, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1);
		break;
	case STAR_Q5_K:
		F(gemv_i8_dt)(w, STAR_Q5_K, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1);
		break;
	default:
		F(gemv_i8_dt)(w, STAR_Q6_K, K, xq, xc, xs, dxn, dx16, n, out, N, r0, r1);
		break;
	}
}

#ifndef STAR_I8_GEMV_ONLY // the GEMM (an includer may want the matrix-vector products alone)
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

#endif // STAR_I8_GEMV_ONLY

#undef NRI
#undef F
#undef CAT
#undef CAT2
#undef INL

// The includer's vocabulary serves this file alone: all of it is released
// here, the float part, SFX and STAR_I8_GEMV_ONLY included.
#undef STAR_I8_GEMV_ONLY
#undef SFX
#undef VL
#undef MRI
#undef V
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VSET1
#undef VFMA
#undef VMUL
#undef VADD
#undef VHSUM
#undef IV
#undef IZERO
#undef ILOAD
#undef IBCAST4
#undef IDPBUSD
#undef IDPBUSD7
#undef IDPBUSDQ8
#undef ICVT
#undef IJOIN
#undef VPERM8
#undef IAND
#undef IOR
#undef ISET1B
#undef ISRL16
#undef ISLL16
#undef IBCAST32
#undef ISRLV16H
#undef IHEAD4
#undef ISHUFB
#undef IU8F
#undef IF16P4
#undef VLO8
#undef VHI8
#undef IADD32
#undef ISEL128
#undef VPERM16
#undef VF16X4
#undef VBCAST4F
