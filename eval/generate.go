package eval

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/weights/tokenizer"
)

// Sample is one generated RULER sample, written as a batch record (jobs
// reads id, context, queries and max_tokens; the rest is ours).
type Sample struct {
	ID        string   `json:"id"` // task/length/index
	Task      string   `json:"task"`
	Length    int      `json:"length"` // the target length in tokens
	Context   string   `json:"context"`
	Queries   []Query  `json:"queries"` // one
	MaxTokens int      `json:"max_tokens"`
	Outputs   []string `json:"outputs"` // the references
	Tokens    int      `json:"tokens"`  // context + query + max_tokens, in the model's tokens
}

// Query is a sample's question with RULER's answer prefix.
type Query struct {
	Query        string `json:"query"`
	AnswerPrefix string `json:"answer_prefix,omitempty"`
}

// parts are a rendered sample before it is measured.
type parts struct {
	context, query, prefix string
	answers                []string
}

// draft is one sample with every random choice made, rendered at a size:
// n whole haystack units (sentences, lines, documents, words), then f
// fine steps (characters of the next unit, padding words) to land within
// 1% of the target length.
type draft interface {
	render(n, f int) parts
	minUnits() int
	maxUnits() int  // more units than there are (1<<30: no end)
	fine(n int) int // fine steps available after n units (0: none)
}

// Generator makes RULER samples in a model's tokens.
type Generator struct {
	Tok      tokenizer.Tokenizer
	Chat     bool   // samples are run with the chat format (it counts in the length)
	Seed     uint64 // the same seed gives the same samples
	Haystack string // essay haystack text ("": the noise sentences)
	SQuAD    *QASet // qa_1's data (nil: none)
	HotpotQA *QASet // qa_2's data (nil: none)
}

// ErrTooShort is returned when a task cannot fit a length at all, and
// ErrTooLong when its data cannot fill it.
var (
	ErrTooShort = errors.New("too short for the task")
	ErrTooLong  = errors.New("too long for the task's data")
)

// Generate makes sample index of task at target length (tokens: the
// context, the query and the tokens to generate, as RULER counts), within
// 1% below the target.
func (g *Generator) Generate(t Task, length, index int) (*Sample, error) {
	r := rand.New(rand.NewPCG(g.Seed, sampleStream(t.Name, length, index)))
	d, err := g.draft(t, length, index, r)
	if err != nil {
		return nil, err
	}
	p, total, err := g.fit(d, length, t.Gen)
	if err != nil {
		return nil, fmt.Errorf("%s at %d tokens: %w", t.Name, length, err)
	}
	return &Sample{ID: fmt.Sprintf("%s/%d/%d", t.Name, length, index), Task: t.Name, Length: length,
		Context: p.context, Queries: []Query{{p.query, p.prefix}}, MaxTokens: t.Gen, Outputs: p.answers, Tokens: total}, nil
}

// sampleStream names a sample's random stream: samples do not depend on
// which other tasks, lengths or samples are generated.
func sampleStream(task string, length, index int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", task, length, index)
	return h.Sum64()
}

func (g *Generator) draft(t Task, length, index int, r *rand.Rand) (draft, error) {
	switch t.kind {
	case "niah":
		return g.niahDraft(*t.niah, r), nil
	case "vt":
		return g.vtDraft(length, r)
	case "cwe":
		return cweDraft(length, r), nil
	case "fwe":
		return fweDraft(length, r), nil
	case "qa":
		items := g.SQuAD
		if t.qa == "hotpotqa" {
			items = g.HotpotQA
		}
		return qaDraft(items, t.Name, g.Seed, index, r)
	}
	return nil, fmt.Errorf("unknown task kind %q", t.kind)
}

// measure is a rendered sample's length as the run will see it: the
// context (BOS first, chat head) and the query (with the answer prefix,
// chat tail) tokenized as jobs encodes them, plus the tokens to generate.
func (g *Generator) measure(p parts, gen int) (int, error) {
	c, err := jobs.EncodeContext(g.Tok, p.context, g.Chat)
	if err != nil {
		return 0, err
	}
	q, err := jobs.EncodeQueryAnswer(g.Tok, p.context, p.query, p.prefix, g.Chat)
	if err != nil {
		return 0, err
	}
	return len(c) + len(q) + gen, nil
}

// fit finds the largest rendering of d that fits length: the most whole
// units (a search over n, as RULER's binary search over the haystack
// size), then the most fine steps; it fails when even the smallest
// rendering is too long.
func (g *Generator) fit(d draft, length, gen int) (parts, int, error) {
	size := func(n, f int) (int, error) { return g.measure(d.render(n, f), gen) }
	lo := d.minUnits()
	tl, err := size(lo, 0)
	if err != nil {
		return parts{}, 0, err
	}
	if tl > length {
		return parts{}, 0, fmt.Errorf("%w: its smallest sample is %d tokens", ErrTooShort, tl)
	}
	n, total, err := largest(lo, tl, length, func(n int) (int, error) { return size(n, 0) }, d.maxUnits())
	if err != nil {
		return parts{}, 0, err
	}
	if n == d.maxUnits()-1 && total*100 < 99*length {
		return parts{}, 0, fmt.Errorf("%w: all of its data makes %d tokens", ErrTooLong, total)
	}
	f := 0
	if total*100 < 99*length && d.fine(n) > 0 {
		if f, total, err = largest(0, total, length, func(f int) (int, error) { return size(n, f) }, d.fine(n)); err != nil {
			return parts{}, 0, err
		}
	}
	return d.render(n, f), total, nil
}

// largest finds the largest x in [lo, hi) with size(x) <= length, given
// size(lo) = at <= length: exponential steps up from lo, then a binary
// search (size grows with x, up to a token at the seams).
func largest(lo, at, length int, size func(int) (int, error), hi int) (int, int, error) {
	best, bestSize := lo, at
	step := 1
	for {
		x := best + step
		if x >= hi {
			break
		}
		s, err := size(x)
		if err != nil {
			return 0, 0, err
		}
		if s > length {
			hi = x
			break
		}
		best, bestSize = x, s
		// guess the step from the tokens per unit so far
		per := float64(s-at) / float64(x-lo)
		next := step * 2
		if per > 0 {
			next = max(int(float64(length-s)/per*0.98), 1)
		}
		step = max(min(next, 4*step+1), 1)
	}
	for hi-best > 1 {
		mid := best + (hi-best)/2
		s, err := size(mid)
		if err != nil {
			return 0, 0, err
		}
		if s <= length {
			best, bestSize = mid, s
		} else {
			hi = mid
		}
	}
	return best, bestSize, nil
}
