// Dequantization of ggml's block types for the exact (float32) paths of
// the SIMD kernels: included by kern_amd64.c under its AVX2 target pragma
// (shared by every variant). Each function turns blocks into float32
// weights computed as ggml's reference dequantizer does (each weight one
// float32 product and, for Q4_K/Q5_K, one subtraction, rounded step by
// step, never fused), so they equal layers/quant's values. Layouts: see
// layers/quant/quant.go.

// Bytes per block and weights per block of each dtype (plain types: one
// element).
static inline __attribute__((always_inline)) int dt_block_elems(int dt) {
	switch (dt) {
	case STAR_Q8_0:
	case STAR_Q4_0:
		return 32;
	case STAR_Q4_K:
	case STAR_Q5_K:
	case STAR_Q6_K:
		return 256;
	}
	return 1;
}

static inline __attribute__((always_inline)) int dt_block_bytes(int dt) {
	switch (dt) {
	case STAR_F32:
		return 4;
	case STAR_Q8_0:
		return 34;
	case STAR_Q4_0:
		return 18;
	case STAR_Q4_K:
		return 144;
	case STAR_Q5_K:
		return 176;
	case STAR_Q6_K:
		return 210;
	}
	return 2;
}

// Bytes of the first k weights of a row (k a multiple of the block).
static inline __attribute__((always_inline)) long dt_bytes(int dt, long k) {
	return k / dt_block_elems(dt) * dt_block_bytes(dt);
}

static inline __attribute__((always_inline)) float q_f16(const uint8_t *p) {
	uint16_t h;
	memcpy(&h, p, 2);
	return _cvtsh_ss(h);
}

// 8 bytes at p widened to 8 int32.
static inline __attribute__((always_inline)) __m256i q_u8x8(const uint8_t *p) {
	return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

static void deq_q8_0(const uint8_t *b, float *y) {
	__m256 d = _mm256_set1_ps(q_f16(b));
	for (int i = 0; i < 32; i += 8) {
		__m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + i)));
		_mm256_storeu_ps(y + i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
	}
}

static void deq_q4_0(const uint8_t *b, float *y) {
	__m256 d = _mm256_set1_ps(q_f16(b));
	__m256i m = _mm256_set1_epi32(15), e = _mm256_set1_epi32(8);
	for (int i = 0; i < 16; i += 8) {
		__m256i q = q_u8x8(b + 2 + i);
		__m256i lo = _mm256_sub_epi32(_mm256_and_si256(q, m), e);
		__m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(q, 4), e);
		_mm256_storeu_ps(y + i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)));
		_mm256_storeu_ps(y + 16 + i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)));
	}
}

static inline __attribute__((always_inline)) void q_scale_min_k4(const uint8_t *q, int j, int *sc, int *m) {
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

// Q4_K (hbits 0) and Q5_K (fifth bits at b+16): sub-block j of 32 is
// (d·scale_j)·q - dmin·min_j, product and difference rounded separately.
static inline __attribute__((always_inline)) void deq_k45(const uint8_t *b, float *y, const int five) {
	const float d = q_f16(b), dmin = q_f16(b + 2);
	const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
	const __m256i m15 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
	for (int c = 0; c < 4; c++) {
		int s0, m0, s1, m1;
		q_scale_min_k4(sc, 2 * c, &s0, &m0);
		q_scale_min_k4(sc, 2 * c + 1, &s1, &m1);
		const __m256 d0 = _mm256_set1_ps(d * (float)s0), n0 = _mm256_set1_ps(dmin * (float)m0);
		const __m256 d1 = _mm256_set1_ps(d * (float)s1), n1 = _mm256_set1_ps(dmin * (float)m1);
		const uint8_t *q = qs + 32 * c;
		for (int l = 0; l < 32; l += 8) {
			__m256i v = q_u8x8(q + l);
			__m256i lo = _mm256_and_si256(v, m15), hi = _mm256_srli_epi32(v, 4);
			if (five) {
				__m256i h = q_u8x8(qh + l);
				lo = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4));
				hi = _mm256_or_si256(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4));
			}
			_mm256_storeu_ps(y + 64 * c + l, _mm256_sub_ps(_mm256_mul_ps(d0, _mm256_cvtepi32_ps(lo)), n0));
			_mm256_storeu_ps(y + 64 * c + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(hi)), n1));
		}
	}
}

static void deq_q4_k(const uint8_t *b, float *y) { deq_k45(b, y, 0); }
static void deq_q5_k(const uint8_t *b, float *y) { deq_k45(b, y, 1); }

// Q6_K: (d·scale)·(q-32), q = 4 low bits from ql | 2 high bits from qh.
static void deq_q6_k(const uint8_t *b, float *y) {
	const float d = q_f16(b + 208);
	const int8_t *sc = (const int8_t *)(b + 192);
	const __m256i m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3), e = _mm256_set1_epi32(32);
	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
		for (int p = 0; p < 4; p++)
			for (int l = 0; l < 32; l += 8) {
				__m256i lo = _mm256_and_si256(_mm256_srli_epi32(q_u8x8(ql + l + 32 * (p & 1)), 4 * (p >> 1)), m15);
				__m256i hi = _mm256_and_si256(_mm256_srli_epi32(q_u8x8(qh + l), 2 * p), m3);
				__m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), e);
				__m256 ds = _mm256_set1_ps(d * (float)sc[8 * h + 2 * p + l / 16]);
				_mm256_storeu_ps(y + 128 * h + 32 * p + l, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(q)));
			}
	}
}

// deq_row writes weights [k0, k0+n) of the row starting at byte p of a
// quantized dtype into y; k0 and n are multiples of the block.
static void deq_row(const uint8_t *p, int dt, long k0, long n, float *y) {
	const int be = dt_block_elems(dt), bb = dt_block_bytes(dt);
	p += k0 / be * bb;
	for (long k = 0; k < n; k += be, p += bb, y += be) {
		switch (dt) {
		case STAR_Q8_0:
			deq_q8_0(p, y);
			break;
		case STAR_Q4_0:
			deq_q4_0(p, y);
			break;
		case STAR_Q4_K:
			deq_q4_k(p, y);
			break;
		case STAR_Q5_K:
			deq_q5_k(p, y);
			break;
		default:
			deq_q6_k(p, y);
			break;
		}
	}
}
