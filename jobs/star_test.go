package jobs

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/star-attn/star/rank"
)

const story = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball. One day, she saw a cat sitting under a tree. The cat was sad because it was lost. Lily wanted to help the cat find its home. She looked around the park and saw a boy named Tom.

Lily said to the cat,`

func compareRuns(t *testing.T, a, b *Result, tol float64) {
	t.Helper()
	if !slices.Equal(a.Tokens, b.Tokens) {
		t.Fatalf("tokens differ:\n%v\n%v", a.Tokens, b.Tokens)
	}
	var worst float64
	for i := range a.Logprobs {
		worst = math.Max(worst, math.Abs(a.Logprobs[i]-b.Logprobs[i]))
	}
	if worst > tol {
		t.Fatalf("logprobs differ by %.3g > %g", worst, tol)
	}
}

// Star with one block covering the context is global attention.
func TestStarOneBlockEqualsGlobal(t *testing.T) {
	for _, m := range storiesModels {
		t.Run(m.name, func(t *testing.T) {
			e := loadEngine(t, m.path, m.seqLen)
			toks, err := Tokenize(e.Tok, Input{Prompt: story})
			if err != nil {
				t.Fatal(err)
			}
			if len(toks.Query) < 3 || len(toks.Context) < 50 {
				t.Fatalf("unexpected split: context %d, query %d tokens", len(toks.Context), len(toks.Query))
			}
			g, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: "global", AnchorSize: -1}, MaxTokens: 40}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, bs := range []int{0, len(toks.Context), 4 * len(toks.Context)} {
				s, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: "star", BlockSize: bs, AnchorSize: -1}, MaxTokens: 40}, nil)
				if err != nil {
					t.Fatal(err)
				}
				compareRuns(t, g, s, 1e-4)
			}
		})
	}
}

// Small blocks change the answer a little, never break it; phase 2 chunk
// size does not matter. A little: the mean NLL of the story's real
// continuation under Star is within 20% of global attention's. On this
// model Star's ratio is 0.96 to 1.01 over blocks of 16 and 32 tokens and
// anchors of 0 to 16 (1.05 to 1.11 on global's own greedy answer), while a
// merge that weights the blocks wrongly gives 4 to 9 times global's NLL.
// Different: with 8 blocks Star is not global attention (the blocks do not
// see each other), or this test would prove nothing.
func TestStarBlocksAndChunks(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story, Query: " Lily said to the cat, \"Do not be sad. I will help you find your home.\" The cat", HasQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: "star", BlockSize: 16, AnchorSize: 8}, MaxTokens: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 3, 7} {
		r, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: "star", BlockSize: 16, AnchorSize: 8, Chunk: max(chunk, 1)}, MaxTokens: 30}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("chunk%d", chunk), func(t *testing.T) { compareRuns(t, ref, r, 1e-4) })
	}
	cont, err := e.Tok.Encode(" was happy and said, \"Thank you, Lily!\" Lily and the cat went to look for its home. They looked under the bushes and behind the trees.", false)
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.Score(toks, cont, Settings{Settings: rank.Settings{Attention: "global"}})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 0.2
	for _, s := range []Settings{{Settings: rank.Settings{BlockSize: 16, AnchorSize: 8}}, {Settings: rank.Settings{BlockSize: 16, AnchorSize: 0}}, {Settings: rank.Settings{BlockSize: 32, AnchorSize: 16}}} {
		s.Attention = "star"
		sc, err := e.Score(toks, cont, s)
		if err != nil {
			t.Fatal(err)
		}
		var d float64
		for i := range sc.Logprobs {
			d = math.Max(d, math.Abs(sc.Logprobs[i]-g.Logprobs[i]))
		}
		ratio := sc.NLL / g.NLL
		if math.Abs(ratio-1) > bound {
			t.Errorf("b=%d a=%d: star NLL %.4f, global %.4f: ratio %.3f is not within %g of 1 (max logprob diff %.3g)", s.BlockSize, s.AnchorSize, sc.NLL, g.NLL, ratio, bound, d)
		}
		if d < 1e-3 {
			t.Errorf("b=%d a=%d: star equals global (max logprob diff %.3g) although the context spans %d blocks", s.BlockSize, s.AnchorSize, d, (len(toks.Context)+s.BlockSize-1)/s.BlockSize)
		}
	}
}

func TestScoreMatchesGenerate(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: story})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Settings{{Settings: rank.Settings{Attention: "global"}}, {Settings: rank.Settings{Attention: "star", BlockSize: 20, AnchorSize: 10}}} {
		s.MaxTokens = 25
		g, err := e.Generate(toks, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := e.Score(toks, g.Tokens, s)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for i := range g.Logprobs {
			if d := math.Abs(g.Logprobs[i] - sc.Logprobs[i]); d > 1e-4 {
				t.Fatalf("%s: token %d: generate logprob %g, score %g", s.Attention, i, g.Logprobs[i], sc.Logprobs[i])
			}
			sum -= sc.Logprobs[i]
		}
		if math.Abs(sum/float64(len(g.Tokens))-sc.NLL) > 1e-9 {
			t.Fatalf("nll %g is not the mean of -logprobs %g", sc.NLL, sum/float64(len(g.Tokens)))
		}
	}
}

func TestSampling(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	toks, err := Tokenize(e.Tok, Input{Prompt: "Once upon a time"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(s Settings) *Result {
		s.MaxTokens = 30
		r, err := e.Generate(toks, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := run(Settings{Temperature: 1, Seed: 7})
	b := run(Settings{Temperature: 1, Seed: 7})
	c := run(Settings{Temperature: 1, Seed: 8})
	if !slices.Equal(a.Tokens, b.Tokens) {
		t.Fatal("same seed gave different samples")
	}
	if slices.Equal(a.Tokens, c.Tokens) {
		t.Fatal("different seeds gave identical 30-token samples")
	}
	greedy := run(Settings{})
	tiny := run(Settings{Temperature: 1, TopP: 1e-9, Seed: 3}) // nucleus of one token: greedy
	if !slices.Equal(greedy.Tokens, tiny.Tokens) {
		t.Fatalf("top-p -> 0 should be greedy:\n%v\n%v", greedy.Tokens, tiny.Tokens)
	}
	for i, lp := range greedy.Logprobs {
		if lp > 0 || math.Abs(lp-tiny.Logprobs[i]) > 1e-6 {
			t.Fatalf("logprob %d: %g vs %g (logprobs must not depend on the sampler)", i, lp, tiny.Logprobs[i])
		}
	}
}

func TestSplitPrompt(t *testing.T) {
	cases := []struct {
		in, ctx, q string
		ok         bool
	}{
		{"doc\n\nquestion?", "doc\n\n", "question?", true},
		{"a\n\nb\n\nc\n", "a\n\nb\n\n", "c", true},
		{"one paragraph only", "", "", false},
		{"\n\nq", "", "", false},
		{"doc\n\n   \n", "", "", false},
	}
	for _, c := range cases {
		ctx, q, ok := SplitPrompt(c.in)
		if ok != c.ok || (ok && (ctx != c.ctx || q != c.q)) {
			t.Errorf("SplitPrompt(%q) = %q, %q, %v; want %q, %q, %v", c.in, ctx, q, ok, c.ctx, c.q, c.ok)
		}
	}
}

func TestLengthLimits(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	long := strings.Repeat("Once upon a time there was a girl. ", 100)
	toks, err := Tokenize(e.Tok, Input{Prompt: long, Query: "The end", HasQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Generate(toks, Settings{MaxTokens: 5}, nil); err == nil || !strings.Contains(err.Error(), "context length") {
		t.Fatalf("over-long prompt: err = %v, want a context-length error", err)
	}
	// generation stops at the context length
	short, _ := Tokenize(e.Tok, Input{Prompt: "Once upon a time"})
	e.M.Cfg.SeqLen = 10
	r, err := e.Generate(short, Settings{MaxTokens: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tokens) > 10-5 {
		t.Fatalf("generated %d tokens beyond the context length", len(r.Tokens))
	}
}
