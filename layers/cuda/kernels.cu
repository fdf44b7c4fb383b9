// star's device kernels: the model math of a forward pass that cuBLASLt's
// matrix products do not cover. Plain CUDA C: no headers, 16-bit floats as
// unsigned short with explicit conversions, so that NVRTC (on a GPU
// machine), clang (compile check in CI) and the host stand-in (tests, see
// nccl/standin) all compile the same text. The shapes follow package
// layers: row-major, one row per token.
//
// Each kernel is extern "C" so the driver finds it by name. Launch shapes
// are given per kernel; 32 threads make a warp. A prelude (prelude_*.h)
// comes first and defines the few things the compilers differ on: the
// math functions star_expf, star_logf, star_rsqrtf,
// star_fmaxf, the warp shuffles star_shfl_xor and star_shfl, and the bit
// casts star_as_float and star_as_int.

#define STAR_WARP 32

__device__ __forceinline__ float star_neg_inf() { return star_as_float(0xff800000); }

__device__ __forceinline__ float star_bf16_to_f32(unsigned short h) {
	return star_as_float(((unsigned int)h) << 16);
}

__device__ __forceinline__ unsigned short star_f32_to_bf16(float f) {
	unsigned int u = (unsigned int)star_as_int(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u); // NaN stays NaN
	u += 0x7fffu + ((u >> 16) & 1u); // round to nearest even
	return (unsigned short)(u >> 16);
}

__device__ __forceinline__ float star_f16_to_f32(unsigned short h) {
	unsigned int s = ((unsigned int)h & 0x8000u) << 16;
	unsigned int e = ((unsigned int)h >> 10) & 0x1fu;
	unsigned int m = (unsigned int)h & 0x3ffu;
	if (e == 0) {
		if (m == 0) return star_as_float((int)s);
		// subnormal: normalise
		float f = (float)m * 5.9604644775390625e-8f; // 2^-24
		return s ? -f : f;
	}
	if (e == 31) return star_as_float((int)(s | 0x7f800000u | (m << 13)));
	return star_as_float((int)(s | ((e + 112u) << 23) | (m << 13)));
}

__device__ __forceinline__ unsigned short star_f32_to_f16(float f) {
	unsigned int u = (unsigned int)star_as_int(f);
	unsigned int s = (u >> 16) & 0x8000u;
	unsigned int a = u & 0x7fffffffu;
	if (a > 0x7f800000u) return (unsigned short)(s | 0x7e00u); // NaN
	if (a >= 0x477ff000u) return (unsigned short)(s | 0x7c00u); // overflow to Inf
	if (a < 0x38800000u) { // subnormal or zero in half
		if (a < 0x33000000u) return (unsigned short)s;
		unsigned int e = a >> 23;
		unsigned int m = (a & 0x7fffffu) | 0x800000u;
		unsigned int shift = 126u - e; // 14..24
		unsigned int r = m >> shift;
		unsigned int rem = m & ((1u << shift) - 1u);
		unsigned int half = 1u << (shift - 1u);
		if (rem > half || (rem == half && (r & 1u))) r++;
		return (unsigned short)(s | r);
	}
	unsigned int r = ((a >> 13) - (112u << 10));
	unsigned int rem = a & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
	return (unsigned short)(s | r);
}

// star_load reads element i of a matrix stored as dtype (0 F32, 1 F16,
// 2 BF16), widened to float.
__device__ __forceinline__ float star_load(const void *p, int dtype, long long i) {
	if (dtype == 0) return ((const float *)p)[i];
	if (dtype == 1) return star_f16_to_f32(((const unsigned short *)p)[i]);
	return star_bf16_to_f32(((const unsigned short *)p)[i]);
}

__device__ __forceinline__ float star_warp_sum(float v) {
	for (int o = STAR_WARP / 2; o > 0; o >>= 1) v += star_shfl_xor(v, o);
	return v;
}

__device__ __forceinline__ float star_warp_max(float v) {
	for (int o = STAR_WARP / 2; o > 0; o >>= 1) v = star_fmaxf(v, star_shfl_xor(v, o));
	return v;
}

// star_embed: out[i, :] = table[tok[i], :] widened to float.
// grid (n), block (256). out [n, D], table [V, D] of dtype, tok [n].
extern "C" __global__ void star_embed(float *out, const void *table, int dtype, const int *tok, int D) {
	int i = blockIdx.x;
	long long row = (long long)tok[i] * D;
	for (int d = threadIdx.x; d < D; d += blockDim.x) out[(long long)i * D + d] = star_load(table, dtype, row + d);
}

// star_rmsnorm: out[i] = x[i] * w / sqrt(mean(x[i]^2) + eps).
// grid (n), block (256: a multiple of 32, at most 1024). out, x [n, D], w [D].
extern "C" __global__ void star_rmsnorm(float *out, const float *x, const float *w, int D, float eps) {
	__shared__ float part[32];
	const float *xi = x + (long long)blockIdx.x * D;
	float *oi = out + (long long)blockIdx.x * D;
	float ss = 0.0f;
	for (int d = threadIdx.x; d < D; d += blockDim.x) ss += xi[d] * xi[d];
	ss = star_warp_sum(ss);
	int lane = threadIdx.x % STAR_WARP, warp = threadIdx.x / STAR_WARP;
	if (lane == 0) part[warp] = ss;
	__syncthreads();
	if (warp == 0) {
		float v = lane < (int)(blockDim.x / STAR_WARP) ? part[lane] : 0.0f;
		v = star_warp_sum(v);
		if (lane == 0) part[0] = v;
	}
	__syncthreads();
	float scale = star_rsqrtf(part[0] / (float)D + eps);
	for (int d = threadIdx.x; d < D; d += blockDim.x) oi[d] = xi[d] * scale * w[d];
}

// star_rope rotates each head of x in place by its token's position:
// adjacent pairs (2j, 2j+1), or half-split pairs (j, j+hd/2) when half is
// set. cos and sin hold, per token, the cosine and sine of pos * freq[j]
// (computed on the host in float64: an angle of a million radians in
// float32 would be off by a tenth). grid (n), block (128).
// x [n, heads*hd], cos, sin [n, hd/2].
extern "C" __global__ void star_rope(float *x, const float *cos, const float *sin, int heads, int hd, int half) {
	int i = blockIdx.x, pairs = hd / 2;
	float *xi = x + (long long)i * heads * hd;
	const float *ci = cos + (long long)i * pairs, *si = sin + (long long)i * pairs;
	for (int t = threadIdx.x; t < heads * pairs; t += blockDim.x) {
		int h = t / pairs, j = t % pairs;
		float c = ci[j], s = si[j];
		int p = half ? h * hd + j : h * hd + 2 * j;
		int q = half ? p + pairs : p + 1;
		float x0 = xi[p], x1 = xi[q];
		xi[p] = x0 * c - x1 * s;
		xi[q] = x0 * s + x1 * c;
	}
}

// star_swiglu: h1 = silu(h1) * h3, over n values. grid (ceil(n/256)), block (256).
extern "C" __global__ void star_swiglu(float *h1, const float *h3, long long n) {
	long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		float g = h1[i];
		h1[i] = g / (1.0f + star_expf(-g)) * h3[i];
	}
}

// star_add: x += y over n values. grid (ceil(n/256)), block (256).
extern "C" __global__ void star_add(float *x, const float *y, long long n) {
	long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) x[i] += y[i];
}

// star_to16 converts n floats to dtype (1 F16, 2 BF16) for the 16-bit
// matrix products. grid (ceil(n/256)), block (256).
extern "C" __global__ void star_to16(unsigned short *out, const float *x, int dtype, long long n) {
	long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) out[i] = dtype == 1 ? star_f32_to_f16(x[i]) : star_f32_to_bf16(x[i]);
}

// star_attend_keys is one warp's attention of the query row qr [D] to the
// keys lo .. hi-1 of kv head g in two segments, each token-major [rows,
// row] of element type kvdtype (0 F32, 1 F16, 2 BF16): keys below n1 are
// rows of (k1, v1), the others rows j - n1 of (k2, v2). It writes the
// output to o [D] and its log-sum-exp to *olse (lane 0); no key: o 0 and
// lse -Inf. Each lane owns output dims lane, lane+32, ... (up to 8 of
// them: D <= 256), and the keys come 32 at a time, one per lane, with an
// online softmax.
__device__ __forceinline__ void star_attend_keys(float *o, float *olse, const float *qr, const void *k1,
                                                 const void *v1, int n1, const void *k2, const void *v2, int lo,
                                                 int hi, int g, long long row, int D, int kvdtype) {
	int lane = threadIdx.x;
	float scale = star_rsqrtf((float)D);
	float acc[8];
	for (int t = 0; t < 8; t++) acc[t] = 0.0f;
	float m = star_neg_inf(), l = 0.0f;
	for (int j0 = lo; j0 < hi; j0 += STAR_WARP) {
		int j = j0 + lane;
		float s = star_neg_inf();
		if (j < hi) {
			const void *ks = j < n1 ? k1 : k2;
			long long kj = (long long)(j < n1 ? j : j - n1) * row + (long long)g * D;
			float dot = 0.0f;
			for (int d = 0; d < D; d++) dot += qr[d] * star_load(ks, kvdtype, kj + d);
			s = dot * scale;
		}
		float mt = star_fmaxf(m, star_warp_max(s));
		float p = j < hi ? star_expf(s - mt) : 0.0f;
		float corr = star_expf(m - mt); // 0 on the first chunk (m = -Inf)
		l = l * corr + star_warp_sum(p);
		for (int t = 0; t < 8; t++) acc[t] *= corr;
		int cnt = hi - j0 < STAR_WARP ? hi - j0 : STAR_WARP;
		for (int jj = 0; jj < cnt; jj++) {
			float pj = star_shfl(p, jj);
			int jv = j0 + jj;
			const void *vs = jv < n1 ? v1 : v2;
			long long vj = (long long)(jv < n1 ? jv : jv - n1) * row + (long long)g * D;
			for (int t = 0; t < 8; t++) {
				int d = lane + t * STAR_WARP;
				if (d < D) acc[t] += pj * star_load(vs, kvdtype, vj + d);
			}
		}
		m = mt;
	}
	for (int t = 0; t < 8; t++) {
		int d = lane + t * STAR_WARP;
		if (d < D) o[d] = hi > lo ? acc[t] / l : 0.0f;
	}
	if (lane == 0) *olse = hi > lo ? m + star_logf(l) : star_neg_inf();
}

// star_attention: scaled dot-product attention of nq query rows, per head,
// with its log-sum-exp:
//   out[r, h] = softmax(q[r, h] · K_g^T / sqrt(D)) V_g,  lse[r, h] = log Σ exp(scores)
// over the keys the row sees, g = h / (H / HKV). The nk keys come in two
// segments (star_attend_keys): keys 0 .. n1-1 from (k1, v1), keys n1 ..
// nk-1 from (k2, v2) (phase 1's anchor, then the block; n1 = 0: one
// segment). causal: the nq queries are the last nq of the nk keys'
// positions, so row r sees keys 0 .. nk-nq+r; otherwise every key. A row
// that sees no key gets out 0 and lse -Inf (it contributes nothing to a
// merge).
// One warp per (row, head): grid (nq, H), block (32). D <= 256.
// q, out [nq, H*D]; lse [nq, H].
extern "C" __global__ void star_attention(float *out, float *lse, const float *q, const void *k1, const void *v1,
                                          int n1, const void *k2, const void *v2, int nq, int nk, int H, int HKV,
                                          int D, int causal, int kvdtype) {
	int r = blockIdx.x, h = blockIdx.y;
	int nvis = causal ? nk - nq + r + 1 : nk;
	if (nvis > nk) nvis = nk;
	long long rh = (long long)r * H + h;
	star_attend_keys(out + rh * D, lse + rh, q + rh * D, k1, v1, n1, k2, v2, 0, nvis, h / (H / HKV),
	                 (long long)HKV * D, D, kvdtype);
}

// star_attention_tiled is star_attention for head sizes up to 128 with
// each key and value read from device memory once per block instead of
// once per (row, head): a block takes R query rows of kv head g with all
// its hpg = H/HKV query heads, one warp per (row, head) (R*hpg <= 16
// warps); tiles of 32 keys and values are loaded, coalesced and widened
// to float, into shared memory, and each warp runs star_attention's
// online softmax over the tile. Same arguments as star_attention, and R.
// grid (ceil(nq/R), HKV), block (32, R*hpg).
#define STAR_TK 32
#define STAR_TD 128
#define STAR_TW 16
extern "C" __global__ void star_attention_tiled(float *out, float *lse, const float *q, const void *k1,
                                                const void *v1, int n1, const void *k2, const void *v2, int nq,
                                                int nk, int H, int HKV, int D, int causal, int kvdtype, int R) {
	__shared__ float ks[STAR_TK][STAR_TD + 1]; // +1: lanes reading different keys hit different banks
	__shared__ float vs[STAR_TK][STAR_TD + 1];
	__shared__ float qs[STAR_TW][STAR_TD];
	int g = blockIdx.y, hpg = H / HKV;
	int w = threadIdx.y, lane = threadIdx.x, nthreads = blockDim.x * blockDim.y, tid = w * STAR_WARP + lane;
	int r = blockIdx.x * R + w / hpg, h = g * hpg + w % hpg;
	int active = r < nq;
	int nvis = active ? (causal ? nk - nq + r + 1 : nk) : 0;
	if (nvis > nk) nvis = nk;
	int rlast = blockIdx.x * R + R - 1;
	if (rlast > nq - 1) rlast = nq - 1;
	int nmax = causal ? nk - nq + rlast + 1 : nk; // the block's furthest key
	if (nmax > nk) nmax = nk;
	long long row = (long long)HKV * D;
	if (active)
		for (int d = lane; d < D; d += STAR_WARP) qs[w][d] = q[((long long)r * H + h) * D + d];
	float scale = star_rsqrtf((float)D);
	float acc[STAR_TD / STAR_WARP];
	for (int t = 0; t < STAR_TD / STAR_WARP; t++) acc[t] = 0.0f;
	float m = star_neg_inf(), l = 0.0f;
	for (int j0 = 0; j0 < nmax; j0 += STAR_TK) {
		__syncthreads(); // the previous tile is used up (and qs written)
		int cnt = nmax - j0 < STAR_TK ? nmax - j0 : STAR_TK;
		for (int e = tid; e < cnt * D; e += nthreads) {
			int jj = e / D, d = e - jj * D, j = j0 + jj;
			long long o = (long long)(j < n1 ? j : j - n1) * row + (long long)g * D + d;
			ks[jj][d] = star_load(j < n1 ? k1 : k2, kvdtype, o);
			vs[jj][d] = star_load(j < n1 ? v1 : v2, kvdtype, o);
		}
		__syncthreads();
		if (j0 < nvis) { // the same for the whole warp: shuffles stay inside one branch
			int j = j0 + lane;
			float s = star_neg_inf();
			if (j < nvis) {
				float dot = 0.0f;
				for (int d = 0; d < D; d++) dot += qs[w][d] * ks[lane][d];
				s = dot * scale;
			}
			float mt = star_fmaxf(m, star_warp_max(s)); // finite: key j0 is visible
			float p = j < nvis ? star_expf(s - mt) : 0.0f;
			float corr = star_expf(m - mt);
			l = l * corr + star_warp_sum(p);
			for (int t = 0; t < STAR_TD / STAR_WARP; t++) acc[t] *= corr;
			int vis = nvis - j0 < STAR_TK ? nvis - j0 : STAR_TK;
			for (int jj = 0; jj < vis; jj++) {
				float pj = star_shfl(p, jj);
				for (int t = 0; t < STAR_TD / STAR_WARP; t++) {
					int d = lane + t * STAR_WARP;
					if (d < D) acc[t] += pj * vs[jj][d];
				}
			}
			m = mt;
		}
	}
	if (active) {
		float *or_ = out + ((long long)r * H + h) * D;
		for (int t = 0; t < STAR_TD / STAR_WARP; t++) {
			int d = lane + t * STAR_WARP;
			if (d < D) or_[d] = nvis > 0 ? acc[t] / l : 0.0f;
		}
		if (lane == 0) lse[(long long)r * H + h] = nvis > 0 ? m + star_logf(l) : star_neg_inf();
	}
}

// star_attention_split is decode's attention (one query row, which sees
// every key) split over the keys, flash-decoding style, so that a long
// context keeps the whole device busy: block (s, h) attends head h to keys
// [s*chunk, min(nk, (s+1)*chunk)) of the two segments (star_attend_keys)
// and writes its partial row (D outputs, then its lse; -Inf when it has no
// key) to parts [S][H][D+1], which star_merge_packed then merges.
// grid (S, H), block (32). q [H*D].
extern "C" __global__ void star_attention_split(float *parts, const float *q, const void *k1, const void *v1, int n1,
                                                const void *k2, const void *v2, int nk, int H, int HKV, int D,
                                                int kvdtype, int chunk) {
	int s = blockIdx.x, h = blockIdx.y;
	int lo = s * chunk, hi = lo + chunk < nk ? lo + chunk : nk;
	float *pr = parts + ((long long)s * H + h) * (D + 1);
	star_attend_keys(pr, pr + D, q + (long long)h * D, k1, v1, n1, k2, v2, lo, hi, h / (H / HKV), (long long)HKV * D, D,
	                 kvdtype);
}

// star_store_kv writes n token rows of x [n, w] (float) into the cache rows
// dst [.., w] of element type dtype (0 F32, 1 F16, 2 BF16) from row j0.
// grid (n), block (256).
extern "C" __global__ void star_store_kv(void *dst, const float *x, int dtype, long long j0, int w) {
	long long i = blockIdx.x;
	for (int d = threadIdx.x; d < w; d += blockDim.x) {
		long long o = (j0 + i) * w + d;
		float f = x[i * w + d];
		if (dtype == 0) ((float *)dst)[o] = f;
		else if (dtype == 1) ((unsigned short *)dst)[o] = star_f32_to_f16(f);
		else ((unsigned short *)dst)[o] = star_f32_to_bf16(f);
	}
}

// star_merge folds a partial attention (o2, lse2) into (o, lse), in place,
// row by row: M = max(lse, lse2); w = exp(lse - M), w2 = exp(lse2 - M);
// o = (w o + w2 o2) / (w + w2); lse = M + log(w + w2). An empty part
// (lse -Inf) has weight 0; two empty parts stay empty (o 0, lse -Inf).
// grid (rows), block (32). o, o2 [rows, D]; lse, lse2 [rows].
extern "C" __global__ void star_merge(float *o, float *lse, const float *o2, const float *lse2, int D) {
	int r = blockIdx.x;
	float a = lse[r], b = lse2[r];
	float M = star_fmaxf(a, b);
	float *orow = o + (long long)r * D;
	const float *o2row = o2 + (long long)r * D;
	if (M == star_neg_inf()) {
		for (int d = threadIdx.x; d < D; d += blockDim.x) orow[d] = 0.0f;
		return;
	}
	float wa = a == star_neg_inf() ? 0.0f : star_expf(a - M);
	float wb = b == star_neg_inf() ? 0.0f : star_expf(b - M);
	float inv = 1.0f / (wa + wb);
	for (int d = threadIdx.x; d < D; d += blockDim.x) orow[d] = (wa * orow[d] + wb * o2row[d]) * inv;
	__syncthreads(); // every lane has read lse[r] before it changes
	if (threadIdx.x == 0) lse[r] = M + star_logf(wa + wb);
}

// star_pack writes rows of (o [rows, D], lse [rows]) as dst [rows, D+1]:
// each row's D values, then its lse (one message of an all-gather).
// grid (rows), block (32).
extern "C" __global__ void star_pack(float *dst, const float *o, const float *lse, int D) {
	long long r = blockIdx.x;
	for (int d = threadIdx.x; d < D; d += blockDim.x) dst[r * (D + 1) + d] = o[r * D + d];
	if (threadIdx.x == 0) dst[r * (D + 1) + D] = lse[r];
}

// star_merge_packed sets (o, lse) to the exact merge of P packed partials
// parts [P][rows][D+1] (star_pack's rows of every rank, in rank order):
// M = max_p lse_p; w_p = exp(lse_p - M) (0 for -Inf); o = Σ w_p o_p / Σ w_p;
// lse = M + log Σ w_p. No part with keys: o 0, lse -Inf.
// grid (rows), block (32).
extern "C" __global__ void star_merge_packed(float *o, float *lse, const float *parts, int P, long long rows, int D) {
	long long r = blockIdx.x;
	float M = star_neg_inf();
	for (int p = 0; p < P; p++) M = star_fmaxf(M, parts[((long long)p * rows + r) * (D + 1) + D]);
	if (M == star_neg_inf()) {
		for (int d = threadIdx.x; d < D; d += blockDim.x) o[r * D + d] = 0.0f;
		if (threadIdx.x == 0) lse[r] = M;
		return;
	}
	float s = 0.0f;
	for (int p = 0; p < P; p++) {
		float l = parts[((long long)p * rows + r) * (D + 1) + D];
		if (l != star_neg_inf()) s += star_expf(l - M);
	}
	for (int d = threadIdx.x; d < D; d += blockDim.x) {
		float acc = 0.0f;
		for (int p = 0; p < P; p++) {
			const float *row = parts + ((long long)p * rows + r) * (D + 1);
			if (row[D] != star_neg_inf()) acc += star_expf(row[D] - M) * row[d];
		}
		o[r * D + d] = acc / s;
	}
	if (threadIdx.x == 0) lse[r] = M + star_logf(s);
}
