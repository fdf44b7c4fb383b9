package jobs

import (
	"bufio"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

const logitTol = 1e-4

// loadEngine loads a shared model with an optional context-length override.
func loadEngine(t *testing.T, rel string, seqLen int) *Engine {
	t.Helper()
	w, err := weights.Load(shared.Path(t, rel), weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if seqLen > 0 {
		w.Config.SeqLen = seqLen
	}
	if w.Tokenizer == nil {
		t.Fatalf("%s: no tokenizer found with the model", rel)
	}
	return NewEngine(w, layers.NewCPU(2))
}

// stories260K's models: the llama2.c original and its GGUF conversion, whose
// metadata says context 128 although the model was trained at 512.
var storiesModels = []struct {
	name, path string
	seqLen     int
}{
	{"llama2c", "models/stories260K/stories260K.bin", 0},
	{"gguf", "models/gguf/stories260K.gguf", 512},
}

func readReferenceLogits(t *testing.T) (toks []int, logits [][]float64) {
	f, err := os.Open(shared.Path(t, "reference/stories260K_once_upon_a_time_logits.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		tok, _ := strconv.Atoi(fs[1])
		toks = append(toks, tok)
		row := make([]float64, len(fs)-2)
		for i, s := range fs[2:] {
			if row[i], err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatal(err)
			}
		}
		logits = append(logits, row)
	}
	return toks, logits
}

func TestGoldenLogits(t *testing.T) {
	toks, want := readReferenceLogits(t)
	if len(toks) != 12 {
		t.Fatalf("reference has %d positions, want 12", len(toks))
	}
	for _, m := range storiesModels {
		t.Run(m.name, func(t *testing.T) {
			e := loadEngine(t, m.path, m.seqLen)
			V := e.M.Cfg.VocabSize
			w := rank.NewWorker(e.M, 0, true, len(toks), weights.F32)
			rows := make([]int, len(toks))
			for i := range rows {
				rows[i] = i
			}
			got := make([]float32, len(toks)*V)
			if err := w.Step(toks, 0, got, rows); err != nil {
				t.Fatal(err)
			}
			var worst float64
			worstAt := [2]int{}
			for p := range toks {
				for v := 0; v < V; v++ {
					if d := math.Abs(float64(got[p*V+v]) - want[p][v]); d > worst {
						worst, worstAt = d, [2]int{p, v}
					}
				}
			}
			t.Logf("max |logit - reference| = %.3g at position %d, token %d", worst, worstAt[0], worstAt[1])
			if worst > logitTol {
				t.Fatalf("logits differ from llama2.c by %.3g > %g (position %d, token %d)", worst, logitTol, worstAt[0], worstAt[1])
			}
		})
	}
}

func TestGoldenGreedy(t *testing.T) {
	ref, err := os.ReadFile(shared.Path(t, "reference/stories260K_once_upon_a_time_greedy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "Once upon a time"
	for _, m := range storiesModels {
		for _, att := range []string{"global", "star"} {
			t.Run(m.name+"/"+att, func(t *testing.T) {
				e := loadEngine(t, m.path, m.seqLen)
				toks, err := Tokenize(e.Tok, Input{Prompt: prompt})
				if err != nil {
					t.Fatal(err)
				}
				if got := append(append([]int{}, toks.Context...), toks.Query...); !slices.Equal(got, []int{1, 403, 407, 261, 378}) {
					t.Fatalf("prompt tokens %v, want [1 403 407 261 378]", got)
				}
				// run.c: 256 forward passes (positions 0..255); the first 4 only
				// feed the prompt, each of the other 252 yields a generated token.
				res, err := e.Generate(toks, Settings{Settings: rank.Settings{Attention: rank.Attention(att), AnchorSize: -1}, MaxTokens: 256 - 4}, nil)
				if err != nil {
					t.Fatal(err)
				}
				got := prompt + res.Text + "\n"
				if got != string(ref) {
					t.Fatalf("greedy text differs from llama2.c (first difference at byte %d):\ngot:  %q\nwant: %q",
						firstDiff(got, string(ref)), got, ref)
				}
			})
		}
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
