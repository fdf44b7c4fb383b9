// The GEMM of BF16 weights on AMX tiles (bfloat16 products, float32 sums:
// tdpbf16ps), included by kern_amd64.c twice: avx512 (native, only where
// star_cpu_features reports AMX and the OS granted the tile state) and
// emu512 (every tile instruction emulated in C, for tests on any x86-64).
// The includer defines SFX and the tile vocabulary:
//
//	TCFG()             tiles 0-7 of 16 rows x 64 bytes: 0-3 C (16 x 16
//	                   floats), 4-5 A (16 rows x 32 bfloat16), 6-7 B
//	                   (16 rows of 16 pairs of bfloat16)
//	TZERO(t)           tile t = 0
//	TLOAD(t, p, s)     tile t's rows from p, s bytes apart
//	TSTORE(t, p, s)    tile t's rows to p, s bytes apart
//	TDPBF16PS(c, a, b) c[m][n] += Σ_k a[m][2k]·b[k][2n] + a[m][2k+1]·b[k][2n+1]
//	TRELEASE()         the tiles back to their initial state
//
// x is rounded to bfloat16 (RoundBF16), the weights are used as stored. A
// tile product is 16x16x32 products per instruction; a block of the
// output is 32 rows x 32 columns (C tiles 0-3), its A and B tiles each
// used twice. (Quantized weights split exactly into two bfloat16, hi + lo,
// in two passes ran no faster end to end than the VNNI GEMM: not here.)

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(name, SFX)
#define MRA 32 // rows of x per A panel
#define NRA 32 // columns (weight rows) per B panel

// An A panel: MRA rows of x over Kp columns (K rounded up to 32, zero
// padded) as bfloat16 a[Kp/32][MRA][32]: the A tiles of each step of 32
// columns, side by side. Rows past M are zero.
static long F(panel_a_amx_elems)(long Kp) { return Kp * MRA; }

static void F(gemm_packa_amx)(const float *x, long M, long K, uint16_t *ap, long p0, long p1) {
	const long Kp = (K + 31) & ~31L;
	uint16_t row[Kp];
	for (long p = p0; p < p1; p++) {
		uint16_t *a = ap + p * F(panel_a_amx_elems)(Kp);
		for (int r = 0; r < MRA; r++) {
			const long i = p * MRA + r;
			if (i < M)
				to_bf16(x + i * K, K, row);
			else
				memset(row, 0, sizeof(uint16_t) * K);
			memset(row + K, 0, sizeof(uint16_t) * (Kp - K));
			for (long s = 0; s < Kp / 32; s++)
				memcpy(a + (s * MRA + r) * 32, row + 32 * s, 64);
		}
	}
}

// A B panel: weight rows [j0, j0+nr) of the BF16 matrix w (rows of K)
// over columns [k0, k0+kc) (kc a multiple of 32; columns past K and rows
// past nr zero) as pairs of bfloat16 b[kc/2][NRA][2]: the B tiles of each
// step, 128 bytes a row.
static void F(pack_b_amx)(uint16_t *dst, const uint16_t *w, long K, long j0, int nr, long k0, long kc) {
	uint16_t hi[8][256] __attribute__((aligned(32)));
	const long kv = K - k0 < kc ? K - k0 : kc; // columns of w in the panel
	for (long c0 = 0; c0 < kc; c0 += 256) {
		const long cc = kc - c0 < 256 ? kc - c0 : 256, cv = kv - c0 < cc ? (kv - c0 > 0 ? kv - c0 : 0) : cc;
		for (int g = 0; g < NRA; g += 8) {
			for (int i = 0; i < 8; i++) {
				const long have = g + i < nr ? cv : 0;
				if (have > 0)
					memcpy(hi[i], w + (j0 + g + i) * K + k0 + c0, 2 * have);
				memset(hi[i] + have, 0, 2 * (cc - have));
			}
			// pairs of 8 rows of w, transposed 8 x 8 words at a time
			uint16_t *d = dst + (c0 / 2 * NRA + g) * 2;
			for (long p = 0; p < cc / 2; p += 8) {
				__m256 r[8];
				for (int i = 0; i < 8; i++)
					r[i] = _mm256_load_ps((const float *)hi[i] + p);
				tr8x8(r);
				for (int i = 0; i < 8; i++)
					_mm256_storeu_ps((float *)(d + (p + i) * NRA * 2), r[i]);
			}
		}
	}
}

// c[mr][nr] (row stride ldc; = or += by acc) gets the product of an A
// panel and a B panel over kc columns. ws: MRA*NRA floats, for a partial
// block.
static void F(ukr_amx)(long kc, const uint16_t *a, const uint16_t *b, float *c, long ldc, int mr, int nr, int acc,
                       float *ws) {
	const int whole = mr == MRA && nr == NRA;
	float *o = whole ? c : ws;
	const long lo = whole ? ldc : NRA;
	if (!whole)
		for (int r = 0; r < MRA; r++)
			for (int j = 0; j < NRA; j++)
				ws[r * NRA + j] = acc && r < mr && j < nr ? c[r * ldc + j] : 0.0f;
	if (acc || !whole) {
		TLOAD(0, o, 4 * lo);
		TLOAD(1, o + 16, 4 * lo);
		TLOAD(2, o + 16 * lo, 4 * lo);
		TLOAD(3, o + 16 * lo + 16, 4 * lo);
	} else {
		TZERO(0);
		TZERO(1);
		TZERO(2);
		TZERO(3);
	}
	for (long k = 0; k < kc; k += 32) {
		TLOAD(4, a, 64);
		TLOAD(5, a + 16 * 32, 64);
		TLOAD(6, b + k * NRA, 4 * NRA);
		TLOAD(7, b + k * NRA + 32, 4 * NRA);
		TDPBF16PS(0, 4, 6);
		TDPBF16PS(1, 4, 7);
		TDPBF16PS(2, 5, 6);
		TDPBF16PS(3, 5, 7);
		a += MRA * 32;
	}
	TSTORE(0, o, 4 * lo);
	TSTORE(1, o + 16, 4 * lo);
	TSTORE(2, o + 16 * lo, 4 * lo);
	TSTORE(3, o + 16 * lo + 16, 4 * lo);
	if (!whole)
		for (int r = 0; r < mr; r++)
			memcpy(c + r * ldc, ws + r * NRA, sizeof(float) * nr);
}

// Output columns [j0, j1) of out[M, N] (j0 a multiple of NRA) from the A
// panels ap and the BF16 matrix w [N, K]. bp holds the B panels of the
// claimed columns (KC*NRA bfloat16 each), ws MRA*NRA floats. KC: a
// multiple of 32.
static void F(gemm_cols_amx)(const uint16_t *ap, long M, long K, const uint16_t *w, float *out, long N, long j0, long j1,
                             uint16_t *bp, float *ws, long KC, long MC) {
	const long Kp = (K + 31) & ~31L, PS = F(panel_a_amx_elems)(Kp);
	MC -= MC % MRA;
	if (MC < MRA)
		MC = MRA;
	TCFG();
	for (long pc = 0; pc < Kp; pc += KC) {
		const long kc = Kp - pc < KC ? Kp - pc : KC, BS = kc * NRA;
		for (long jr = j0; jr < j1; jr += NRA) {
			long nr = j1 - jr < NRA ? j1 - jr : NRA;
			F(pack_b_amx)(bp + (jr - j0) / NRA * BS, w, K, jr, (int)nr, pc, kc);
		}
		for (long ic = 0; ic < M; ic += MC) {
			long ie = ic + MC < M ? ic + MC : M;
			for (long ir = ic; ir < ie; ir += MRA) {
				long mr = M - ir < MRA ? M - ir : MRA;
				const uint16_t *a = ap + ir / MRA * PS + pc * MRA;
				for (long jr = j0; jr < j1; jr += NRA) {
					long nr = j1 - jr < NRA ? j1 - jr : NRA;
					F(ukr_amx)(kc, a, bp + (jr - j0) / NRA * BS, out + ir * N + jr, N, (int)mr, (int)nr, pc > 0,
					           ws);
				}
			}
		}
	}
	TRELEASE();
}

#undef MRA
#undef NRA
#undef F
#undef CAT
#undef CAT2

// The tile vocabulary is this file's alone: released here.
#undef TCFG
#undef TZERO
#undef TLOAD
#undef TSTORE
#undef TDPBF16PS
#undef TRELEASE
