package jobs

import (
	"fmt"
	"sync"
	"testing"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// runLocal runs Generate on n in-process ranks (goroutines over a Local
// communicator) sharing one loaded model, and returns rank 0's result.
func runLocal(t *testing.T, e0 *Engine, n int, merge rank.MergeMode, toks Tokens, s Settings) *Result {
	t.Helper()
	return runLocalKV(t, e0, n, merge, toks, s, weights.F32)
}

// runLocalKV is runLocal with rank 0's engine keeping K/V of dtype kv0
// (the others' engines keep float32).
func runLocalKV(t *testing.T, e0 *Engine, n int, merge rank.MergeMode, toks Tokens, s Settings, kv0 weights.DType) *Result {
	t.Helper()
	comms := collective.NewLocal(n)
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			e := &Engine{Engine: &rank.Engine{W: e0.W, M: layers.NewModel(e0.W, layers.NewCPU(1)), Comm: comms[r], Merge: merge}, Tok: e0.Tok}
			in := Tokens{}
			if r == 0 {
				in, e.KVDType = toks, kv0
			}
			results[r], errs[r] = e.Generate(in, s, nil)
			if errs[r] != nil && !rank.Agreed(errs[r]) {
				comms[r].Abort(1)
			}
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return results[0]
}

// In-process ranks give the single-process answer for every rank count and
// merge mode (the mpirun tests in package main check the same over MPI).
func TestLocalRanksMatchSingleProcess(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story})
	if err != nil {
		t.Fatal(err)
	}
	s := Settings{Settings: rank.Settings{Attention: "star", BlockSize: 10, AnchorSize: 5}, MaxTokens: 20}
	ref, err := e.Generate(toks, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 5, 9} { // 9 ranks: more ranks than the 8 blocks
		for _, merge := range rank.MergeModes {
			t.Run(fmt.Sprintf("n%d_%s", n, merge), func(t *testing.T) {
				got := runLocal(t, e, n, merge, toks, s)
				compareRuns(t, ref, got, 1e-4)
				if n > 1 && len(got.Ranks) != n {
					t.Fatalf("%d rank stats, want %d", len(got.Ranks), n)
				}
			})
		}
	}
}

// Every rank keeps rank 0's K/V dtype (it travels in the plan), whatever
// its own engine says: bf16 on rank 0 of 3 in-process ranks gives the
// single process's bf16 answer, and the other ranks hold their blocks at
// 2 bytes an element.
func TestLocalRanksKeepRank0KVDType(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story})
	if err != nil {
		t.Fatal(err)
	}
	s := Settings{Settings: rank.Settings{Attention: "star", BlockSize: 10, AnchorSize: 5}, MaxTokens: 20}
	e.KVDType = weights.BF16
	ref, err := e.Generate(toks, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := runLocalKV(t, e, 3, rank.MergeGather, toks, s, weights.BF16)
	compareRuns(t, ref, got, 2e-3) // another merge order: see TestStarOneBlockEqualsGlobal16Bit
	per := int(rank.KVBytesPerToken(&e.M.Cfg, weights.BF16))
	for _, st := range got.Ranks[1:] {
		if st.Tokens == 0 || st.KVBytes != int64(st.Tokens*per) {
			t.Fatalf("rank %d holds %d bytes of K/V for %d tokens, want %d each (bf16)", st.Rank, st.KVBytes, st.Tokens, per)
		}
	}
}

// An error found on rank 0 (an over-long prompt) reaches every rank.
func TestLocalRanksShareErrors(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, _ := Tokenize(e.Tok, Input{Prompt: story})
	e.M.Cfg.SeqLen = 20
	comms := collective.NewLocal(3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			en := &Engine{Engine: &rank.Engine{W: e.W, M: e.M, Comm: comms[r], Merge: rank.MergeGather}, Tok: e.Tok}
			_, errs[r] = en.Generate(toks, Settings{MaxTokens: 3}, nil)
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err == nil || !rank.Agreed(err) {
			t.Fatalf("rank %d: err %v, want the agreed context-length error", r, err)
		}
	}
}

// Ring attention over n in-process ranks equals global attention.
func TestLocalRingEqualsGlobal(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story})
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: "global"}, MaxTokens: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 4} {
		t.Run(fmt.Sprint("n", n), func(t *testing.T) {
			got := runLocal(t, e, n, rank.MergeGather, toks, Settings{Settings: rank.Settings{Attention: "ring"}, MaxTokens: 20})
			compareRuns(t, g, got, 1e-4)
		})
	}
}
