// Command mutate checks that the tests catch the bugs that matter: it
// applies each deliberate bug ("mutant") of the list below, one at a time,
// to a copy of the repository, runs the tests of the packages that must
// catch it, and reports it killed (the tests fail) or survived. A survivor
// is a gap in the tests: add a test, or explain in the list why the edit
// is harmless.
//
//	go run ./scripts/mutate               every mutant
//	go run ./scripts/mutate -run merge    those whose name contains "merge"
//	go run ./scripts/mutate -list         the list
//
// It exits 0 when every mutant is killed, 1 when one survives or no longer
// applies (its original text is not in the file exactly once: update the
// list with the code), 2 when the unmutated copy fails its tests or a
// mutant does not build.
//
// The copy holds the files git knows (tracked, and untracked not ignored)
// under a temporary folder, with ../shared beside it (STAR_SHARED is set
// too); the working tree is never touched.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// mutant is one deliberate bug: Orig, which must occur exactly once in
// File, becomes Repl; the tests of Pkgs must then fail.
type mutant struct {
	Name string
	File string
	Orig string
	Repl string
	Pkgs []string
}

var mutants = []mutant{
	// Merging partial attentions (log-sum-exp): mergeRow holds the
	// arithmetic of every form (Merge, MergePacked for gather and
	// allgather, MergeInto for ring, MergePackedInto for allreduce).
	{"merge: lse sign (mergeRow, every form)", "layers/attention.go",
		"return float32(M + math.Log(sum))",
		"return float32(M - math.Log(sum))",
		[]string{"./layers"}},
	{"merge: inverted weights exp(M - lse) (mergeRow, every form)", "layers/attention.go",
		"wp := math.Exp(float64(l) - M)",
		"wp := math.Exp(M - float64(l))",
		[]string{"./layers"}},
	{"merge: no max subtraction (mergeRow, every form)", "layers/attention.go",
		"wp := math.Exp(float64(l) - M)",
		"wp := math.Exp(float64(l))",
		[]string{"./layers"}},
	{"merge: weights swapped between parts (mergeRow, every form)", "layers/attention.go",
		"x += w[p] * float64(outs[p][d])",
		"x += w[k-1-p] * float64(outs[p][d])",
		[]string{"./layers"}},
	{"merge: running max not taken, M = the first part's lse (mergeRow, every form)", "layers/attention.go",
		"for _, l := range lses {\n\t\tM = math.Max(M, float64(l))",
		"for _, l := range lses[:min(1, len(lses))] {\n\t\tM = math.Max(M, float64(l))",
		[]string{"./layers"}},
	{"merge: packed lse read from the last output value (MergePacked, gather and allgather)", "layers/attention.go",
		"po[p], pl[p] = row[:D], row[D]",
		"po[p], pl[p] = row[:D], row[D-1]",
		[]string{"./layers"}},

	// -Inf guards: a part that saw no key contributes nothing.
	{"-Inf guard: all parts empty (mergeRow, every form)", "layers/attention.go",
		"if math.IsInf(M, -1) {\n\t\tclear(o)",
		"if false {\n\t\tclear(o)",
		[]string{"./layers"}},
	// The guard that skips an empty part alone is redundant (exp(-Inf - M)
	// = 0 weighs it out when M is finite, and the all-empty guard covers
	// the rest), so the mutant drops both: empty parts then merge to NaN.
	{"-Inf guards: empty parts merged (mergeRow, every form)", "layers/attention.go",
		"\tif math.IsInf(M, -1) {\n\t\tclear(o)\n\t\treturn float32(M)\n\t}\n\tvar sum float64\n\tk := 0 // parts with a nonzero weight, moved to the front of outs and w\n\tfor p, l := range lses {\n\t\tif math.IsInf(float64(l), -1) {\n\t\t\tcontinue\n\t\t}\n",
		"\tvar sum float64\n\tk := 0 // parts with a nonzero weight, moved to the front of outs and w\n\tfor p, l := range lses {\n",
		[]string{"./layers"}},
	{"-Inf guard: a query that sees no key (Attention, Go)", "layers/attention.go",
		"if visible <= 0 {",
		"if visible < 0 {",
		[]string{"./layers"}},
	{"-Inf guard: a query that sees no key (SIMD kernel)", "layers/kern_impl.h",
		"if (!(l[r] > 0)) {",
		"if (0) {",
		[]string{"./layers"}},

	// Flash attention's online softmax.
	{"flash: rescale sign (Attention, Go)", "layers/attention.go",
		"corr := float32(math.Exp(float64(m - tmax)))",
		"corr := float32(math.Exp(float64(tmax - m)))",
		[]string{"./layers"}},
	{"flash: rescale sign (SIMD kernel)", "layers/kern_impl.h",
		"float corr = expf(mo - mn);",
		"float corr = expf(mn - mo);",
		[]string{"./layers"}},
	{"flash: output not rescaled (SIMD kernel)", "layers/kern_impl.h",
		"if (corr != 1.0f) {",
		"if (0) {",
		[]string{"./layers"}},

	// Grouped-query attention: query head h reads kv head h / (H/HKV).
	{"GQA: interleaved head mapping (Attention, Go)", "layers/attention.go",
		"kh := h / group",
		"kh := h%s.HKV + 0*group",
		[]string{"./layers"}},
	// The GEMM of BF16 weights on AMX tiles (native where the processor
	// has AMX, emulated by emu512,amx everywhere).
	{"AMX: a C tile fed by the wrong A tile (kern_amx.h)", "layers/kern_amx.h",
		"TDPBF16PS(2, 5, 6);",
		"TDPBF16PS(2, 4, 6);",
		[]string{"./layers"}},
	// (Not a mutant: a B panel's columns past K left unzeroed. x's panel is
	// zero there, so only NaN or Inf garbage would show, and no test can
	// place it on the stack.)
	{"AMX: every 8 weight rows of a B panel transposed into the first 8 columns (kern_amx.h)", "layers/kern_amx.h",
		"uint16_t *d = dst + (c0 / 2 * NRA + g) * 2;",
		"uint16_t *d = dst + (c0 / 2 * NRA) * 2;",
		[]string{"./layers"}},
	{"AMX: the accumulated C tiles not reloaded after the first K block (kern_amx.h)", "layers/kern_amx.h",
		"if (acc || !whole) {",
		"if (!whole) {",
		[]string{"./layers"}},
	// The decode step's matrix-vector product of Q8_0 and Q4_0 rows, four
	// rows' scales converted together (kern_i8.h; native avx512 with VNNI,
	// emu512 everywhere).
	{"decode Q8_0/Q4_0: row 3 takes row 2's block scales (kern_i8.h)", "layers/kern_i8.h",
		"{6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}},",
		"{4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5}},",
		[]string{"./layers"}},
	{"decode Q8_0/Q4_0: x's dx of the next unit (kern_i8.h)", "layers/kern_i8.h",
		"F(q0_r4_unit)(p, dt, 0, 4 * rowb, ILOAD(xq + k), ILOAD(xc + k / 4), dxn + k / 32, acc);",
		"F(q0_r4_unit)(p, dt, 0, 4 * rowb, ILOAD(xq + k), ILOAD(xc + k / 4), dxn + k / 32 + 2, acc);",
		[]string{"./layers"}},
	{"decode Q8_0/Q4_0: the last half unit dropped (kern_i8.h)", "layers/kern_i8.h",
		"	if (k < K)\n		F(q0_r4_unit)(p, dt, 1,",
		"	if (0)\n		F(q0_r4_unit)(p, dt, 1,",
		[]string{"./layers"}},
	{"decode Q8_0/Q4_0: block 1's scale of rows 2j+1 taken from row 2j (kern_i8.h)", "layers/kern_i8.h",
		"memcpy(&f, p[2 * j + 1] + bb, 2);",
		"memcpy(&f, p[2 * j] + bb, 2);",
		[]string{"./layers"}},
	// The matrix-vector phases claim their runs of rows in C
	// (claim_guided, kern_amd64.c), every thread from one cursor.
	{"claims in C: each run's last 4-row item left out (kern_amd64.c)", "layers/kern_amd64.c",
		"*hi = (long)h;",
		"*hi = (long)h - 1;",
		[]string{"./layers"}},
	{"claims in C: the last item never claimed (kern_amd64.c)", "layers/kern_amd64.c",
		"		if (cur >= total)\n			return 0;\n		long n = (total",
		"		if (cur >= total - 1)\n			return 0;\n		long n = (total",
		[]string{"./layers"}},
	// avx2's integer matrix-vector products (vpmaddubsw, kern_amd64.c).
	{"avx2 int8: Q8_0's unsigned bytes in one saturating vpmaddubsw (kern_amd64.c)", "layers/kern_amd64.c",
		"_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(s, w))",
		"_mm256_maddubs_epi16(u, s)",
		[]string{"./layers"}},
	{"avx2 int8: Q8_0's quants not recentred (kern_amd64.c)", "layers/kern_amd64.c",
		"const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));",
		"const __m256i w = u;",
		[]string{"./layers"}},
	{"avx2 int8: AVX-VNNI's products dropping the accumulator (kern_amd64.c)", "layers/kern_amd64.c",
		"return (ie16){_mm256_dpbusd_avx_epi32(acc.a, u.a, s.a), _mm256_dpbusd_avx_epi32(acc.b, u.b, s.b)};",
		"return (ie16){_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u.a, s.a), _mm256_dpbusd_avx_epi32(acc.b, u.b, s.b)};",
		[]string{"./layers"}},
	{"avx2 int8: the lane correction xc dropped (kern_amd64.c)", "layers/kern_amd64.c",
		"return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));",
		"return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));",
		[]string{"./layers"}},
	{"GQA: interleaved head mapping (SIMD kernel)", "layers/kern_impl.h",
		"long i = i0 + rr / G, h = kh * G + rr % G;",
		"long i = i0 + rr / G, h = kh + rr % G * HKV;",
		[]string{"./layers"}},

	// Block layout.
	{"layout: block count off by one", "rank/layout.go",
		"nb := (n + blockSize - 1) / blockSize",
		"nb := (n + blockSize - 2) / blockSize",
		[]string{"./rank"}},
	{"layout: one block too many for the first ranks", "rank/layout.go",
		"if r < extra {",
		"if r <= extra {",
		[]string{"./rank"}},
	{"layout: last block one token short", "rank/layout.go",
		"Len: min(blockSize, n-s)",
		"Len: min(blockSize, n-s-1)",
		[]string{"./rank"}},

	// The anchor.
	{"anchor: not taken from B_0 when as long as B_0 (worker)", "rank/worker.go",
		"len(anchor) <= kv.Tokens()",
		"len(anchor) < kv.Tokens()",
		[]string{"./rank"}},
	{"anchor: EncodesAnchor wrong when as long as B_0", "rank/layout.go",
		"fromB0 = fromB0 || (b.Index == 0 && a <= b.Len)",
		"fromB0 = fromB0 || (b.Index == 0 && a < b.Len)",
		[]string{"./rank"}},
	{"anchor: block 1 encoded without it", "rank/worker.go",
		"if b.Index > 0 {\n\t\t\ta = w.anchor",
		"if b.Index > 1 {\n\t\t\ta = w.anchor",
		[]string{"./rank"}},

	// Phase 1 and phase 2 of Star Attention.
	{"phase 1: blocks encoded at local positions", "rank/worker.go",
		"pos[i] = start + i",
		"pos[i] = i",
		[]string{"./rank"}},
	{"phase 2: B_0 left out of the merge (CPU backend)", "layers/backend.go",
		"for p := 0; p < parts; p++ {\n\t\ta.mo, a.ml",
		"for p := 1; p < parts; p++ {\n\t\ta.mo, a.ml",
		[]string{"./rank"}},
	{"multi-query: the previous query's K/V kept", "layers/backend.go",
		"n = min(n, kv.Len)",
		"n = kv.Len",
		[]string{"./rank", "./jobs"}},

	// RoPE.
	{"rope: Llama 3 blend swapped (smooth and 1-smooth)", "weights/weights.go",
		"out[i] = 1 / ((1-smooth)/rs.Factor + smooth)",
		"out[i] = 1 / (smooth/rs.Factor + (1 - smooth))",
		[]string{"./weights", "./layers"}},
	{"rope: half-split pairs rotated as adjacent", "layers/ops.go",
		"p, q = i, i+half",
		"p, q = 2*i, 2*i+1",
		[]string{"./layers"}},
	{"rope: Hugging Face checkpoints loaded with adjacent pairs", "weights/hf.go",
		"RopeTheta: 10000, RopeHalfSplit: true}",
		"RopeTheta: 10000, RopeHalfSplit: false}",
		[]string{"./weights", "./layers"}},

	// Batch jobs: resume, the output file, changed inputs.
	{"resume: earlier failures miscounted", "jobs/batch.go",
		"sum.FailedEarly += boolInt(have.failed)",
		"sum.FailedEarly += boolInt(!have.failed)",
		[]string{"./jobs"}},
	{"resume: a truncated last line not cut", "jobs/output.go",
		"if good < st.Size() {",
		"if false && good < st.Size() {",
		[]string{"./jobs"}},
	{"output: a changed record's result kept", "jobs/batch.go",
		"case have.fp != fps[q]:",
		"case false:",
		[]string{"./jobs", "."}},
	{"output: a shared lock lets a second writer in", "jobs/output.go",
		"syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)",
		"syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)",
		[]string{"."}},
	{"output: a failed write not cut back", "jobs/output.go",
		"if terr := rf.f.Truncate(rf.size); terr != nil {",
		"if terr := error(nil); terr != nil {",
		[]string{"."}},

	// K/V files.
	{"kv-dir: checksum not compared", "rank/kvfile.go",
		"if crc != h.CRC32C {",
		"if false {",
		[]string{"./rank", "."}},
	{"kv-dir: a file of another K/V dtype read", "rank/kvfile.go",
		"case h.DType != o.DType:",
		"case false:",
		[]string{"./rank"}},

	// K/V dtype.
	{"kv dtype: phase 1 attends to unrounded keys", "layers/backend.go",
		"RoundKV(dt, h.k)\n\tRoundKV(dt, h.v)\n\tkv.K[l].Append(h.k, n)",
		"_ = dt\n\tkv.K[l].Append(h.k, n)",
		[]string{"./rank"}},
	{"kv dtype: not in the plan (ranks keep their own)", "rank/session.go",
		"Chunk: s.Chunk, KVDType: e.KVDType}",
		"Chunk: s.Chunk}",
		[]string{"./rank", "./jobs"}},
	{"kv dtype: not in results' fingerprints", "jobs/batch.go",
		"if kv := b.e.KVDType; kv != weights.F32 {",
		"if kv := b.e.KVDType; false && kv != weights.F32 {",
		[]string{"./jobs"}},
	{"kv dtype: footprint counts float32 K/V", "rank/memory.go",
		"int64(c.KVDim()) * int64(dt.Size())",
		"int64(c.KVDim()) * 4",
		[]string{"./rank"}},

	// The CUDA backend (tests on the stand-in).
	{"cuda: a partial ignores causality", "layers/cuda/backend.go",
		"mc.NHeads, mc.NKVHeads, mc.HeadDim, causal, c.kdt)",
		"mc.NHeads, mc.NKVHeads, mc.HeadDim, false, c.kdt)",
		[]string{"./layers/cuda"}},
	{"cuda: the last partial left out of the merge", "layers/cuda/backend.go",
		"for p := 1; p < parts; p++ {",
		"for p := 1; p < parts-1; p++ {",
		[]string{"./layers/cuda"}},
	{"cuda: phase 1 without the anchor", "layers/cuda/backend.go",
		"k1, v1, n1 = p.k[t.l], p.v[t.l], p.len",
		"k1, v1 = p.k[t.l], p.v[t.l]",
		[]string{"./layers/cuda"}},
	{"cuda: attention's second segment read from its start", "layers/cuda/kernels.cu",
		"long long kj = (long long)(j < n1 ? j : j - n1) * row",
		"long long kj = (long long)j * row",
		[]string{"./layers/cuda"}},
	{"cuda: tiled attention scores every key with the tile's first", "layers/cuda/kernels.cu",
		"dot += qs[w][d] * ks[lane][d];",
		"dot += qs[w][d] * ks[0][d];",
		[]string{"./layers/cuda"}},
	{"cuda: tiled attention loads a tile's keys from the wrong segment", "layers/cuda/kernels.cu",
		"ks[jj][d] = star_load(j < n1 ? k1 : k2, kvdtype, o);",
		"ks[jj][d] = star_load(k2, kvdtype, o);",
		[]string{"./layers/cuda"}},
	{"cuda: split decode attention gives every block the first keys", "layers/cuda/kernels.cu",
		"int lo = s * chunk, hi = lo + chunk < nk ? lo + chunk : nk;",
		"int lo = 0, hi = chunk < nk ? chunk : nk;",
		[]string{"./layers/cuda"}},
	{"cuda: appended K/V overwrite the first rows", "layers/cuda/kernels.cu",
		"long long o = (j0 + i) * w + d;",
		"long long o = i * w + d;",
		[]string{"./layers/cuda"}},
	{"cuda: a grown cache loses its rows", "layers/cuda/backend.go",
		"if n := int64(c.lens[l]) * c.row; n > 0 {",
		"if n := int64(c.lens[l]) * c.row; n < 0 {",
		[]string{"./layers/cuda"}},
	{"cuda: merge-packed without max subtraction", "layers/cuda/kernels.cu",
		"if (row[D] != star_neg_inf()) acc += star_expf(row[D] - M) * row[d];",
		"if (row[D] != star_neg_inf()) acc += star_expf(row[D]) * row[d];",
		[]string{"./layers/cuda"}},

	// Sampling.
	{"sampling: top-p boundary (> for >=)", "jobs/sample.go",
		"if cum >= s.TopP {",
		"if cum > s.TopP {",
		[]string{"./jobs"}},
	{"sampling: temperature ignored", "jobs/sample.go",
		"p := math.Exp((float64(v) - m) / s.Temperature)",
		"p := math.Exp(float64(v) - m)",
		[]string{"./jobs"}},

	// Slurm scripts.
	{"slurm: requeue without the warning", "slurm/script.go",
		"w(`if [ -n \"$warned\" ] && [ \"$rc\" -eq \"$STOPPED\" ]; then`)",
		"w(`if [ \"$rc\" -eq \"$STOPPED\" ]; then`)",
		[]string{"./slurm"}},
}

func main() {
	run := flag.String("run", "", "only mutants whose name contains this")
	list := flag.Bool("list", false, "list the mutants and exit")
	timeout := flag.Duration("timeout", 10*time.Minute, "limit for one package test run (a hang counts as killed)")
	flag.Parse()
	var sel []mutant
	for _, m := range mutants {
		if strings.Contains(m.Name, *run) {
			sel = append(sel, m)
		}
	}
	if len(sel) == 0 {
		fmt.Fprintf(os.Stderr, "mutate: no mutant's name contains %q (see -list)\n", *run)
		os.Exit(2)
	}
	if *list {
		for _, m := range sel {
			fmt.Printf("%-60s %s %v\n", m.Name, m.File, m.Pkgs)
		}
		return
	}
	os.Exit(check(sel, *timeout))
}

func check(sel []mutant, timeout time.Duration) int {
	root, err := gitOut("rev-parse", "--show-toplevel")
	if err != nil {
		return fatal(err)
	}
	root = strings.TrimSpace(root)
	shared := os.Getenv("STAR_SHARED")
	if shared == "" {
		shared = filepath.Join(filepath.Dir(root), "shared")
	}
	if shared, err = filepath.Abs(shared); err != nil {
		return fatal(err)
	}
	tmp, err := os.MkdirTemp("", "star-mutate-")
	if err != nil {
		return fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "star")
	if err := copyTree(root, dir); err != nil {
		return fatal(err)
	}
	if _, err := os.Stat(shared); err == nil {
		if err := os.Symlink(shared, filepath.Join(tmp, "shared")); err != nil {
			return fatal(err)
		}
	}
	env := append(os.Environ(), "STAR_SHARED="+shared)

	pkgSet := map[string]bool{}
	for _, m := range sel {
		for _, p := range m.Pkgs {
			pkgSet[p] = true
		}
	}
	var pkgs []string
	for p := range pkgSet {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	t0 := time.Now()
	fmt.Printf("mutate: copy in %s; unmutated tests of %s...\n", dir, strings.Join(pkgs, " "))
	if ok, out := goTest(dir, env, pkgs, timeout); !ok {
		fmt.Printf("mutate: the unmutated copy fails its tests: fix them first\n%s\n", out)
		return 2
	}
	fmt.Printf("mutate: unmutated copy passes (%s)\n\n", time.Since(t0).Round(time.Second))

	var survived, stale, broken []string
	killed := 0
	for i, m := range sel {
		path := filepath.Join(dir, m.File)
		orig, err := os.ReadFile(path)
		if err != nil {
			return fatal(err)
		}
		if n := bytes.Count(orig, []byte(m.Orig)); n != 1 {
			fmt.Printf("[%2d/%d] STALE     %s: its original text occurs %d times in %s (update the list)\n", i+1, len(sel), m.Name, n, m.File)
			stale = append(stale, m.Name)
			continue
		}
		if err := os.WriteFile(path, bytes.Replace(orig, []byte(m.Orig), []byte(m.Repl), 1), 0o644); err != nil {
			return fatal(err)
		}
		t1 := time.Now()
		ok, out := goTest(dir, env, m.Pkgs, timeout)
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			return fatal(err)
		}
		el := time.Since(t1).Round(100 * time.Millisecond)
		switch {
		case strings.Contains(out, "[build failed]") || strings.Contains(out, "[setup failed]"):
			fmt.Printf("[%2d/%d] NO BUILD  %s (%s)\n%s\n", i+1, len(sel), m.Name, el, lastLines(out, 8))
			broken = append(broken, m.Name)
		case ok:
			fmt.Printf("[%2d/%d] SURVIVED  %s (%s, %s)\n", i+1, len(sel), m.Name, strings.Join(m.Pkgs, " "), el)
			survived = append(survived, m.Name)
		default:
			fmt.Printf("[%2d/%d] killed    %s (%s) by %s\n", i+1, len(sel), m.Name, el, firstFailure(out))
			killed++
		}
	}
	n := len(sel) - len(stale) - len(broken)
	fmt.Printf("\nmutate: %d of %d mutants killed", killed, n)
	if n > 0 {
		fmt.Printf(" (score %.0f%%)", 100*float64(killed)/float64(n))
	}
	fmt.Printf(" in %s\n", time.Since(t0).Round(time.Second))
	for _, s := range survived {
		fmt.Printf("mutate: survived: %s\n", s)
	}
	for _, s := range stale {
		fmt.Printf("mutate: stale: %s\n", s)
	}
	for _, s := range broken {
		fmt.Printf("mutate: does not build: %s\n", s)
	}
	switch {
	case len(broken) > 0:
		return 2
	case len(survived) > 0 || len(stale) > 0:
		return 1
	}
	return 0
}

// goTest runs the packages' tests in dir; ok is whether they passed.
func goTest(dir string, env, pkgs []string, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	args := append([]string{"test", "-count=1", "-timeout", timeout.String()}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// firstFailure names the first failing test in go test's output.
func firstFailure(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "--- FAIL: "); ok {
			return strings.Fields(t)[0]
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "panic:") || strings.Contains(l, "test timed out") {
			return strings.TrimSpace(l)
		}
	}
	return "a failure (no test named)"
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// copyTree copies the files git knows in root (tracked, and untracked but
// not ignored) to dst.
func copyTree(root, dst string) error {
	out, err := gitOut("-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return err
	}
	for _, rel := range strings.Split(strings.TrimSuffix(out, "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		st, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := copyFile(src, to, st.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func gitOut(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func fatal(err error) int {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	return 2
}
