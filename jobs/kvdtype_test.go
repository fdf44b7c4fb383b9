package jobs

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// 16-bit K/V on the tiny model (stories260K, both files): teacher-forced
// log-probabilities of the story's continuation stay within a stated
// bound of float32 K/V's, under global attention and under Star, and
// differ from them (the caches really hold 16-bit values). Measured: the
// largest difference is 7.1e-3 with f16 and 7.2e-2 with bf16 (NLL
// +0.02% and +0.04%); the bounds leave about 3x.
func TestKVDTypeLogprobsCloseToF32(t *testing.T) {
	for _, m := range storiesModels {
		e := loadEngine(t, m.path, m.seqLen)
		if e.KVDType != weights.F32 {
			t.Fatalf("%s: an all-F32 model gets %v K/V by default, want F32", m.name, e.KVDType)
		}
		toks, err := Tokenize(e.Tok, Input{Prompt: story, Query: " Lily said to the cat, \"Do not be sad. I will help you find your home.\" The cat", HasQuery: true})
		if err != nil {
			t.Fatal(err)
		}
		cont, err := e.Tok.Encode(" was happy and said, \"Thank you, Lily!\" Lily and the cat went to look for its home. They looked under the bushes and behind the trees.", false)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []rank.Settings{{Attention: rank.Global}, {Attention: rank.Star, BlockSize: 16, AnchorSize: 8}} {
			e.KVDType = weights.F32
			ref, err := e.Score(toks, cont, Settings{Settings: s})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				dt         weights.DType
				max, ratio float64 // bounds: largest logprob difference, |NLL ratio - 1|
			}{{weights.F16, 0.02, 1e-3}, {weights.BF16, 0.2, 3e-3}} {
				t.Run(fmt.Sprintf("%s/%s/%v", m.name, s.Attention, c.dt), func(t *testing.T) {
					e.KVDType = c.dt
					sc, err := e.Score(toks, cont, Settings{Settings: s})
					if err != nil {
						t.Fatal(err)
					}
					var d float64
					for i := range sc.Logprobs {
						d = math.Max(d, math.Abs(sc.Logprobs[i]-ref.Logprobs[i]))
					}
					t.Logf("%v K/V: max logprob difference from f32 K/V %.3g, NLL %.5f (f32: %.5f)", c.dt, d, sc.NLL, ref.NLL)
					if d == 0 || d > c.max || math.Abs(sc.NLL/ref.NLL-1) > c.ratio {
						t.Fatalf("%v K/V: max logprob difference %.3g, want in (0, %g]; NLL %.5f against f32's %.5f (bound %g relative)",
							c.dt, d, c.max, sc.NLL, ref.NLL, c.ratio)
					}
				})
			}
		}
	}
}

// Star with one block covering the context is global attention with
// 16-bit K/V too (the same dtype on both sides): phase 1 attends to its
// keys and values as the cache holds them. Not to float32's 1e-4: the two
// modes' arithmetic differs in the last bits (Star merges a block's
// partial with the query cache's), and a last-bit difference in a new
// token's key can round it to the neighbouring 16-bit value, one part in
// 2^11 (f16) or 2^8 (bf16). Measured over 40 generated tokens: 2e-4
// (f16) and 1e-5 (bf16) on the SIMD kernels, 6.5e-4 and 1.9e-4 in pure
// Go; against 7e-3 and 7e-2 between 16-bit and float32 K/V.
func TestStarOneBlockEqualsGlobal16Bit(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story})
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []weights.DType{weights.F16, weights.BF16} {
		t.Run(layers.KVDTypeName(dt), func(t *testing.T) {
			e.KVDType = dt
			g, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: rank.Global}, MaxTokens: 40}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: rank.Star, AnchorSize: -1}, MaxTokens: 40}, nil)
			if err != nil {
				t.Fatal(err)
			}
			compareRuns(t, g, s, 2e-3)
		})
	}
}

// The K/V dtype is part of every result's fingerprint: a job resumed
// with another --kv-dtype finds its results changed (and refuses, or
// redoes them), while the same dtype resumes; float32 K/V keep the
// fingerprints results had before the dtype could be chosen. Saved K/V
// of one dtype are never loaded by a run of another.
func TestKVDTypeInResultsAndKVFiles(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	dir := t.TempDir()
	in := writeInput(t, dir, mustJSON(map[string]any{"id": "a", "context": docA, "queries": []any{"Lily said"}}))
	out, kv := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "kv")
	e.KVDir = kv
	run := func(dt weights.DType, redo bool) (*BatchSummary, error) {
		e.KVDType = dt
		return e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings(), RedoChanged: redo})
	}
	if _, err := run(weights.F32, false); err != nil {
		t.Fatal(err)
	}
	fp32 := readOutputs(t, out)[0].Fingerprint
	if s, err := run(weights.F32, false); err != nil || s.Skipped != 1 || s.KVLoaded != 0 {
		t.Fatalf("resumed with the same K/V dtype: %+v, %v; want the result kept", s, err)
	}
	var changed *ChangedError
	if _, err := run(weights.F16, false); !errors.As(err, &changed) {
		t.Fatalf("resumed with f16 K/V after f32: %v, want the results reported changed", err)
	}
	s, err := run(weights.F16, true)
	if err != nil || s.Queries != 1 || s.KVLoaded != 0 {
		t.Fatalf("redone with f16 K/V: %+v, %v; want the query answered again with phase 1 recomputed", s, err)
	}
	outs := readOutputs(t, out)
	if fp16 := outs[len(outs)-1].Fingerprint; fp16 == fp32 {
		t.Fatalf("f16 and f32 K/V give the same fingerprint %s", fp16)
	}
	e.KVDType = weights.F32
	b := &batch{e: e, o: BatchOptions{Settings: batchSettings()}}
	rec := &Record{Queries: []Query{{Text: "Lily said"}}}
	if got := b.fingerprints(rec, []byte(docA), nil)[0]; got != fp32 {
		t.Fatalf("fingerprint %s, want %s", got, fp32)
	}
	files, _ := filepath.Glob(filepath.Join(kv, "*.kv"))
	if len(files) != 2 {
		t.Fatalf("%d K/V files, want one per dtype (2)", len(files))
	}
}
