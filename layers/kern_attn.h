// Attention kernels: part of the kernel template (kern_impl.h), included
// once per variant; see there for the macros. Besides those, the variant
// defines VRED8(v): a V folded into 8 lanes (an __m256) by adding its halves.
//
// Keys and values are read in their stored dtype (STAR_F32, STAR_F16,
// STAR_BF16; the same for both) and layout: element (kv head h, token j, d)
// at h*hs + j*ts + d of k (strides khs, kts) and of v (vhs, vts). They are
// widened in registers; every product and sum is float32.
//
// Two kernels compute the attention of the queries [i0, i1) and the G =
// H/HKV query heads of kv head kh (R = (i1-i0)*G rows) over the keys
// [kb, ke) (a split of the keys; the caller merges the splits):
//
//	attn_tile  R > DEC_ROWS (prefill, query chunks): per key tile, S = Q.K^T
//	           by the register tile (K packed transposed and widened), online
//	           softmax, O += P.V by the register tile
//	attn_dec   R <= DEC_ROWS (decode): K and V are streamed once, row by
//	           row, in their dtype: S by dot products of each key row with
//	           the R query rows, O += P.V with R rows of O in registers

#define DEC_ROWS 8 // attn_dec takes at most this many rows
#define DGRP 4     // rows of a register group in attn_dec

// 2*VL elements of dtype dt at element i of p: a and b are the first and the
// second VL of them (F32, F16) or, for BF16, the even and the odd ones
// (VBF16PAIR). Rows combined with them are kept in the same order (dperm).
INL void F(ld2)(const void *p, const int dt, long i, V *a, V *b) {
	if (dt == STAR_F32) {
		*a = VLOAD((const float *)p + i);
		*b = VLOAD((const float *)p + i + VL);
	} else if (dt == STAR_F16) {
		*a = VF16((const uint16_t *)p + i);
		*b = VF16((const uint16_t *)p + i + VL);
	} else {
		V e, o;
		VBF16PAIR((const uint16_t *)p + i, e, o);
		*a = e;
		*b = o;
	}
}

// dperm is where attn_dec keeps element d of a query or output row: for
// BF16, each whole chunk of NR elements (those before Df) holds its even
// elements, then its odd ones, as F(ld2) reads a BF16 row; otherwise d.
INL long F(dperm)(const int dt, long d, long Df) {
	if (dt != STAR_BF16 || d >= Df)
		return d;
	long c = d / NR * NR, e = d - c;
	return c + (e & 1) * VL + (e >> 1);
}

// t[0..3] = the sums of the lanes of a0..a3.
INL void F(hsum4)(V a0, V a1, V a2, V a3, float *t) {
	__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(VRED8(a0), VRED8(a1)), _mm256_hadd_ps(VRED8(a2), VRED8(a3)));
	_mm_storeu_ps(t, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

static long F(attn_ws)(long R, long D) {
	long Rp = (R + MR - 1) / MR * MR, Dp = (D + NR - 1) / NR * NR;
	long tile = Rp * D + ATK * D + Rp * ATK + Rp * Dp + ATK * Dp + 4 * Rp + 64;
	long dec = 2 * R * Dp + R * ATK + 4 * R + 64;
	return tile > dec ? tile : dec;
}

// ---------------------------------------------------------------------------
// attn_dec.

// s[r*lds + j + i] = Q[r].k_(j+i) for the nr (<= DGRP) rows of Q (stride
// ldq, ordered as dperm) and the nk (<= 4) keys at kr + (j+i)*ts: each
// load of Q serves every key, each of K every row.
INL void F(dec_qk_keys)(const int dt, const int nr, const int nk, const float *Q, long ldq, const void *kr, long ts,
                        long j, long Df, long D, float *s, long lds) {
	V a[4][DGRP];
#pragma GCC unroll 4
	for (int i = 0; i < nk; i++)
#pragma GCC unroll 4
		for (int r = 0; r < nr; r++)
			a[i][r] = VZERO();
	for (long c = 0; c < Df; c += NR) {
		V k0[4], k1[4];
#pragma GCC unroll 4
		for (int i = 0; i < nk; i++)
			F(ld2)(kr, dt, (j + i) * ts + c, &k0[i], &k1[i]);
#pragma GCC unroll 4
		for (int r = 0; r < nr; r++) {
			V q0 = VLOAD(Q + r * ldq + c), q1 = VLOAD(Q + r * ldq + c + VL);
#pragma GCC unroll 4
			for (int i = 0; i < nk; i++)
				a[i][r] = VFMA(k1[i], q1, VFMA(k0[i], q0, a[i][r]));
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < nk; i++) {
		float t[4];
		F(hsum4)(a[i][0], nr > 1 ? a[i][1] : VZERO(), nr > 2 ? a[i][2] : VZERO(), nr > 3 ? a[i][3] : VZERO(), t);
#pragma GCC unroll 4
		for (int r = 0; r < nr; r++) {
			float x = t[r];
			for (long d = Df; d < D; d++)
				x += Q[r * ldq + d] * wval(kr, dt, (j + i) * ts + d);
			s[r * lds + j + i] = x;
		}
	}
}

// Keys per step of dec_qk: 4 where 16 lanes have the registers, else 2.
#define QKK (VL == 16 ? 4 : 2)

// s[r*lds + j] = Q[r].k_j for the keys j < tk at kr + j*ts (dec_qk_keys),
// fetching value rows into L1 for dec_pv (vpf: the tile's values, or NULL)
// and the next tile's key rows as it goes (every other line: the adjacent
// line prefetcher brings the rest).
INL void F(dec_qk)(const int dt, const int nr, const float *Q, long ldq, const void *kr, long ts, long tk, long Df,
                   long D, float *s, long lds, const char *vpf, long vts) {
	const long esz = dt == STAR_F32 ? 4 : 2, rowb = D * esz;
	long j = 0;
	for (; j + QKK <= tk; j += QKK) {
		if (vpf)
			for (long i = j; i < j + QKK; i++)
				for (long b = 0; b < rowb; b += 128) {
					_mm_prefetch(vpf + i * vts * esz + b, _MM_HINT_T0);
					_mm_prefetch((const char *)kr + (i + ATK) * ts * esz + b, _MM_HINT_T0);
				}
		F(dec_qk_keys)(dt, nr, QKK, Q, ldq, kr, ts, j, Df, D, s, lds);
	}
	for (; j < tk; j++) {
		if (vpf)
			for (long b = 0; b < rowb; b += 128)
				_mm_prefetch(vpf + j * vts * esz + b, _MM_HINT_T0);
		F(dec_qk_keys)(dt, nr, 1, Q, ldq, kr, ts, j, Df, D, s, lds);
	}
}

// One pass of dec_pv over columns [c, c + ch*NR): O[r][c..] += sum_j
// P[r*ldp + j] v_j[c..] with nr rows by ch*NR columns of O in registers.
INL void F(dec_pv_pass)(const int dt, const int nr, const int ch, const float *P, long ldp, const void *vb, long ts,
                        long tk, float *O, long ldo, long c) {
	V o[DGRP][4];
#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
		for (int x = 0; x < 2 * ch; x++)
			o[r][x] = VLOAD(O + r * ldo + c + x * VL);
	for (long j = 0; j < tk; j++) {
		V v[4];
#pragma GCC unroll 2
		for (int x = 0; x < ch; x++)
			F(ld2)(vb, dt, j * ts + c + x * NR, &v[2 * x], &v[2 * x + 1]);
#pragma GCC unroll 4
		for (int r = 0; r < nr; r++) {
			V p = VBCAST(P + r * ldp + j);
#pragma GCC unroll 4
			for (int x = 0; x < 2 * ch; x++)
				o[r][x] = VFMA(p, v[x], o[r][x]);
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
		for (int x = 0; x < 2 * ch; x++)
			VSTORE(O + r * ldo + c + x * VL, o[r][x]);
}

// O[r] += sum_j P[r*ldp + j] v_j for the nr (<= DGRP) rows of O (stride
// ldo, ordered as dperm) and the values j < tk at vb + j*ts: passes over
// the tile's values, each with a register tile of nr rows by NR columns
// (2*NR with 16 lanes, which have the registers).
INL void F(dec_pv)(const int dt, const int nr, const float *P, long ldp, const void *vb, long ts, long tk, float *O,
                   long ldo, long Df, long D) {
	long c = 0;
	if (VL == 16)
		for (; c + 2 * NR <= Df; c += 2 * NR)
			F(dec_pv_pass)(dt, nr, 2, P, ldp, vb, ts, tk, O, ldo, c);
	for (; c < Df; c += NR)
		F(dec_pv_pass)(dt, nr, 1, P, ldp, vb, ts, tk, O, ldo, c);
	for (long d = Df; d < D; d++)
		for (int r = 0; r < nr; r++) {
			float x = O[r * ldo + d];
			for (long j = 0; j < tk; j++)
				x += P[r * ldp + j] * wval(vb, dt, j * ts + d);
			O[r * ldo + d] = x;
		}
}

// Online softmax of one tile: for each row r, the scores S[r][0, tk) of
// keys [j0, j0+tk), of which the row sees those before vis[r], become
// exp(S - m) with m its running max (rescaling what O holds); l[r]
// accumulates their sum. Rows of S and O have strides ATK and ldo.
INL void F(tile_softmax)(float *S, long R, long tk, long j0, const long *vis, float *m, float *l, float *O, long ldo) {
	const long ntv = (tk + VL - 1) / VL * VL;
	for (long r = 0; r < R; r++) {
		float *s = S + r * ATK;
		long lim = vis[r] - j0;
		if (lim > tk)
			lim = tk;
		if (lim <= 0) {
			memset(s, 0, sizeof(float) * tk);
			continue;
		}
		for (long j = lim; j < ntv; j++)
			s[j] = -INFINITY;
		V mx = VLOAD(s);
		for (long j = VL; j < ntv; j += VL)
			mx = VMAX(mx, VLOAD(s + j));
		float mt = VHMAX(mx), mo = m[r];
		float mn = mt > mo ? mt : mo;
		V mv = VSET1(mn), sum = VZERO();
		for (long j = 0; j < ntv; j += VL) {
			V p = F(vexp)(VSUB(VLOAD(s + j), mv));
			VSTORE(s + j, p);
			sum = VADD(sum, p);
		}
		float corr = expf(mo - mn);
		l[r] = l[r] * corr + VHSUM(sum);
		m[r] = mn;
		if (corr != 1.0f) {
			V cv = VSET1(corr);
			float *o = O + r * ldo;
			for (long d = 0; d < ldo; d += VL)
				VSTORE(o + d, VMUL(VLOAD(o + d), cv));
		}
	}
}

INL void F(attn_dec_dt)(const float *q, const void *k, const void *vv, const int dt, long khs, long kts, long vhs,
                        long vts, float *out, float *lse, long nq, long nk, long H, long HKV, long D, int causal,
                        long i0, long i1, long kh, long kb, long ke, float *ws) {
	const long G = H / HKV, R = (i1 - i0) * G;
	const long Dp = (D + NR - 1) / NR * NR, Df = D / NR * NR;
	const long esz = dt == STAR_F32 ? 4 : 2;
	const float scale = 1.0f / sqrtf((float)D);
	float *Q = ws;             // [R][Dp]
	float *O = Q + R * Dp;     // [R][Dp]
	float *S = O + R * Dp;     // [R][ATK]
	float *m = S + R * ATK;    // [R]
	float *l = m + R;          // [R]
	long *vis = (long *)(l + R); // [R] (8-byte aligned: 2R floats before it)
	const char *kbase = (const char *)k + kh * khs * esz, *vbase = (const char *)vv + kh * vhs * esz;
	long vmax = kb;
	for (long r = 0; r < R; r++) {
		long i = i0 + r / G, h = kh * G + r % G;
		const float *qr = q + i * H * D + h * D;
		for (long d = 0; d < D; d++)
			Q[r * Dp + F(dperm)(dt, d, Df)] = qr[d] * scale;
		for (long d = D; d < Dp; d++)
			Q[r * Dp + d] = 0.0f;
		long vi = causal ? nk - nq + i + 1 : nk;
		if (vi > ke)
			vi = ke;
		vis[r] = vi;
		if (vi > vmax)
			vmax = vi;
		m[r] = -INFINITY;
		l[r] = 0;
	}
	memset(O, 0, sizeof(float) * R * Dp);
	for (long j0 = kb; j0 < vmax; j0 += ATK) {
		const long tk = vmax - j0 < ATK ? vmax - j0 : ATK;
		const char *kt = kbase + j0 * kts * esz, *vt = vbase + j0 * vts * esz;
		for (long r0 = 0; r0 < R; r0 += DGRP) {
			float *Qr = Q + r0 * Dp, *Sr = S + r0 * ATK;
			switch (R - r0 < DGRP ? R - r0 : DGRP) {
			case 1:
				F(dec_qk)(dt, 1, Qr, Dp, kt, kts, tk, Df, D, Sr, ATK, r0 == 0 ? vt : NULL, vts);
				break;
			case 2:
				F(dec_qk)(dt, 2, Qr, Dp, kt, kts, tk, Df, D, Sr, ATK, r0 == 0 ? vt : NULL, vts);
				break;
			case 3:
				F(dec_qk)(dt, 3, Qr, Dp, kt, kts, tk, Df, D, Sr, ATK, r0 == 0 ? vt : NULL, vts);
				break;
			default:
				F(dec_qk)(dt, 4, Qr, Dp, kt, kts, tk, Df, D, Sr, ATK, r0 == 0 ? vt : NULL, vts);
				break;
			}
		}
		F(tile_softmax)(S, R, tk, j0, vis, m, l, O, Dp);
		for (long r0 = 0; r0 < R; r0 += DGRP) {
			float *Or = O + r0 * Dp, *Sr = S + r0 * ATK;
			switch (R - r0 < DGRP ? R - r0 : DGRP) {
			case 1:
				F(dec_pv)(dt, 1, Sr, ATK, vt, vts, tk, Or, Dp, Df, D);
				break;
			case 2:
				F(dec_pv)(dt, 2, Sr, ATK, vt, vts, tk, Or, Dp, Df, D);
				break;
			case 3:
				F(dec_pv)(dt, 3, Sr, ATK, vt, vts, tk, Or, Dp, Df, D);
				break;
			default:
				F(dec_pv)(dt, 4, Sr, ATK, vt, vts, tk, Or, Dp, Df, D);
				break;
			}
		}
	}
	for (long r = 0; r < R; r++) {
		long i = i0 + r / G, h = kh * G + r % G;
		float *o = out + i * H * D + h * D;
		if (!(l[r] > 0)) {
			memset(o, 0, sizeof(float) * D);
			lse[i * H + h] = -INFINITY;
			continue;
		}
		float inv = 1.0f / l[r];
		for (long d = 0; d < D; d++)
			o[d] = O[r * Dp + F(dperm)(dt, d, Df)] * inv;
		lse[i * H + h] = m[r] + logf(l[r]);
	}
}

// ---------------------------------------------------------------------------
// attn_tile.

// Flash attention for the queries [i0, i1) and the G = H/HKV query heads
// of kv head kh, all processed together as R = (i1-i0)*G rows so that each
// tile of K and V is read once for them. Per key tile of ATK keys:
// S = Q.K^T by the register tile (K packed transposed and widened), online
// softmax along the keys of each row, O += P.V by the register tile reading
// V in place (F32 with D a multiple of NR) or widened into a tile.
INL void F(attn_tile_dt)(const float *q, const void *k, const void *v, const int dt, long khs, long kts, long vhs,
                         long vts, float *out, float *lse, long nq, long nk, long H, long HKV, long D, int causal,
                         long i0, long i1, long kh, long kb, long ke, float *ws) {
	const long G = H / HKV, R = (i1 - i0) * G;
	const long Rp = (R + MR - 1) / MR * MR, Dp = (D + NR - 1) / NR * NR;
	const long esz = dt == STAR_F32 ? 4 : 2;
	const int vdirect = dt == STAR_F32 && D % NR == 0;
	const float scale = 1.0f / sqrtf((float)D);
	float *Qp = ws;                // [Rp/MR][D][MR]
	float *KT = Qp + Rp * D;       // [ATK/NR][D][NR]
	float *St = KT + ATK * D;      // [Rp][ATK]
	float *O = St + Rp * ATK;      // [Rp][Dp]
	float *Vp = O + Rp * Dp;       // [ATK][Dp]
	float *m = Vp + ATK * Dp;      // [Rp]
	float *l = m + Rp;             // [Rp]
	long *vis = (long *)(l + Rp);  // [Rp] (two floats each; 8-byte aligned as Rp is even)
	const char *kbase = (const char *)k + kh * khs * esz, *vbase = (const char *)v + kh * vhs * esz;
	long vmax = kb;
	for (long r = 0; r < Rp; r++) {
		long rr = r < R ? r : R - 1;
		long i = i0 + rr / G, h = kh * G + rr % G;
		const float *qr = q + i * H * D + h * D;
		for (long d = 0; d < D; d++)
			Qp[(r / MR) * D * MR + d * MR + r % MR] = r < R ? qr[d] * scale : 0.0f;
		long vi = causal ? nk - nq + i + 1 : nk;
		if (vi > ke)
			vi = ke;
		vis[r] = vi;
		if (vi > vmax)
			vmax = vi;
		m[r] = -INFINITY;
		l[r] = 0;
	}
	memset(O, 0, sizeof(float) * Rp * Dp);
	for (long j0 = kb; j0 < vmax; j0 += ATK) {
		long tk = vmax - j0 < ATK ? vmax - j0 : ATK;
		long np = (tk + NR - 1) / NR;
		// Fetch the next tile of K and V into L2 while this one is computed,
		// a few lines before each register-tile call (PF_SOME): rows of one
		// kv head may be short strided runs that hardware prefetchers do not
		// follow, and a burst of prefetches would stall on miss buffers.
		const long lpr = (D * esz + 63) / 64;                   // lines per key row
		long pfn = 0, pfi = 0;                                  // lines to prefetch, issued
		if (j0 + ATK < vmax)
			pfn = 2 * lpr * (vmax - j0 - ATK < ATK ? vmax - j0 - ATK : ATK);
		const long calls = Rp / MR * (np + Dp / NR), pfper = (pfn + calls - 1) / calls;
#define PF_SOME()                                                                                               \
	for (long e_ = pfi + pfper < pfn ? pfi + pfper : pfn; pfi < e_; pfi++) {                              \
		long j_ = j0 + ATK + pfi / (2 * lpr), l_ = pfi % (2 * lpr);                                    \
		_mm_prefetch(l_ < lpr ? kbase + (j_ * kts * esz + l_ * 64) : vbase + (j_ * vts * esz + (l_ - lpr) * 64), \
		             _MM_HINT_T1);                                                                     \
	}
		for (long p = 0; p < np; p++) {
			long nr = tk - p * NR < NR ? tk - p * NR : NR;
			pack_b(KT + p * D * NR, kbase, dt, kts, j0 + p * NR, (int)nr, 0, (int)D, NR);
		}
		for (long rp = 0; rp < Rp; rp += MR)
			for (long p = 0; p < np; p++) {
				PF_SOME();
				F(ukr)(D, Qp + rp * D, MR, KT + p * D * NR, NR, St + rp * ATK + p * NR, ATK, 0);
			}
		F(tile_softmax)(St, Rp, tk, j0, vis, m, l, O, Dp);
		const float *vb;
		long ldb;
		if (vdirect) {
			vb = (const float *)vbase + j0 * vts;
			ldb = vts;
		} else {
			for (long j = 0; j < tk; j++) {
				float *d = Vp + j * Dp;
				long e = 0, o = (j0 + j) * vts;
				for (; e + 8 <= D; e += 8)
					_mm256_storeu_ps(d + e, w8(vbase, dt, o + e));
				for (; e < D; e++)
					d[e] = wval(vbase, dt, o + e);
				for (; e < Dp; e++)
					d[e] = 0.0f;
			}
			vb = Vp;
			ldb = Dp;
		}
		for (long rp = 0; rp < Rp; rp += MR)
			for (long dp = 0; dp < Dp; dp += NR) {
				PF_SOME();
				F(ukr_rows)(tk, St + rp * ATK, vb + dp, ldb, O + rp * Dp + dp, Dp);
			}
#undef PF_SOME
	}
	for (long r = 0; r < R; r++) {
		long i = i0 + r / G, h = kh * G + r % G;
		float *o = out + i * H * D + h * D;
		if (!(l[r] > 0)) {
			memset(o, 0, sizeof(float) * D);
			lse[i * H + h] = -INFINITY;
			continue;
		}
		float inv = 1.0f / l[r];
		for (long d = 0; d < D; d++)
			o[d] = O[r * Dp + d] * inv;
		lse[i * H + h] = m[r] + logf(l[r]);
	}
}

// attn: the queries [i0, i1) of kv head kh over keys [kb, ke); out and lse
// as [nq][H][D] and [nq][H] (the whole result, or one split's part).
static void F(attn)(const float *q, const void *k, const void *v, int dt, long khs, long kts, long vhs, long vts,
                    float *out, float *lse, long nq, long nk, long H, long HKV, long D, int causal, long i0, long i1,
                    long kh, long kb, long ke, float *ws) {
#define ATTN_(fn, d) fn(q, k, v, d, khs, kts, vhs, vts, out, lse, nq, nk, H, HKV, D, causal, i0, i1, kh, kb, ke, ws)
	if ((i1 - i0) * (H / HKV) <= DEC_ROWS) {
		switch (dt) {
		case STAR_F32:
			ATTN_(F(attn_dec_dt), STAR_F32);
			break;
		case STAR_F16:
			ATTN_(F(attn_dec_dt), STAR_F16);
			break;
		default:
			ATTN_(F(attn_dec_dt), STAR_BF16);
			break;
		}
		return;
	}
	switch (dt) {
	case STAR_F32:
		ATTN_(F(attn_tile_dt), STAR_F32);
		break;
	case STAR_F16:
		ATTN_(F(attn_tile_dt), STAR_F16);
		break;
	default:
		ATTN_(F(attn_tile_dt), STAR_BF16);
		break;
	}
#undef ATTN_
}

#undef DEC_ROWS
#undef DGRP
#undef QKK
