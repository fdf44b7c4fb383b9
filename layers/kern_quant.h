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

// ---------------------------------------------------------------------------
// Integer dot products (RoundInt8): weights as unsigned bytes with a
// float32 scale and offset per group of G weights (G = 16 for Q6_K, 32
// otherwise), activations as int8 per block of 32 with a float32 scale.
//
// unpack_* turn one block into u (its weights' unsigned quants, natural
// order), sc and of (per group) such that weight i = sc·u[i] + of exactly
// as the dequantizer computes it, up to the rounding of that product and
// sum (the integer products are exact):
//
//	Q8_0  u = q + 128, sc = d, of = -128·d
//	Q4_0  u = q,       sc = d, of = -8·d
//	Q4_K  u = q,       sc = d·scale_j, of = -(dmin·min_j)   (and Q5_K)
//	Q6_K  u = q,       sc = d·scale_k, of = -32·(d·scale_k) (groups of 16)

static inline __attribute__((always_inline)) int dt_group(int dt) { return dt == STAR_Q6_K ? 16 : 32; }

static void unpack_q8_0(const uint8_t *b, uint8_t *u, float *sc, float *of) {
	__m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));
	_mm256_storeu_si256((__m256i *)u, _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)));
	float d = q_f16(b);
	sc[0] = d;
	of[0] = -128.0f * d;
}

static void unpack_q4_0(const uint8_t *b, uint8_t *u, float *sc, float *of) {
	__m128i q = _mm_loadu_si128((const __m128i *)(b + 2)), m = _mm_set1_epi8(15);
	_mm_storeu_si128((__m128i *)u, _mm_and_si128(q, m));
	_mm_storeu_si128((__m128i *)(u + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m));
	float d = q_f16(b);
	sc[0] = d;
	of[0] = -8.0f * d;
}

static inline __attribute__((always_inline)) void unpack_k45(const uint8_t *b, uint8_t *u, float *sc, float *of,
                                                             const int five) {
	const float d = q_f16(b), dmin = q_f16(b + 2);
	const uint8_t *scales = b + 4, *qs = b + (five ? 48 : 16);
	const __m256i m15 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
	__m256i hb = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
	for (int c = 0; c < 4; c++) {
		int s0, m0, s1, m1;
		q_scale_min_k4(scales, 2 * c, &s0, &m0);
		q_scale_min_k4(scales, 2 * c + 1, &s1, &m1);
		sc[2 * c] = d * (float)s0;
		of[2 * c] = -(dmin * (float)m0);
		sc[2 * c + 1] = d * (float)s1;
		of[2 * c + 1] = -(dmin * (float)m1);
		__m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
		__m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
		if (five) {
			__m128i s0c = _mm_cvtsi32_si128(2 * c), s1c = _mm_cvtsi32_si128(2 * c + 1);
			lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, s0c), one), 4));
			hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, s1c), one), 4));
		}
		_mm256_storeu_si256((__m256i *)(u + 64 * c), lo);
		_mm256_storeu_si256((__m256i *)(u + 64 * c + 32), hi);
	}
}

static void unpack_q4_k(const uint8_t *b, uint8_t *u, float *sc, float *of) { unpack_k45(b, u, sc, of, 0); }
static void unpack_q5_k(const uint8_t *b, uint8_t *u, float *sc, float *of) { unpack_k45(b, u, sc, of, 1); }

static void unpack_q6_k(const uint8_t *b, uint8_t *u, float *sc, float *of) {
	const float d = q_f16(b + 208);
	const int8_t *s = (const int8_t *)(b + 192);
	for (int k = 0; k < 16; k++) {
		sc[k] = d * (float)s[k];
		of[k] = -32.0f * sc[k];
	}
	const __m256i m15 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = b + 64 * h;
		__m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
		__m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
		__m256i q[4] = {_mm256_and_si256(l0, m15), _mm256_and_si256(l1, m15),
		                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m15), _mm256_and_si256(_mm256_srli_epi16(l1, 4), m15)};
		for (int p = 0; p < 4; p++) {
			__m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * p)), m3);
			_mm256_storeu_si256((__m256i *)(u + 128 * h + 32 * p), _mm256_or_si256(q[p], _mm256_slli_epi16(hi, 4)));
		}
	}
}

// unpack_row unpacks weights [k0, k0+n) of the row at p (k0, n multiples
// of the block): n bytes into u, n/G groups' scales and offsets into sc, of.
static void unpack_row(const uint8_t *p, int dt, long k0, long n, uint8_t *u, float *sc, float *of) {
	const int be = dt_block_elems(dt), bb = dt_block_bytes(dt), gpb = be / dt_group(dt);
	p += k0 / be * bb;
	for (long k = 0; k < n; k += be, p += bb, u += be, sc += gpb, of += gpb) {
		switch (dt) {
		case STAR_Q8_0:
			unpack_q8_0(p, u, sc, of);
			break;
		case STAR_Q4_0:
			unpack_q4_0(p, u, sc, of);
			break;
		case STAR_Q4_K:
			unpack_q4_k(p, u, sc, of);
			break;
		case STAR_Q5_K:
			unpack_q5_k(p, u, sc, of);
			break;
		default:
			unpack_q6_k(p, u, sc, of);
			break;
		}
	}
}

// quant_x rounds a row of K activations (K a multiple of 32) to int8 per
// block of 32: scale dx = max|x|/127, q = round(x·127/max|x|) (to nearest
// even). It writes q[K], dx[K/32] and, per group of G, xs[K/G] = dx·Σq.
static void quant_x(const float *x, long K, int G, int8_t *q, float *dx, float *xs) {
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	for (long b = 0; b < K / 32; b++) {
		const float *xb = x + 32 * b;
		__m256 v[4], m = _mm256_setzero_ps();
		for (int i = 0; i < 4; i++) {
			v[i] = _mm256_loadu_ps(xb + 8 * i);
			m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
		}
		__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
		float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
		__m256 iv = _mm256_set1_ps(inv);
		__m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], iv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], iv));
		__m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], iv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], iv));
		__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
		_mm256_storeu_si256((__m256i *)(q + 32 * b), _mm256_permutevar8x32_epi32(p, perm));
		__m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
		__m128i a = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
		__m128i c = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
		a = _mm_hadd_epi32(a, c); // [a0+a1, a2+a3, c0+c1, c2+c3]
		a = _mm_hadd_epi32(a, a); // [first 16, second 16, ...]
		int s0 = _mm_cvtsi128_si32(a), s1 = _mm_extract_epi32(a, 1);
		dx[b] = d;
		if (G == 16) {
			xs[2 * b] = d * (float)s0;
			xs[2 * b + 1] = d * (float)s1;
		} else {
			xs[b] = d * (float)(s0 + s1);
		}
	}
}
