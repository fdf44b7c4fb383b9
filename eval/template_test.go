package eval

import (
	"fmt"
	"strings"
	"testing"
)

// RULER's templates as its scripts/data/synthetic/constants.py writes
// them (template, then answer_prefix), copied here by hand: a sample's
// context + query + answer prefix must be RULER's prompt, byte for byte.
var rulerPrompts = map[string]string{
	"niah": "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?" +
		" The special magic {type_needle_v} for {query} mentioned in the provided text are",
	"vt": "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above." +
		" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ",
	"cwe": "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?" +
		" Answer: The top 10 words that appear most often in the list are:",
	"fwe": "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?" +
		" Answer: According to the coded text above, the three most frequently appeared words are:",
	"qa": "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}" +
		" Answer:",
}

// rulerSingle is niah.py's rewording for one value asked for.
func rulerSingle(s string) string {
	for _, r := range [][2]string{{"Some", "A"}, {"are all", "is"}, {"are", "is"}, {"answers", "answer"}} {
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return s
}

// rulerPrompt is RULER's prompt for the task of s with its {context}
// taken from s: the text between the template's head and tail, found
// after the worked example (vt, cwe) where RULER puts one.
func rulerPrompt(t *testing.T, task Task, s *Sample, query, numV string) string {
	t.Helper()
	tmpl := rulerPrompts[task.kind]
	typ := ""
	if c := task.niah; c != nil {
		typ = c.valType
		if c.numQ*c.numV == 1 {
			tmpl, typ = rulerSingle(tmpl), strings.TrimSuffix(typ, "s")
		}
	}
	tmpl = strings.NewReplacer("{type_needle_v}", typ, "{query}", query, "{num_v}", numV).Replace(tmpl)
	head, tail, _ := strings.Cut(tmpl, "{context}")
	ctx := s.Context
	at := strings.LastIndex(ctx, head)
	if at < 0 {
		t.Fatalf("the context has no %q", head)
	}
	full := s.Context + s.Queries[0].Query + s.Queries[0].AnswerPrefix
	hay := strings.TrimSuffix(full[at+len(head):], tail)
	return full[:at] + head + hay + tail
}

func TestTemplatesAreRULERs(t *testing.T) {
	tok := loadTok(t, "tokenizers/llama3/tokenizer.json")
	sq, hq := qaSets(t)
	g := &Generator{Tok: tok, Seed: 9, SQuAD: sq, HotpotQA: hq}
	for _, task := range Tasks {
		t.Run(task.Name, func(t *testing.T) {
			L := 2000
			if task.kind == "qa" {
				L = 230
			}
			s, err := g.Generate(task, L, 0)
			if err != nil {
				t.Fatal(err)
			}
			query, numV := "", ""
			switch task.kind {
			case "niah":
				q := s.Queries[0].Query
				query = q[strings.Index(q, " for ")+5 : strings.Index(q, " mentioned")]
			case "vt":
				query, numV = strings.Fields(s.Queries[0].Query)[9], "5"
			case "qa":
				query = strings.TrimPrefix(s.Queries[0].Query[strings.Index(s.Queries[0].Query, "Question: "):], "Question: ")
			}
			want := rulerPrompt(t, task, s, query, numV)
			got := s.Context + s.Queries[0].Query + s.Queries[0].AnswerPrefix
			if got != want {
				t.Fatalf("prompt differs from RULER's template:\ngot  %q\nwant %q", clipEnd(got), clipEnd(want))
			}
			if !strings.HasSuffix(s.Context, "\n") && task.kind != "fwe" {
				t.Fatalf("the context must end where RULER's template splits (after the document's line break): %q", clipEnd(s.Context))
			}
		})
	}
}

func clipEnd(s string) string {
	if len(s) > 300 {
		return "…" + s[len(s)-300:]
	}
	return s
}

// Fixed cases written out in full: a short niah_single_1 and
// niah_multiquery sample in Llama 3's tokens, and the split Star
// Attention's reference uses (the document in the context, the question
// and answer prefix in the query).
func TestFixedPrompts(t *testing.T) {
	tok := loadTok(t, "tokenizers/llama3/tokenizer.json")
	g := &Generator{Tok: tok, Seed: 1}
	noiseLine := "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
	cases := []struct {
		task, ctx, query, prefix string
		answers                  []string
		length                   int
	}{
		{"niah_single_1",
			"A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n" +
				noiseLine + "\nOne of the special magic numbers for large-window is: 3708895.\n" + strings.Repeat(noiseLine+"\n", 3) + "The grass is \n",
			"What is the special magic number for large-window mentioned in the provided text?",
			" The special magic number for large-window mentioned in the provided text is",
			[]string{"3708895"}, 300},
		{"niah_multiquery",
			"Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n" +
				"The grass is green. The sky is blue. One of the special magic numbers for near-butter is: 7731835. The sun is yellow. " +
				"One of the special magic numbers for polite-candle is: 1421785. Here we go. There and back again. " +
				"One of the special magic numbers for kind-table is: 1359129. One of the special magic numbers for rusty-jar is: 3541429. " +
				"The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. The grass is \n",
			"What are all the special magic numbers for kind-table, near-butter, rusty-jar, and polite-candle mentioned in the provided text?",
			" The special magic numbers for kind-table, near-butter, rusty-jar, and polite-candle mentioned in the provided text are",
			[]string{"1359129", "7731835", "3541429", "1421785"}, 330},
	}
	for _, c := range cases {
		task, _ := FindTask(c.task)
		s, err := g.Generate(task, c.length, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%q|%q|%q|%q", s.Context, s.Queries[0].Query, s.Queries[0].AnswerPrefix, s.Outputs)
		want := fmt.Sprintf("%q|%q|%q|%q", c.ctx, c.query, c.prefix, c.answers)
		if got != want {
			t.Fatalf("%s:\ngot  %s\nwant %s", c.task, got, want)
		}
	}
}
