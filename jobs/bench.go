package jobs

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/benchref"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// Counting wraps a Compute backend and counts the work and time of its
// matrix products and attention, for benchmarks. It keeps the backend's
// own attention kernel when it has one.
type Counting struct {
	layers.Compute
	LinearFlops, LinearNanos atomic.Int64
	AttnFlops, AttnNanos     atomic.Int64
}

func (c *Counting) MatMul(out, x []float32, w *weights.Tensor, n int) {
	t := time.Now()
	c.Compute.MatMul(out, x, w, n)
	c.LinearNanos.Add(int64(time.Since(t)))
	c.LinearFlops.Add(2 * int64(n) * int64(w.Rows()) * int64(w.Cols()))
}

// AttentionKernel times attention, with the backend's kernel if it has one
// and the pure-Go code otherwise.
func (c *Counting) AttentionKernel(out, lse, q []float32, k, v layers.KVSpan, nq, nk int, s layers.AttnShape, causal bool) bool {
	t := time.Now()
	if a, ok := c.Compute.(layers.AttentionKernel); !ok || !a.AttentionKernel(out, lse, q, k, v, nq, nk, s, causal) {
		layers.AttentionKV(c.Compute, out, lse, q, k, v, nq, nk, s, causal)
	}
	c.AttnNanos.Add(int64(time.Since(t)))
	pairs := int64(nq) * int64(nk)
	if causal {
		pairs -= int64(nq) * int64(nq-1) / 2
	}
	c.AttnFlops.Add(4 * int64(s.D) * int64(s.H) * max(pairs, 0))
	return true
}

// ActivationRounding and MatMulKernel are the backend's (see layers).
func (c *Counting) ActivationRounding(dt weights.DType) layers.Rounding {
	return layers.RoundingOf(c.Compute, dt)
}

func (c *Counting) MatMulKernel(dt weights.DType) string { return layers.KernelOf(c.Compute, dt) }

// SwiGLUKernel is the backend's (its vectorised SwiGLU), so that what
// bench times is what a run computes.
func (c *Counting) SwiGLUKernel(h1, h3 []float32) bool {
	k, ok := c.Compute.(layers.SwiGLUKernel)
	return ok && k.SwiGLUKernel(h1, h3)
}

func (c *Counting) reset() {
	c.LinearFlops.Store(0)
	c.LinearNanos.Store(0)
	c.AttnFlops.Store(0)
	c.AttnNanos.Store(0)
}

// Yardsticks are the reference measurements bench prints beside its own
// on threads threads: OpenBLAS's sgemm throughput, the memory read
// bandwidth of a fresh buffer, and the rate at which given memory (the
// weights) reads, sampled to 2 GiB.
func Yardsticks(threads int) (sgemm func(m, n, k int) float64, readBandwidth func() float64, readOf func([][]byte) float64) {
	return func(m, n, k int) float64 { return benchref.GFLOPS(m, n, k, threads) },
		func() float64 { return benchref.ReadBandwidth(threads, 512<<20) },
		func(regions [][]byte) float64 { return benchref.ReadBandwidthOf(threads, regions, 2<<30) }
}

// BenchOptions describe `star bench`.
type BenchOptions struct {
	Contexts     []int // context lengths in tokens
	Attentions   []rank.Attention
	BlockSize    int   // 0: context / ranks
	AnchorSizes  []int // one star row per anchor size; -1: the block size (nil: [-1])
	QueryTokens  int   // query length
	DecodeTokens int   // generated tokens timed for decode speed
	ScoreTokens  int   // continuation tokens teacher-forced for the NLL (0: none)
	// KVDTypes are the K/V cache dtypes, one row each (nil: the
	// engine's KVDType).
	KVDTypes []weights.DType
	// RandomKV skips phase 1: each rank's caches are filled with random
	// finite K/V for its share of the context, so that decode after a
	// long context is timed in seconds (rows carry no NLL).
	RandomKV bool
	Seed     uint64
	Progress io.Writer // stderr: what runs now
	// SgemmGFLOPS, when set, measures the reference sgemm throughput of
	// C[m,n] = A[m,k]·B[n,k]ᵀ; Bench runs it on each of a layer's linear
	// shapes and prints the flop-weighted figure beside ours.
	SgemmGFLOPS func(m, n, k int) float64
	// ReadBandwidth, when set, measures the memory read bandwidth (B/s)
	// of a fresh buffer with the rank's threads, once: decode's bound is
	// the time to read the bytes a decode step reads, the K/V at this rate.
	ReadBandwidth func() float64
	// WeightsReadBandwidth, when set, measures the rate (B/s) at which
	// the rank's threads read the given memory, just before and just
	// after each row's decode: the bound reads the weights at the two's
	// mean, the rate of their own pages (a mapped file's page cache may
	// read well below a fresh buffer), or at ReadBandwidth's without it.
	WeightsReadBandwidth func(regions [][]byte) float64
}

// BenchRow is one configuration's measurement (one JSON line).
type BenchRow struct {
	Attention       string  `json:"attention"`
	Ranks           int     `json:"ranks"`
	Threads         int     `json:"threads"`
	Context         int     `json:"context"`
	Block           int     `json:"block"`
	Anchor          int     `json:"anchor"`
	Phase1          float64 `json:"phase1_s"`
	TTFT            float64 `json:"ttft_s"`
	DecodeTPS       float64 `json:"decode_tok_s"`
	LinearGFLOPS    float64 `json:"linear_gflops"`
	AttentionGFLOPS float64 `json:"attention_gflops"`
	// Device is where rank 0 computed ("cpu", "cuda:0 NVIDIA H200");
	// on a GPU, MFU is phase 1's linear throughput over its dense BF16
	// peak (PeakTFLOPS).
	Device       string  `json:"device"`
	PeakTFLOPS   float64 `json:"peak_tflops,omitempty"`
	MFU          float64 `json:"mfu,omitempty"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	SgemmGFLOPS  float64 `json:"sgemm_gflops,omitempty"`   // cblas_sgemm on one layer's linear shapes (512 tokens), flop-weighted
	MemBWGBs     float64 `json:"membw_gbs,omitempty"`      // measured read bandwidth of a fresh buffer, GB/s
	WeightsBWGBs float64 `json:"weights_bw_gbs,omitempty"` // the rate at which the weights decode reads read where they lie, GB/s
	// DecodeBound is 1 / (weight bytes / weights_bw + K/V bytes / membw),
	// the bytes one decode step reads (membw for both without weights_bw).
	DecodeBound float64 `json:"decode_bound_tok_s,omitempty"`
	// KVBytesPerStep is the K/V bytes one decode step reads on the rank
	// that reads most (its blocks; rank 0 also the query and, on average,
	// half the generated tokens): the bound counts them.
	KVBytesPerStep int64  `json:"kv_bytes_per_token_step"`
	RandomKV       bool   `json:"random_kv,omitempty"` // phase 1 skipped: random K/V (phase1_s is the fill)
	Kernels        string `json:"kernels"`
	// The model's matrices: their dtype ("Q4_K", "mixed Q4_K/Q6_K"),
	// the K/V cache's, and the kernel MatMul runs for the main one
	// ("cpu-avx512vnni": see layers.CPU.MatMulKernel).
	WeightDType string `json:"weight_dtype"`
	KVDType     string `json:"kv_dtype"`
	Kernel      string `json:"kernel"`
	// Accuracy: mean negative log-likelihood of ScoreTokens continuation
	// tokens (the same tokens for every mode of a context), its ratio to
	// the exact baseline's (global, else ring) measured in the same run,
	// and the largest |log-probability difference| from it over those tokens.
	NLL           float64  `json:"nll,omitempty"`
	NLLRatio      *float64 `json:"nll_ratio,omitempty"`
	LogprobMaxDif *float64 `json:"logprob_max_diff,omitempty"`
	Skipped       string   `json:"skipped,omitempty"`
}

// Bench runs every (context, attention) configuration: phase 1, the query
// and DecodeTokens decode steps, then (for accuracy) ScoreTokens
// teacher-forced tokens, on every rank (rank 0 leads, the others follow).
// Within a context the exact modes run first (global, ring, then star) so
// that Star's row carries its NLL ratio to them. Rows come back on rank 0,
// through emit as soon as each is done.
func (e *Engine) Bench(o BenchOptions, emit func(BenchRow)) error {
	if e.Rank() != 0 {
		return e.Follow()
	}
	b := &bench{e: e, o: o, l: e.Lead()}
	b.cnt, _ = e.M.C.(*Counting)
	if o.SgemmGFLOPS != nil {
		b.sgemm = layerSgemm(&e.M.Cfg, o.SgemmGFLOPS)
	}
	if o.ReadBandwidth != nil {
		b.bw = o.ReadBandwidth()
	}
	kvs := o.KVDTypes
	if len(kvs) == 0 {
		kvs = []weights.DType{e.KVDType}
	}
	defer func(kv weights.DType) { e.KVDType = kv }(e.KVDType)
	for _, n := range o.Contexts {
		b.ref = nil
		for _, kv := range kvs {
			e.KVDType = kv // the plan takes it to every rank
			for _, cf := range benchConfigs(o) {
				row, err := b.run(n, cf)
				if err != nil {
					return err
				}
				emit(row)
			}
		}
	}
	_, err := b.l.End(nil)
	return err
}

// bench is one `star bench` on rank 0.
type bench struct {
	e      *Engine
	o      BenchOptions
	l      *rank.Leader
	cnt    *Counting // nil: the backend's work is not counted
	sgemm  float64
	bw     float64   // read bandwidth of a fresh buffer, B/s (0: not measured)
	ref    []float64 // the exact baseline's log-probabilities of the scored tokens
	refNLL float64
}

// benchConfig is one row's attention mode and anchor (-1: the block size).
type benchConfig struct {
	att    rank.Attention
	anchor int
}

// benchConfigs are the rows of each context: the exact modes first, then
// one star row per anchor size.
func benchConfigs(o BenchOptions) []benchConfig {
	var configs []benchConfig
	for _, att := range benchOrder(o.Attentions) {
		if att != rank.Star {
			configs = append(configs, benchConfig{att, -1})
			continue
		}
		anchors := o.AnchorSizes
		if len(anchors) == 0 {
			anchors = []int{-1}
		}
		for _, a := range anchors {
			configs = append(configs, benchConfig{att, a})
		}
	}
	return configs
}

// run measures one configuration on a context of n random tokens. Only
// errors that end the run are returned; one that skips the row is in it.
func (b *bench) run(n int, cf benchConfig) (BenchRow, error) {
	e, o := b.e, b.o
	s := rank.Settings{Attention: cf.att, BlockSize: o.BlockSize, AnchorSize: cf.anchor}
	s.Defaults()
	s.Ranks = e.Ranks()
	row := BenchRow{Attention: string(cf.att), Ranks: e.Ranks(), Threads: e.M.C.Threads(), Context: n, SgemmGFLOPS: b.sgemm,
		Kernels: e.M.C.Name(), RandomKV: o.RandomKV,
		WeightDType: e.W.WeightTypes(), KVDType: layers.KVDTypeName(e.KVDType), Kernel: layers.KernelOf(e.M.C, e.W.DType()),
		Device: e.Backend().Name()}
	if fc, ok := e.Backend().(layers.FlopCounter); ok {
		row.Kernels, row.Kernel, row.PeakTFLOPS = e.Backend().Name(), "cublaslt-"+strings.ToLower(e.W.DType().String()), fc.PeakTFLOPS()
	}
	if lay, err := s.Layout(n); err == nil && cf.att == rank.Star {
		row.Block, row.Anchor = lay.BlockSize, lay.AnchorSize
	} else if lay, err := rank.RingLayout(n, s.Ranks); err == nil && cf.att == rank.Ring {
		row.Block = lay.BlockSize // shard size
	}
	if n+o.QueryTokens+max(o.DecodeTokens+1, o.ScoreTokens) > e.M.Cfg.SeqLen {
		row.Skipped = fmt.Sprintf("context %d + query + decode exceeds the model's context length %d", n, e.M.Cfg.SeqLen)
		return row, nil
	}
	r := rand.New(rand.NewPCG(o.Seed, uint64(n)))
	toks := make([]int, n+o.QueryTokens+o.ScoreTokens)
	for i := range toks {
		toks[i] = r.IntN(e.M.Cfg.VocabSize)
	}
	ctx, q, cont := toks[:n], toks[n:n+o.QueryTokens], toks[n+o.QueryTokens:]
	what := "phase 1"
	if o.RandomKV {
		what = "random K/V"
	}
	b.say("bench: context %d, %s attention, %s K/V, %d rank(s): %s...\n", n, cf.att, row.KVDType, e.Ranks(), what)
	if err := b.phase1(ctx, s, &row); err != nil || row.Skipped != "" {
		return row, err
	}
	b.say("bench: context %d, %s: %s %.2fs; query and %d decode steps...\n", n, cf.att, what, row.Phase1, o.DecodeTokens)
	res := &Result{}
	wbw0 := 0.0
	if b.bw > 0 { // a bound is computed
		wbw0 = b.weightsRate()
	}
	if err := e.generate(b.l, q, o.DecodeTokens+1, &Sampling{Temperature: 0}, res); err != nil {
		return row, err
	}
	row.TTFT = row.Phase1 + res.Timings.TTFT
	row.DecodeTPS = res.Timings.DecodeTPS
	row.PeakRSS = peakRSS()
	if b.bw > 0 {
		// the weights' rate measured just before and just after the decode:
		// a shared machine's bandwidth changes from moment to moment
		wbw := (wbw0 + b.weightsRate()) / 2
		row.MemBWGBs, row.WeightsBWGBs = b.bw/1e9, wbw/1e9
		row.DecodeBound = decodeBound(e.W.DecodeBytes(), row.KVBytesPerStep, wbw, b.bw)
	}
	if len(cont) > 0 && !o.RandomKV {
		if err := b.score(q, cont, cf.att, &row); err != nil {
			return row, err
		}
	}
	b.l.Drop()           // this document's caches go before the next,
	debug.FreeOSMemory() // and back to the system, or the next row's memory check would count them
	return row, nil
}

// say writes a progress line.
func (b *bench) say(format string, a ...any) {
	if b.o.Progress != nil {
		fmt.Fprintf(b.o.Progress, format, a...)
	}
}

// phase1 encodes ctx and records its time and phase 1's throughput.
func (b *bench) phase1(ctx []int, s rank.Settings, row *BenchRow) error {
	resetPeakRSS()
	if b.cnt != nil {
		b.cnt.reset()
	}
	fc, _ := b.e.Backend().(layers.FlopCounter)
	if fc != nil {
		fc.CountFlops(true)
		defer fc.CountFlops(false)
	}
	t0 := time.Now()
	p, err := b.e.PlanDoc(ctx, s)
	if err == nil {
		p.RandomKV = b.o.RandomKV
		row.KVBytesPerStep = kvTokensRead(p, b.o.QueryTokens+(b.o.DecodeTokens+1)/2) * rank.KVBytesPerToken(&b.e.M.Cfg, p.KVDType)
	}
	if err := b.l.Doc(ctx, p, err); err != nil {
		if !rank.Agreed(err) {
			return err
		}
		row.Skipped = err.Error()
		return nil
	}
	row.Phase1 = time.Since(t0).Seconds()
	if fc != nil { // a device's phase-1 throughput
		lf, lns, af, ans := fc.Flops()
		if lns > 0 {
			row.LinearGFLOPS = float64(lf) / float64(lns)
		}
		if ans > 0 {
			row.AttentionGFLOPS = float64(af) / float64(ans)
		}
		if row.PeakTFLOPS > 0 {
			row.MFU = row.LinearGFLOPS / 1000 / row.PeakTFLOPS
		}
	} else if c := b.cnt; c != nil { // phase 1's (rank 0's) throughput: decode's matrix-vector products are bandwidth-bound
		if ns := c.LinearNanos.Load(); ns > 0 {
			row.LinearGFLOPS = float64(c.LinearFlops.Load()) / float64(ns)
		}
		if ns := c.AttnNanos.Load(); ns > 0 {
			row.AttentionGFLOPS = float64(c.AttnFlops.Load()) / float64(ns)
		}
	}
	return nil
}

// weightsRate measures the rate (B/s) at which the weights one decode
// step reads read where they lie; 0: not measured (nothing to measure it
// with, or a device, whose weights are not these).
func (b *bench) weightsRate() float64 {
	if _, device := b.e.Backend().(layers.FlopCounter); b.o.WeightsReadBandwidth == nil || device {
		return 0
	}
	return b.o.WeightsReadBandwidth(b.e.W.DecodeData())
}

// decodeBound is the decode steps per second that reading w weight bytes
// at wbw B/s (bw where wbw is 0) and kv K/V bytes at bw B/s allows.
func decodeBound(w, kv int64, wbw, bw float64) float64 {
	if wbw <= 0 {
		wbw = bw
	}
	return 1 / (float64(w)/wbw + float64(kv)/bw)
}

// kvTokensRead is the K/V tokens a decode step reads on the rank that
// reads most under plan p, with q query and generated tokens in rank 0's
// query cache.
func kvTokensRead(p *rank.Plan, q int) int64 {
	if p.Attention == rank.Global {
		return int64(p.N + q)
	}
	most := 0
	for r := 0; r < p.Layout.Ranks; r++ {
		n := 0
		for _, b := range p.Layout.Of(r) {
			n += b.Len
		}
		if r == 0 {
			n += q
		}
		most = max(most, n)
	}
	return int64(most)
}

// score teacher-forces cont after q: the row's NLL and, after an exact
// mode of the same context, its ratio and largest logprob difference.
func (b *bench) score(q, cont []int, att rank.Attention, row *BenchRow) error {
	lp, err := b.e.scoreTokens(b.l, q, cont)
	if err != nil {
		return err
	}
	row.NLL = meanNLL(lp)
	if b.ref == nil && att != rank.Star {
		b.ref, b.refNLL = lp, row.NLL
	} else if b.ref != nil {
		var d float64
		for i, x := range b.ref {
			d = max(d, math.Abs(lp[i]-x))
		}
		ratio := row.NLL / b.refNLL
		row.NLLRatio, row.LogprobMaxDif = &ratio, &d
	}
	return nil
}

// layerSgemm is the reference GEMM throughput for the linear products of
// one layer in prefill (512 tokens at a time): each distinct shape
// measured, weighted by its share of the flops (total flops / total time).
func layerSgemm(c *weights.Config, gflops func(m, n, k int) float64) float64 {
	type shape struct{ out, in, count int }
	shapes := []shape{{c.QDim(), c.Dim, 1}, {c.KVDim(), c.Dim, 2}, {c.Dim, c.QDim(), 1}, {c.HiddenDim, c.Dim, 2}, {c.Dim, c.HiddenDim, 1}}
	var flops, secs float64
	seen := map[[2]int]float64{}
	for _, sh := range shapes {
		g, ok := seen[[2]int{sh.out, sh.in}]
		if !ok {
			g = gflops(512, sh.out, sh.in)
			seen[[2]int{sh.out, sh.in}] = g
		}
		if !(g > 0) {
			return 0
		}
		f := 2 * 512 * float64(sh.out) * float64(sh.in) * float64(sh.count)
		flops += f
		secs += f / (g * 1e9)
	}
	return flops / secs / 1e9
}

// benchOrder puts the exact modes first (global, then ring), keeping
// star last, so that star's accuracy is measured against them.
func benchOrder(atts []rank.Attention) []rank.Attention {
	var out []rank.Attention
	for _, want := range []rank.Attention{rank.Global, rank.Ring, rank.Star} {
		for _, a := range atts {
			if a == want {
				out = append(out, a)
			}
		}
	}
	return out
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// peakRSS is this process's peak resident memory (VmHWM), or 0.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// resetPeakRSS restarts VmHWM from the current RSS (Linux: clear_refs 5).
func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// PrintBenchTable writes rows for people: one line per configuration,
// then the yardsticks (sgemm, memory bandwidth and decode's bound).
func PrintBenchTable(w io.Writer, rows []BenchRow) {
	fmt.Fprintf(w, "%-16s %-16s %-4s %-7s %-5s %-7s %-8s %-6s %-6s %-9s %-9s %-9s %-8s %-9s %-9s %-8s %-8s %-9s %s\n",
		"weights", "kernel", "kv", "attn", "ranks", "threads", "context", "block", "anchor", "phase1_s", "ttft_s", "decode/s", "%bound", "lin_GF/s", "attn_GF/s", "rss_GiB", "nll", "nll_ratio", "lp_maxdiff")
	var ref *BenchRow
	for i, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(w, "%-16s %-16s %-4s %-7s %-5d %-7d %-8d skipped: %s\n", r.WeightDType, r.Kernel, r.KVDType, r.Attention, r.Ranks, r.Threads, r.Context, r.Skipped)
			continue
		}
		ref = &rows[i]
		nll, ratio, diff, bound := "-", "-", "-", "-"
		if r.NLL != 0 {
			nll = fmt.Sprintf("%.4f", r.NLL)
		}
		if r.NLLRatio != nil {
			ratio, diff = fmt.Sprintf("%.5f", *r.NLLRatio), fmt.Sprintf("%.2e", *r.LogprobMaxDif)
		}
		if r.DecodeBound > 0 {
			bound = fmt.Sprintf("%.0f%%", 100*r.DecodeTPS/r.DecodeBound)
		}
		fmt.Fprintf(w, "%-16s %-16s %-4s %-7s %-5d %-7d %-8d %-6d %-6d %-9.3f %-9.3f %-9.2f %-8s %-9.1f %-9.1f %-8.2f %-8s %-9s %s\n",
			r.WeightDType, r.Kernel, r.KVDType, r.Attention, r.Ranks, r.Threads, r.Context, r.Block, r.Anchor, r.Phase1, r.TTFT, r.DecodeTPS, bound,
			r.LinearGFLOPS, r.AttentionGFLOPS, gib(r.PeakRSS), nll, ratio, diff)
	}
	if ref == nil {
		return
	}
	if ref.Device != "" && ref.Device != "cpu" {
		mfu := "peak unknown: set STAR_PEAK_TFLOPS"
		if ref.PeakTFLOPS > 0 {
			mfu = fmt.Sprintf("MFU %.1f%% of its %.0f TFLOP/s BF16 peak", 100*ref.MFU, ref.PeakTFLOPS)
		}
		fmt.Fprintf(w, "device %s: phase 1 linear %.1f TFLOP/s (%s), attention %.1f TFLOP/s\n",
			ref.Device, ref.LinearGFLOPS/1000, mfu, ref.AttentionGFLOPS/1000)
	}
	if ref.SgemmGFLOPS > 0 {
		fmt.Fprintf(w, "cblas_sgemm (OpenBLAS) on a layer's linear shapes (512 tokens), %d threads: %.1f GFLOP/s (compare lin_GF/s, phase 1's)\n", ref.Threads, ref.SgemmGFLOPS)
	}
	if ref.DecodeBound > 0 {
		weights := ""
		if ref.WeightsBWGBs > 0 {
			weights = fmt.Sprintf(", the weights where they lie %.1f GB/s", ref.WeightsBWGBs)
		}
		fmt.Fprintf(w, "memory read bandwidth, %d threads: a fresh buffer %.1f GB/s%s; %%bound: decode against the time to read the weights at their rate and the row's K/V bytes one step reads at the buffer's\n",
			ref.Threads, ref.MemBWGBs, weights)
	}
	if ref.RandomKV {
		fmt.Fprintf(w, "random K/V: phase 1 skipped (phase1_s is the fill), no NLL\n")
	}
}
