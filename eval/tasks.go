// Package eval measures Star Attention's accuracy against exact attention
// on the user's own model: RULER's synthetic tasks (generated here in the
// model's tokens, or read from RULER data files), scored with RULER's
// metrics and run through the batch machinery of package jobs (one
// results file per setting: resumable, exactly once); and long-document
// perplexity. It sits above jobs and rank (it uses them; they never use
// it) and below main, which only parses flags and prints.
package eval

import (
	"fmt"
	"sort"
	"strings"
)

// RULER's task templates, as data. Star Attention's reference splits
// RULER's template in two: the task's preamble and the document go in the
// context (encoded in phase 1, so the anchor starts with them), the
// question in the query, and the answer prefix after the query (after the
// assistant header in the chat format). Joined, context + query + answer
// prefix is RULER's own prompt, byte for byte.
type template struct {
	context string // {context} is the haystack or document
	query   string
	prefix  string // the answer prefix
	gen     int    // RULER's tokens_to_generate
}

// The templates of RULER's scripts/data/synthetic/constants.py, split
// where Star Attention's ruler/data/synthetic/constants.py splits them.
var (
	niahTemplate = template{
		context: "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\n",
		query:   "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?",
		prefix:  " The special magic {type_needle_v} for {query} mentioned in the provided text are",
		gen:     128,
	}
	vtTemplate = template{
		context: "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n",
		query:   "Question: Find all variables that are assigned the value {query} in the text above.",
		prefix:  " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ",
		gen:     30,
	}
	cweTemplate = template{
		context: "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\n",
		query:   "Question: What are the 10 most common words in the above list?",
		prefix:  " Answer: The top 10 words that appear most often in the list are:",
		gen:     120,
	}
	fweTemplate = template{
		context: "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\n",
		query:   "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?",
		prefix:  " Answer: According to the coded text above, the three most frequently appeared words are:",
		gen:     50,
	}
	qaTemplate = template{
		context: "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n{context}\n\n",
		query:   "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}",
		prefix:  " Answer:",
		gen:     32,
	}
)

// fill replaces {name} with its value for each pair of kv.
func fill(s string, kv ...string) string {
	return strings.NewReplacer(kv...).Replace(s)
}

// singular is RULER's rewording of the NIAH template when one value is
// asked for ("Some … are" becomes "A … is").
func singular(s string) string {
	s = strings.ReplaceAll(s, "Some", "A")
	s = strings.ReplaceAll(s, "are all", "is")
	s = strings.ReplaceAll(s, "are", "is")
	return strings.ReplaceAll(s, "answers", "answer")
}

// Metric names, as RULER's scripts/eval/synthetic/constants.py.
const (
	MatchAll  = "string_match_all"
	MatchPart = "string_match_part"
)

// niahConfig is one NIAH variant (RULER's synthetic.yaml).
type niahConfig struct {
	haystack         string // "noise", "essay" or "needle"
	keyType, valType string // "words", "numbers" or "uuids"
	numK, numV, numQ int
}

// Task is one RULER task as star runs it.
type Task struct {
	Name   string
	Metric string
	Gen    int // tokens to generate
	niah   *niahConfig
	kind   string // "niah", "vt", "cwe", "fwe", "qa"
	qa     string // "squad" or "hotpotqa"
}

// Tasks are RULER's 13 synthetic tasks, in RULER's order.
var Tasks = []Task{
	niahTask("niah_single_1", niahConfig{"noise", "words", "numbers", 1, 1, 1}),
	niahTask("niah_single_2", niahConfig{"essay", "words", "numbers", 1, 1, 1}),
	niahTask("niah_single_3", niahConfig{"essay", "words", "uuids", 1, 1, 1}),
	niahTask("niah_multikey_1", niahConfig{"essay", "words", "numbers", 4, 1, 1}),
	niahTask("niah_multikey_2", niahConfig{"needle", "words", "numbers", 1, 1, 1}),
	niahTask("niah_multikey_3", niahConfig{"needle", "uuids", "uuids", 1, 1, 1}),
	niahTask("niah_multivalue", niahConfig{"essay", "words", "numbers", 1, 4, 1}),
	niahTask("niah_multiquery", niahConfig{"essay", "words", "numbers", 1, 1, 4}),
	{Name: "vt", Metric: MatchAll, Gen: vtTemplate.gen, kind: "vt"},
	{Name: "cwe", Metric: MatchAll, Gen: cweTemplate.gen, kind: "cwe"},
	{Name: "fwe", Metric: MatchAll, Gen: fweTemplate.gen, kind: "fwe"},
	{Name: "qa_1", Metric: MatchPart, Gen: qaTemplate.gen, kind: "qa", qa: "squad"},
	{Name: "qa_2", Metric: MatchPart, Gen: qaTemplate.gen, kind: "qa", qa: "hotpotqa"},
}

func niahTask(name string, c niahConfig) Task {
	return Task{Name: name, Metric: MatchAll, Gen: niahTemplate.gen, niah: &c, kind: "niah"}
}

// TaskNames lists the tasks' names.
func TaskNames() []string {
	var out []string
	for _, t := range Tasks {
		out = append(out, t.Name)
	}
	return out
}

// FindTask returns the task called name.
func FindTask(name string) (Task, bool) {
	for _, t := range Tasks {
		if t.Name == name {
			return t, true
		}
	}
	return Task{}, false
}

// ParseTasks reads a comma-separated list of task names ("all": every
// task whose data is at hand: the QA tasks need their files, haveQA
// says which). Unknown names are refused, listing the known ones.
func ParseTasks(s string, haveQA map[string]bool) ([]Task, error) {
	var out []Task
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "all":
			for _, t := range Tasks {
				if (t.kind != "qa" || haveQA[t.qa]) && !seen[t.Name] {
					seen[t.Name] = true
					out = append(out, t)
				}
			}
			continue
		}
		t, ok := FindTask(f)
		if !ok {
			return nil, fmt.Errorf("--tasks: unknown task %q: use all or some of %s", f, strings.Join(TaskNames(), ", "))
		}
		if t.kind == "qa" && !haveQA[t.qa] {
			return nil, fmt.Errorf("--tasks: %s needs a %s file: pass --%s FILE", t.Name, qaFormatName(t.qa), t.qa)
		}
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--tasks: no task given (use all or some of %s)", strings.Join(TaskNames(), ", "))
	}
	order := map[string]int{}
	for i, t := range Tasks {
		order[t.Name] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].Name] < order[out[j].Name] })
	return out, nil
}

func qaFormatName(ds string) string {
	if ds == "squad" {
		return "SQuAD"
	}
	return "HotpotQA"
}
