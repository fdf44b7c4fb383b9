package cuda_test

import (
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/layers/layerstest"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// The CUDA backend passes the seam's conformance suite against the CPU
// reference: on the stand-in in CI, on a GPU in scripts/gpu-check.sh.
func TestBackendConformance(t *testing.T) {
	device(t) // the stand-in, or a skip naming why not
	layerstest.RunBackend(t, "cuda", func(t *testing.T, m *layers.Model) layers.Backend {
		b, err := cuda.Open(m, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Error(err)
			}
		})
		return b
	})
}

// The suite again with decode's attention split over the keys (blocks of
// 4 keys: every decode step over the suite's caches takes that path).
func TestBackendConformanceSplitDecode(t *testing.T) {
	device(t)
	defer func(n int) { cuda.SplitKeys = n }(cuda.SplitKeys)
	cuda.SplitKeys = 4
	layerstest.RunBackend(t, "cuda-split", func(t *testing.T, m *layers.Model) layers.Backend {
		b, err := cuda.Open(m, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// The device memory rank counts (rank.DeviceWeightBytes,
// rank.DeviceActivationBytes: what `star inspect` reports and the memory
// check refuses by) is what the backend allocates.
func TestDeviceFootprint(t *testing.T) {
	device(t)
	for _, dt := range []weights.DType{weights.F32, weights.BF16} {
		w := layerstest.ModelOf(layerstest.BackendConfig, 7, dt)
		b, err := cuda.Open(layers.NewModel(w, layers.NewCPU(1)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := rank.DeviceWeightBytes(w); b.Weights != want {
			t.Errorf("%v: weights take %d bytes on the device, rank counts %d", dt, b.Weights, want)
		}
		for _, c := range []struct{ capacity, parts, chunk int }{{1, 1, 1}, {16, 3, 8}, {300, 2, 64}} {
			a, err := b.NewActs(c.capacity)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Reserve(c.parts, c.chunk, 0); err != nil {
				t.Fatal(err)
			}
			toks, pos := []int{1}, []int{0}
			if err := b.Run(a, toks, pos, func(l int, at layers.Attn) error { return at.Merge(0) }); err != nil {
				t.Fatal(err)
			}
			if err := b.Logits(make([]float32, w.Config.VocabSize), a, []int{0}); err != nil {
				t.Fatal(err)
			}
			if got, want := a.Bytes(), rank.DeviceActivationBytes(&w.Config, c.capacity, c.parts, c.chunk, rank.Wide16(w)); got != want {
				t.Errorf("%v %+v: activations take %d bytes on the device, rank counts %d", dt, c, got, want)
			}
			a.Free()
		}
		b.Close()
	}
}

// Ranks sharing one device: two in-process ranks (goroutines over a Local
// communicator), each with its own backend on GPU 0, encode their Star
// blocks there and merge phase 2's partials through the communicator from
// the host; they give one CPU process's greedy tokens. (Under mpirun, the
// same with processes: TestMPIDeviceCUDA in package main.)
func TestRanksShareDevice(t *testing.T) {
	device(t)
	w := layerstest.ModelOf(weights.Config{Dim: 64, HiddenDim: 96, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 40, SeqLen: 256}, 9, weights.F32)
	ctx := make([]int, 90)
	for i := range ctx {
		ctx[i] = (i*7 + 3) % 40
	}
	toks := jobs.Tokens{Context: ctx, Query: []int{5, 6, 7}}
	s := jobs.Settings{Settings: rank.Settings{Attention: rank.Star, BlockSize: 32, AnchorSize: 16}, MaxTokens: 10}
	s.Defaults()
	ref, err := (&jobs.Engine{Engine: rank.NewEngine(w, layers.NewCPUReference(1))}).Generate(toks, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, merge := range []rank.MergeMode{rank.MergeGather, rank.MergeAllreduce} {
		comms := collective.NewLocal(2)
		res := make([]*jobs.Result, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func(r int) {
				defer wg.Done()
				m := layers.NewModel(w, layers.NewCPU(1))
				b, err := cuda.Open(m, 0)
				if err != nil {
					errs[r] = err
					comms[r].Abort(1)
					return
				}
				defer b.Close()
				b.Share = 2
				e := &jobs.Engine{Engine: &rank.Engine{W: w, M: m, B: b, Comm: comms[r], Merge: merge, KVDType: weights.F32}}
				in := jobs.Tokens{}
				if r == 0 {
					in = toks
				}
				res[r], errs[r] = e.Generate(in, s, nil)
				if errs[r] != nil && !rank.Agreed(errs[r]) {
					comms[r].Abort(1)
				}
			}(r)
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("%s: rank %d: %v", merge, r, err)
			}
		}
		got := res[0]
		if !slices.Equal(got.Tokens, ref.Tokens) {
			t.Fatalf("%s: 2 ranks on one device generate %v, one CPU process %v", merge, got.Tokens, ref.Tokens)
		}
		worst := 0.0
		for i := range ref.Logprobs {
			worst = math.Max(worst, math.Abs(got.Logprobs[i]-ref.Logprobs[i])/math.Max(1, math.Abs(ref.Logprobs[i])))
		}
		if worst > 1e-5 {
			t.Fatalf("%s: logprobs differ by %.3g relative > 1e-5", merge, worst)
		}
		t.Logf("%s: %d tokens equal, logprobs within %.2g relative; rank stats %+v", merge, len(got.Tokens), worst, got.Ranks)
	}
}
