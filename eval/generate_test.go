package eval

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// tokenizers are the three families lengths are checked in: llama2.c's
// tok512 (the tiny model's), Llama 2's SentencePiece vocabulary and
// Llama 3's byte-level BPE; long is a length every task but QA fits.
var tokenizers = []struct {
	name, path string
	long       int
}{
	{"llama2.c tok512", "models/stories260K/tok512.bin", 8192},
	{"sentencepiece llama2", "tokenizers/llama2/tokenizer.bin", 4096},
	{"llama3", "tokenizers/llama3/tokenizer.json", 4096},
}

func loadTok(t *testing.T, rel string) tokenizer.Tokenizer {
	t.Helper()
	tok, err := weights.LoadTokenizer(shared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func qaSets(t *testing.T) (*QASet, *QASet) {
	t.Helper()
	read := func(name string, f func(r *os.File) (*QASet, error)) *QASet {
		fh, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		s, err := f(fh)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sq := read("squad.json", func(r *os.File) (*QASet, error) { return ReadSQuAD(r) })
	hq := read("hotpotqa.json", func(r *os.File) (*QASet, error) { return ReadHotpotQA(r) })
	return sq, hq
}

// padded is set with n made-up distractor documents more, so that QA
// samples reach thousands of tokens.
func padded(set *QASet, n int) *QASet {
	out := *set
	out.Docs = append([]string(nil), set.Docs...)
	for i := 0; i < n; i++ {
		var b strings.Builder
		for j := 0; j < 12+i%7; j++ {
			fmt.Fprintf(&b, "The %s %s %s the %s. ", adjectives[(i*7+j)%len(adjectives)], nouns[(i*3+j*5)%len(nouns)], verbs[(i+j*11)%len(verbs)], nouns[(i*13+j)%len(nouns)])
		}
		out.Docs = append(out.Docs, strings.TrimSpace(b.String()))
	}
	return &out
}

// tokensOf counts a sample as the batch run encodes it: the context (BOS,
// chat head) and the query with its answer prefix, plus the tokens to
// generate.
func tokensOf(t *testing.T, tok tokenizer.Tokenizer, s *Sample, chat bool) int {
	t.Helper()
	c, err := jobs.EncodeContext(tok, s.Context, chat)
	if err != nil {
		t.Fatal(err)
	}
	q, err := jobs.EncodeQueryAnswer(tok, s.Context, s.Queries[0].Query, s.Queries[0].AnswerPrefix, chat)
	if err != nil {
		t.Fatal(err)
	}
	return len(c) + len(q) + s.MaxTokens
}

// Every task lands within 1% below its target length in the model's own
// tokens, for each tokenizer family, with and without the chat format;
// at the long length every task fits (QA with made-up distractors added
// to its small test files).
// Shorter lengths may be too short for a task: then it says so.
func TestLengthsWithinOnePercent(t *testing.T) {
	sq, hq := qaSets(t)
	for _, tk := range tokenizers {
		tok := loadTok(t, tk.path)
		for _, chat := range []bool{false, true} {
			g := &Generator{Tok: tok, Chat: chat, Seed: 7, SQuAD: padded(sq, 400), HotpotQA: padded(hq, 400)}
			for _, L := range []int{512, 1000, tk.long} {
				for _, task := range Tasks {
					t.Run(fmt.Sprintf("%s/chat=%v/%s/%d", tk.name, chat, task.Name, L), func(t *testing.T) {
						s, err := g.Generate(task, L, 1)
						if errors.Is(err, ErrTooShort) {
							if L == tk.long {
								t.Fatalf("%s must fit %d tokens: %v", task.Name, L, err)
							}
							return
						}
						if err != nil {
							t.Fatal(err)
						}
						n := tokensOf(t, tok, s, chat)
						if n != s.Tokens || n > L || 100*n < 99*L {
							t.Fatalf("%d tokens (sample says %d), want %d to %d", n, s.Tokens, (99*L+99)/100, L)
						}
					})
				}
			}
		}
	}
}

// The same seed gives the same samples, whatever else is generated; a
// sample does not depend on the ones before it; another seed gives other
// samples.
func TestGenerationDeterministic(t *testing.T) {
	tok := loadTok(t, "tokenizers/llama3/tokenizer.json")
	sq, hq := qaSets(t)
	for _, task := range Tasks {
		t.Run(task.Name, func(t *testing.T) {
			a := &Generator{Tok: tok, Seed: 3, SQuAD: sq, HotpotQA: hq}
			b := &Generator{Tok: tok, Seed: 3, SQuAD: sq, HotpotQA: hq}
			c := &Generator{Tok: tok, Seed: 4, SQuAD: sq, HotpotQA: hq}
			L := 1500
			if task.kind == "qa" {
				L = 230
			}
			for i := 0; i < 2; i++ { // b makes sample 2 without 0 and 1
				if _, err := a.Generate(task, L, i); err != nil {
					t.Fatal(err)
				}
			}
			x, err := a.Generate(task, L, 2)
			if err != nil {
				t.Fatal(err)
			}
			y, _ := b.Generate(task, L, 2)
			z, _ := c.Generate(task, L, 2)
			if !reflect.DeepEqual(x, y) {
				t.Fatalf("the same seed gave different samples:\n%+v\n%+v", x, y)
			}
			if reflect.DeepEqual(x.Context, z.Context) && reflect.DeepEqual(x.Outputs, z.Outputs) {
				t.Fatal("another seed gave the same sample")
			}
		})
	}
}

// count is the number of non-overlapping occurrences of sub in s.
func count(s, sub string) int { return strings.Count(s, sub) }

// The needles and answers are where each task says: every value asked
// for is in its needle, with the key asked about; the haystack holds as
// many needles as the task has, and no distractor uses a real key.
func TestNeedlesAndAnswers(t *testing.T) {
	tok := loadTok(t, "tokenizers/llama3/tokenizer.json")
	g := &Generator{Tok: tok, Seed: 11}
	for _, task := range Tasks[:8] {
		c := task.niah
		t.Run(task.Name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				s, err := g.Generate(task, 2000, i)
				if err != nil {
					t.Fatal(err)
				}
				numQ := max(c.numQ, 1)
				if len(s.Outputs) != numQ*c.numV {
					t.Fatalf("%d answers, want %d", len(s.Outputs), numQ*c.numV)
				}
				for _, v := range s.Outputs {
					needle := fmt.Sprintf("is: %s.", v)
					if count(s.Context, needle) != 1 {
						t.Fatalf("answer %s: %d needles %q in the context, want 1", v, count(s.Context, needle), needle)
					}
				}
				keys := strings.Count(s.Queries[0].Query, ", ") + 1
				if keys != numQ {
					t.Fatalf("query %q names %d keys, want %d", s.Queries[0].Query, keys, numQ)
				}
				lines := count(s.Context, "One of the special magic")
				if c.haystack != "needle" && lines != max(c.numK, c.numQ)*c.numV {
					t.Fatalf("%d needles in the haystack, want %d", lines, max(c.numK, c.numQ)*c.numV)
				}
				if c.haystack == "needle" && lines < 10 {
					t.Fatalf("only %d needle lines in a distractor haystack", lines)
				}
				q := strings.TrimSuffix(strings.TrimPrefix(s.Queries[0].Query, "What is the special magic "+strings.TrimSuffix(c.valType, "s")+" for "), " mentioned in the provided text?")
				if numQ == 1 && c.numV == 1 && count(s.Context, " for "+q+" is: ") != 1 {
					t.Fatalf("key %q has %d needles, want exactly 1 (a distractor reused it?)", q, count(s.Context, " for "+q+" is: "))
				}
			}
		})
	}
}

// vt: the chain's five statements are in order in the noise and the
// answer is its variables; cwe: the ten answers are the words that
// appear most, each more often than any other; fwe: the answers are the
// three most frequent words after the noise "..."; qa: an answer is in
// the documents.
func TestOtherTasksAnswers(t *testing.T) {
	tok := loadTok(t, "tokenizers/llama3/tokenizer.json")
	sq, hq := qaSets(t)
	g := &Generator{Tok: tok, Seed: 5, SQuAD: sq, HotpotQA: hq}
	gen := func(name string, L int) *Sample {
		task, _ := FindTask(name)
		s, err := g.Generate(task, L, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	vt := gen("vt", 3000)
	main := vt.Context[strings.LastIndex(vt.Context, "Memorize and track"):]
	at := 0
	for j, v := range vt.Outputs {
		want := "VAR " + v + " = "
		if j > 0 {
			want += "VAR " + vt.Outputs[j-1]
		}
		k := strings.Index(main[at:], want)
		if k < 0 {
			t.Fatalf("vt: statement %q missing or out of order", want)
		}
		at += k
	}
	cwe := gen("cwe", 4096)
	list := cwe.Context[strings.LastIndex(cwe.Context, "most often.\n"):]
	freq := wordCounts(list)
	for _, w := range cwe.Outputs {
		for other, n := range freq {
			if !contains(strings.Join(cwe.Outputs, " "), other) && n >= freq[w] {
				t.Fatalf("cwe: %q appears %d times, as often as the answer %q (%d)", other, n, w, freq[w])
			}
		}
	}
	fwe := gen("fwe", 4096)
	freq = wordCounts(fwe.Context[strings.Index(fwe.Context, "coded words. "):])
	for _, w := range fwe.Outputs {
		for other, n := range freq {
			if other != "..." && !contains(strings.Join(fwe.Outputs, " "), other) && n >= freq[w] {
				t.Fatalf("fwe: %q appears %d times, as often as the answer %q (%d)", other, n, w, freq[w])
			}
		}
	}
	for _, name := range []string{"qa_1", "qa_2"} {
		s := gen(name, 230)
		if MatchPartScore(s.Context, s.Outputs) != 1 {
			t.Fatalf("%s: no answer %q in the documents", name, s.Outputs)
		}
	}
}

// wordCounts counts the words of a list ("1. word 2. word" or "a b c").
func wordCounts(s string) map[string]int {
	m := map[string]int{}
	for _, f := range strings.Fields(s) {
		if f != "" && (f[0] < '0' || f[0] > '9') {
			m[f]++
		}
	}
	return m
}

// A length too short for a task is refused as such (the batch then skips
// it), not filled with a broken sample.
func TestTooShort(t *testing.T) {
	g := &Generator{Tok: loadTok(t, "tokenizers/llama3/tokenizer.json"), Seed: 1}
	for _, task := range Tasks[:11] {
		if _, err := g.Generate(task, 100, 0); !errors.Is(err, ErrTooShort) {
			t.Fatalf("%s at 100 tokens: %v, want ErrTooShort", task.Name, err)
		}
	}
}
