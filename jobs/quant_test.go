package jobs

import (
	"math"
	"os"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// The accuracy contract of quantized files: teacher-forced log-
// probabilities of a quantized file agree with those of the same model
// with every weight dequantized to F32 within these bounds per token
// (max) and on average. They leave room for 8-bit activations in integer
// dot products and none for a wrong block layout.
const (
	quantLogprobMax  = 0.06
	quantLogprobMean = 0.015
	// exactLogprobTol: backends whose products keep activations exact
	// compute the twin's function in float32 (another summation order).
	exactLogprobTol = 1e-4
)

type quantScoreRef struct {
	Score struct {
		Prompt        string    `json:"prompt_file"`
		Query         string    `json:"query"`
		Continuation  string    `json:"continuation_file"`
		ContextTokens int       `json:"context_tokens"`
		QueryTokens   int       `json:"query_tokens"`
		Tokens        []int     `json:"tokens"`
		Logprobs      []float64 `json:"logprobs"`
		NLL           float64   `json:"nll"`
	} `json:"score_of_dequantized_f32_twin"`
}

// Each shared quantized file, scored as `star score --attention global`
// scores it (the file's tokenizer, ctx.txt as the context, the query,
// cont.txt teacher-forced), on every CPU backend this machine runs, with
// float32 K/V, against the dequantized F32 twin's logprobs computed by
// the reference.
func TestQuantizedFilesScoreLikeTheirF32Twins(t *testing.T) {
	type backend struct {
		name string
		c    func() layers.Compute
	}
	var bs []backend
	for _, spec := range layers.KernelSpecs() {
		bs = append(bs, backend{spec, func() layers.Compute {
			c, err := layers.NewCPUKernels(2, spec)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}})
	}
	for _, name := range []string{"Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"} {
		t.Run(name, func(t *testing.T) {
			var ref quantScoreRef
			shared.ReadJSON(t, "reference/quant/tiny-"+name+".reference.json", &ref)
			r := ref.Score
			w, err := weights.Load(shared.Path(t, "reference/quant/tiny-"+name+".gguf"), weights.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ctx, err := os.ReadFile(shared.Path(t, "reference/quant/"+r.Prompt))
			if err != nil {
				t.Fatal(err)
			}
			contText, err := os.ReadFile(shared.Path(t, "reference/quant/"+r.Continuation))
			if err != nil {
				t.Fatal(err)
			}
			toks, err := Tokenize(w.Tokenizer, Input{Prompt: string(ctx), Query: r.Query, HasQuery: true})
			if err != nil {
				t.Fatal(err)
			}
			cont, err := w.Tokenizer.Encode(string(contText), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(toks.Context) != r.ContextTokens || len(toks.Query) != r.QueryTokens || !equalInts(cont, r.Tokens) {
				t.Fatalf("tokens: context %d query %d continuation %v; reference %d, %d, %v",
					len(toks.Context), len(toks.Query), cont, r.ContextTokens, r.QueryTokens, r.Tokens)
			}
			for _, b := range bs {
				e := NewEngine(w, b.c())
				e.KVDType = weights.F32 // as the reference keeps K/V: this contract is the weights' and kernels'
				sc, err := e.Score(toks, cont, Settings{Settings: rank.Settings{Attention: "global"}})
				if err != nil {
					t.Fatalf("%s: %v", b.name, err)
				}
				var mx, sum float64
				for i, lp := range sc.Logprobs {
					d := math.Abs(lp - r.Logprobs[i])
					mx = math.Max(mx, d)
					sum += d
				}
				mean := sum / float64(len(sc.Logprobs))
				t.Logf("%s on %s (%s): logprob diff max %.2e mean %.2e (NLL %.5f, reference %.5f)", name, b.name, w.WeightTypes(), mx, mean, sc.NLL, r.NLL)
				bmax, bmean := quantLogprobMax, quantLogprobMean
				if layers.RoundingOf(e.M.C, w.DType()) == layers.RoundNone {
					bmax, bmean = exactLogprobTol, exactLogprobTol // float32 arithmetic on the same weights
				}
				if !(mx <= bmax && mean <= bmean) {
					t.Errorf("%s on %s: logprob diff max %.3g (bound %g), mean %.3g (bound %g); got %v, reference %v",
						name, b.name, mx, bmax, mean, bmean, sc.Logprobs, r.Logprobs)
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
