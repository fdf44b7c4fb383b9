package layers

// Benchmarks by size class. Each reports its throughput with
// b.ReportMetric and, where there is one, the yardstick beside it:
//
//	BenchmarkGEMM       Llama-3.2-1B linear shapes, n = 1, 16, 512 tokens,
//	                    F32, F16, BF16, Q8_0, Q4_K and Q6_K weights
//	                    (GFLOP/s), and OpenBLAS cblas_sgemm on F32 copies
//	                    of the same weights
//	BenchmarkMatVec     decode products (n = 1) in every dtype: GB/s of
//	                    weights streamed (from memory, not cache) and the
//	                    fraction of the memory read bandwidth measured
//	                    right after
//	BenchmarkMatVecCache  the same on one thread with the weights in
//	                    its L2 cache: the kernels' arithmetic rate (GB/s)
//	BenchmarkAttention  attention tiles (nq 1 and 512, nk 4096, H 32,
//	                    HKV 8, D 64), GFLOP/s, SIMD and pure Go
//	BenchmarkAttentionDecode  one token's attention over 16k keys of
//	                    Llama-3.1-8B's heads (H 32, HKV 8, D 128) in each
//	                    K/V dtype and layout: GB/s of K/V streamed (from
//	                    memory) and the share of the read bandwidth
//	BenchmarkMerge      merging partial attentions
//	BenchmarkModel      a 0.85B Llama (dim 2048, 16 layers, 32/8 heads,
//	                    hidden 5632, vocab 32000) with random F32 and BF16
//	                    weights: prefill of 512 tokens (tokens/s) and
//	                    decode (tokens/s beside the bandwidth bound)
//
// Threads: 2 unless STAR_BENCH_THREADS says otherwise. Kernels: NewCPU's
// choice (STAR_KERNELS applies). cpu_util is the share of threads x wall
// time the process actually ran: on a machine shared with other work,
// figures with cpu_util well below 1 understate the kernels.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/star-attn/star/layers/benchref"
	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// STAR_BENCH_GEMM="kc,mc,nc[,gemvMaxN]" overrides the GEMM blocking (for tuning).
func init() {
	var kc, mc, nc, gv int
	if n, _ := fmt.Sscanf(os.Getenv("STAR_BENCH_GEMM"), "%d,%d,%d,%d", &kc, &mc, &nc, &gv); n >= 3 {
		gemmKC, gemmMC, gemmNC = kc, mc, nc
		if n == 4 {
			gemvMaxN = gv
		}
	}
}

func benchThreads() int {
	if n, err := strconv.Atoi(os.Getenv("STAR_BENCH_THREADS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// cpuMeter reports, as cpu_util, the share of the benchmark's threads x
// wall time that this process got on a CPU: well under 1 means that other
// processes were competing for the cores and the timing is pessimistic.
type cpuMeter struct{ cpu0 float64 }

func startCPU() cpuMeter { return cpuMeter{cpuSeconds()} }

func (m cpuMeter) report(b *testing.B, threads int) {
	if c := cpuSeconds() - m.cpu0; c > 0 {
		b.ReportMetric(c/(b.Elapsed().Seconds()*float64(threads)), "cpu_util")
	}
}

type gemmShape struct {
	name       string
	rows, cols int
}

// Llama-3.2-1B: dim 2048, hidden 8192, 32 heads, 8 KV heads of 64.
var gemmShapes = []gemmShape{
	{"q_2048x2048", 2048, 2048},
	{"kv_512x2048", 512, 2048},
	{"gateup_8192x2048", 8192, 2048},
	{"down_2048x8192", 2048, 8192},
}

// randSlice returns n values uniform in [-scale, scale) (as
// layerstest.RandSlice, which this in-package file cannot import).
func randSlice(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (r.Float32()*2 - 1) * scale
	}
	return s
}

// randTensor is a random matrix stored as dt, with its float32 values
// (those of the stored weights).
func randTensor(rows, cols int, dt weights.DType, seed uint64) (weights.Tensor, []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	f := make([]float32, rows*cols)
	for i := range f {
		f[i] = float32(r.NormFloat64() * 0.02)
	}
	w := weights.Tensor{Name: "w", DType: dt, Shape: []int{rows, cols}, Data: weightstest.EncodeFloats(f, dt)}
	quant.RowsTo(f, &w, 0, rows)
	return w, f
}

func BenchmarkGEMM(b *testing.B) {
	threads := benchThreads()
	if benchref.Available() {
		b.Logf("OpenBLAS: %s", benchref.Config())
	}
	for _, sh := range gemmShapes {
		for _, n := range benchGEMMNs() {
			x := randSlice(rand.New(rand.NewPCG(1, uint64(n))), n*sh.cols, 1)
			out := make([]float32, n*sh.rows)
			flops := 2 * float64(n) * float64(sh.rows) * float64(sh.cols)
			for _, dt := range []weights.DType{weights.F32, weights.F16, weights.BF16, weights.Q8_0, weights.Q4_K, weights.Q6_K} {
				w, wf := randTensor(sh.rows, sh.cols, dt, 7)
				c := NewCPU(threads)
				b.Run(fmt.Sprintf("%s/n%d/%v/%s/t%d", sh.name, n, dt, KernelOf(c, dt), threads), func(b *testing.B) {
					c.MatMul(out, x, &w, n)
					b.ResetTimer()
					m := startCPU()
					for i := 0; i < b.N; i++ {
						c.MatMul(out, x, &w, n)
					}
					m.report(b, threads)
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					b.ReportMetric(float64(len(w.Data))*float64(b.N)/b.Elapsed().Seconds()/1e9, "wGB/s")
				})
				if dt == weights.F32 && benchref.Available() {
					b.Run(fmt.Sprintf("%s/n%d/F32/openblas/t%d", sh.name, n, threads), func(b *testing.B) {
						benchref.SetThreads(threads)
						benchref.SgemmNT(out, x, wf, n, sh.rows, sh.cols)
						b.ResetTimer()
						m := startCPU()
						for i := 0; i < b.N; i++ {
							benchref.SgemmNT(out, x, wf, n, sh.rows, sh.cols)
						}
						m.report(b, threads)
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}

// BenchmarkMatVec cycles through copies of the matrix adding up to at
// least 256 MiB, so that the weights come from memory as in decoding, and
// measures the read bandwidth (same threads) right after each timing:
// of_bw is the kernel's share of it.
func BenchmarkMatVec(b *testing.B) {
	threads := benchThreads()
	for _, sh := range []gemmShape{{"q_2048x2048", 2048, 2048}, {"gateup_8192x2048", 8192, 2048}, {"down_2048x8192", 2048, 8192}, {"vocab_32000x2048", 32000, 2048}} {
		x := randSlice(rand.New(rand.NewPCG(3, 4)), sh.cols, 1)
		out := make([]float32, sh.rows)
		for _, dt := range weights.DTypes() {
			w, _ := randTensor(sh.rows, sh.cols, dt, 9)
			ws := []weights.Tensor{w}
			for len(ws)*len(w.Data) < 256<<20 {
				c := w
				c.Data = append([]byte(nil), w.Data...)
				ws = append(ws, c)
			}
			c := NewCPU(threads)
			b.Run(fmt.Sprintf("%s/%v/%s/t%d", sh.name, dt, KernelOf(c, dt), threads), func(b *testing.B) {
				for i := range ws {
					c.MatMul(out, x, &ws[i], 1)
				}
				b.ResetTimer()
				m := startCPU()
				for i := 0; i < b.N; i++ {
					c.MatMul(out, x, &ws[i%len(ws)], 1)
				}
				b.StopTimer()
				m.report(b, threads)
				gbs := float64(len(w.Data)) * float64(b.N) / b.Elapsed().Seconds()
				bw := benchref.ReadBandwidth(threads, 256<<20)
				b.ReportMetric(gbs/1e9, "GB/s")
				b.ReportMetric(bw/1e9, "memGB/s")
				b.ReportMetric(gbs/bw, "of_bw")
			})
		}
	}
}

// BenchmarkMatVecCache times the decode products of one thread on a
// matrix that stays in its core's L2 cache: the kernels' arithmetic
// throughput (GB/s of weights) apart from memory. A kernel that reaches
// well above its share of the read bandwidth here can stream at
// bandwidth in BenchmarkMatVec; one below it cannot.
func BenchmarkMatVecCache(b *testing.B) {
	for _, sh := range []gemmShape{{"256x2048", 256, 2048}, {"32x8192", 32, 8192}} {
		x := randSlice(rand.New(rand.NewPCG(3, 4)), sh.cols, 1)
		out := make([]float32, sh.rows)
		for _, dt := range weights.DTypes() {
			c := NewCPU(1)
			b.Run(fmt.Sprintf("%s/%v/%s", sh.name, dt, KernelOf(c, dt)), func(b *testing.B) {
				w, _ := randTensor(sh.rows, sh.cols, dt, 9)
				c.MatMul(out, x, &w, 1)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					c.MatMul(out, x, &w, 1)
				}
				b.ReportMetric(float64(len(w.Data))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// attnFlops counts the multiply-adds of QKᵀ and PV (2 flops each) over the
// keys each query sees.
func attnFlops(nq, nk int, s AttnShape, causal bool) float64 {
	var keys float64
	for i := 0; i < nq; i++ {
		v := nk
		if causal {
			v = nk - nq + i + 1
		}
		keys += float64(max(v, 0))
	}
	return 4 * keys * float64(s.H*s.D)
}

func BenchmarkAttention(b *testing.B) {
	threads := benchThreads()
	s := AttnShape{H: 32, HKV: 8, D: 64}
	const nk = 4096
	r := rand.New(rand.NewPCG(5, 6))
	k := randSlice(r, nk*s.HKV*s.D, 1)
	v := randSlice(r, nk*s.HKV*s.D, 1)
	for _, nq := range []int{1, 512} {
		q := randSlice(r, nq*s.H*s.D, 1)
		out, lse := make([]float32, nq*s.H*s.D), make([]float32, nq*s.H)
		for _, causal := range []bool{false, true} {
			if nq == 1 && causal {
				continue // the same work as non-causal
			}
			for _, c := range []*CPU{NewCPU(threads), NewCPUReference(threads)} {
				b.Run(fmt.Sprintf("nq%d/nk%d/causal=%v/%s/t%d", nq, nk, causal, c.Name(), threads), func(b *testing.B) {
					m := startCPU()
					for i := 0; i < b.N; i++ {
						Attention(c, out, lse, q, k, v, nq, nk, s, causal)
					}
					m.report(b, threads)
					b.ReportMetric(attnFlops(nq, nk, s, causal)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					b.ReportMetric(float64(2*len(k)*4*b.N)/b.Elapsed().Seconds()/1e9, "kvGB/s")
				})
			}
		}
	}
}

// BenchmarkAttentionDecode cycles through caches adding up to at least
// 1 GiB (beyond the last-level cache), as a decode step reads one layer's
// cache after another, and measures the read bandwidth right after each
// timing: of_bw is the kernel's share of it. "tokens" is the float32
// token-major layout (a forward pass's projections, and the caches before
// they became head-major); "heads" the caches' head-major layout.
// STAR_BENCH_DECODE_KEYS sets the keys (16384), STAR_BENCH_DECODE_CACHE=1
// cycles through one cache only, which stays in the processor's caches:
// the kernel's arithmetic rate.
func BenchmarkAttentionDecode(b *testing.B) {
	threads := benchThreads()
	s := AttnShape{H: 32, HKV: 8, D: 128}
	nk := 16384
	if v, err := strconv.Atoi(os.Getenv("STAR_BENCH_DECODE_KEYS")); err == nil && v > 0 {
		nk = v
	}
	r := rand.New(rand.NewPCG(5, 6))
	x := randSlice(r, nk*s.HKV*s.D, 1)
	q := randSlice(r, s.H*s.D, 1)
	out, lse := make([]float32, s.H*s.D), make([]float32, s.H)
	c := NewCPU(threads)
	for _, lay := range []struct {
		name      string
		dt        weights.DType
		headMajor bool
	}{{"tokens", weights.F32, false}, {"heads", weights.F32, true}, {"heads", weights.F16, true}, {"heads", weights.BF16, true}} {
		one := NewKVBuf(lay.dt, nk, s.HKV, s.D)
		one.Append(x, nk)
		bytes := 2 * one.Bytes()
		var ks, vs []KVSpan
		total := int64(1 << 30)
		if os.Getenv("STAR_BENCH_DECODE_CACHE") == "1" {
			total = 1
		}
		for int64(len(ks))*bytes < total {
			for _, dst := range []*[]KVSpan{&ks, &vs} {
				if !lay.headMajor {
					*dst = append(*dst, TokenMajor(append([]float32(nil), x...), s))
					continue
				}
				kb := NewKVBuf(lay.dt, nk, s.HKV, s.D)
				kb.CopyFrom(one, nk)
				*dst = append(*dst, kb.All())
			}
		}
		b.Run(fmt.Sprintf("%s/%s/nk%d/%s/t%d", lay.name, KVDTypeName(lay.dt), nk, c.Name(), threads), func(b *testing.B) {
			for i := range ks {
				AttentionKV(c, out, lse, q, ks[i], vs[i], 1, nk, s, false)
			}
			b.ResetTimer()
			m := startCPU()
			for i := 0; i < b.N; i++ {
				AttentionKV(c, out, lse, q, ks[i%len(ks)], vs[i%len(vs)], 1, nk, s, false)
			}
			b.StopTimer()
			m.report(b, threads)
			gbs := float64(bytes) * float64(b.N) / b.Elapsed().Seconds()
			bw := benchref.ReadBandwidth(threads, 1<<30)
			b.ReportMetric(gbs/1e9, "kvGB/s")
			b.ReportMetric(bw/1e9, "memGB/s")
			b.ReportMetric(gbs/bw, "of_bw")
		})
		ks, vs = nil, nil
		runtime.GC()
	}
}

func BenchmarkMerge(b *testing.B) {
	const P, n, H, D = 4, 512, 32, 64
	r := rand.New(rand.NewPCG(7, 8))
	outs, lses := make([][]float32, P), make([][]float32, P)
	parts := make([]float32, P*n*H*(D+1))
	for p := range outs {
		outs[p], lses[p] = randSlice(r, n*H*D, 1), randSlice(r, n*H, 4)
		Pack(parts[p*n*H*(D+1):(p+1)*n*H*(D+1)], outs[p], lses[p], D)
	}
	out, lse := make([]float32, n*H*D), make([]float32, n*H)
	bytes := float64(P * n * H * (D + 1) * 4)
	b.Run(fmt.Sprintf("Merge/P%d/rows%d/D%d", P, n*H, D), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Merge(out, lse, outs, lses, n, H, D)
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "inGB/s")
	})
	b.Run(fmt.Sprintf("MergePacked/P%d/rows%d/D%d", P, n*H, D), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			MergePacked(out, lse, parts, P, D)
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "inGB/s")
	})
	b.Run(fmt.Sprintf("MergePackedInto/rows%d/D%d", n*H, D), func(b *testing.B) {
		acc := append([]float32(nil), parts[:n*H*(D+1)]...)
		for i := 0; i < b.N; i++ {
			MergePackedInto(parts[n*H*(D+1):2*n*H*(D+1)], acc, D)
		}
		b.ReportMetric(2*bytes/P*float64(b.N)/b.Elapsed().Seconds()/1e9, "inGB/s")
	})
}

// ---------------------------------------------------------------------------
// Whole model.

// cfg085B is a 0.85B-parameter Llama shape.
var cfg085B = weights.Config{Dim: 2048, HiddenDim: 5632, NLayers: 16, NHeads: 32, NKVHeads: 8, VocabSize: 32000,
	SeqLen: 4096, RopeTheta: 10000}

var (
	benchModel   *weights.Model // at most one dtype alive at a time
	benchModelDT weights.DType
)

// modelOf returns the random 0.85B model with its matrices in dtype dt,
// converting (or rebuilding) the one held so that only one copy exists.
func modelOf(b *testing.B, dt weights.DType) *weights.Model {
	if benchModel != nil && benchModelDT == dt {
		return benchModel
	}
	if benchModel == nil || benchModelDT != weights.F32 {
		benchModel = nil
		runtime.GC()
		t0 := time.Now()
		benchModel = weightstest.RandomModel(cfg085B, 1)
		benchModelDT = weights.F32
		b.Logf("built a random %.2fB-parameter model in %v", float64(benchModel.ParamCount())/1e9, time.Since(t0).Round(time.Millisecond))
	}
	if dt != weights.F32 {
		conv := func(t *weights.Tensor) {
			if len(t.Shape) == 2 {
				f := t.F32()
				t.Data, t.DType = weightstest.EncodeFloats(f, dt), dt
			}
		}
		m := benchModel
		conv(&m.TokEmb)
		conv(&m.Output)
		for i := range m.Layers {
			l := &m.Layers[i]
			for _, t := range []*weights.Tensor{&l.WQ, &l.WK, &l.WV, &l.WO, &l.W1, &l.W2, &l.W3} {
				conv(t)
			}
		}
		benchModelDT = dt
		runtime.GC()
	}
	return benchModel
}

// kvCache is a plain causal cache for the benchmarks' AttendFunc.
type kvCache struct {
	k, v [][]float32 // [layer][pos*KVDim]
	n    int
}

func newKVCache(c weights.Config, capacity int) *kvCache {
	kv := &kvCache{}
	for l := 0; l < c.NLayers; l++ {
		kv.k = append(kv.k, make([]float32, capacity*c.KVDim()))
		kv.v = append(kv.v, make([]float32, capacity*c.KVDim()))
	}
	return kv
}

func (kv *kvCache) attend(m *Model, lse []float32) AttendFunc {
	kvd := m.Cfg.KVDim()
	return func(l int, out, q, k, v []float32, n int) error {
		copy(kv.k[l][kv.n*kvd:], k[:n*kvd])
		copy(kv.v[l][kv.n*kvd:], v[:n*kvd])
		nk := kv.n + n
		Attention(m.C, out, lse[:n*m.Cfg.NHeads], q, kv.k[l][:nk*kvd], kv.v[l][:nk*kvd], n, nk, m.Shape(), true)
		if l == m.Cfg.NLayers-1 {
			kv.n = nk
		}
		return nil
	}
}

func benchModelRun(b *testing.B, dt weights.DType) {
	const prompt = 512
	threads := benchThreads()
	w := modelOf(b, dt)
	m := NewModel(w, NewCPU(threads))
	cfg := m.Cfg
	toks := make([]int, prompt)
	pos := make([]int, prompt)
	for i := range toks {
		toks[i], pos[i] = (i*7919)%cfg.VocabSize, i
	}
	st := m.NewState(prompt)
	lse := make([]float32, prompt*cfg.NHeads)
	logits := make([]float32, cfg.VocabSize)
	name := fmt.Sprintf("%v/%s/t%d", dt, m.C.Name(), threads)
	b.Run("prefill512/"+name, func(b *testing.B) {
		meter := startCPU()
		for i := 0; i < b.N; i++ {
			kv := newKVCache(cfg, prompt)
			if err := m.Forward(st, toks, pos, kv.attend(m, lse)); err != nil {
				b.Fatal(err)
			}
			m.Logits(logits, st, []int{prompt - 1})
		}
		meter.report(b, threads)
		b.ReportMetric(float64(prompt*b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	b.Run("decode@512/"+name, func(b *testing.B) {
		const steps = 16
		kv := newKVCache(cfg, prompt+steps)
		if err := m.Forward(st, toks, pos, kv.attend(m, lse)); err != nil {
			b.Fatal(err)
		}
		base := kv.n
		b.ResetTimer()
		meter := startCPU()
		for i := 0; i < b.N; i++ {
			kv.n = base
			for s := 0; s < steps; s++ {
				p := kv.n
				if err := m.Forward(st, toks[s:s+1], []int{p}, kv.attend(m, lse)); err != nil {
					b.Fatal(err)
				}
				m.Logits(logits, st, []int{0})
			}
		}
		meter.report(b, threads)
		tps := float64(steps*b.N) / b.Elapsed().Seconds()
		// per token: every matrix once (the embedding only one row) plus the
		// KV cache read by attention.
		bytes := float64(w.WeightBytes()-int64(len(w.TokEmb.Data))) + float64(2*cfg.NLayers*(base+steps/2)*cfg.KVDim()*4)
		b.StopTimer()
		bw := benchref.ReadBandwidth(threads, 1<<30) // now, under the same conditions
		bound := bw / bytes
		b.ReportMetric(bw/1e9, "memGB/s")
		b.ReportMetric(tps, "tok/s")
		b.ReportMetric(bound, "bound_tok/s")
		b.ReportMetric(tps/bound, "of_bound")
	})
}

func BenchmarkModel(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 0.85B-parameter model")
	}
	benchModelRun(b, weights.F32)
	benchModelRun(b, weights.BF16)
	benchModel = nil
}

// benchGEMMNs are BenchmarkGEMM's rows of x: 1, 16 and 512, or
// STAR_BENCH_GEMM_N="n1,n2,…".
func benchGEMMNs() []int {
	var ns []int
	for _, f := range strings.Split(os.Getenv("STAR_BENCH_GEMM_N"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	if len(ns) == 0 {
		return []int{1, 16, 512}
	}
	return ns
}
