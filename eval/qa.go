package eval

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
)

// QASet is a question-answering data set as RULER's qa.py reads it: the
// distinct documents, and questions whose answer is in some of them.
type QASet struct {
	Docs  []string
	Items []QAItem
}

// QAItem is one question: its answers, the documents that hold the
// answer (Gold) and other documents of the same article (More, SQuAD).
type QAItem struct {
	Question string
	Answers  []string
	Gold     []int // indices into Docs
	More     []int
}

// ReadSQuAD reads a SQuAD JSON file (v1 or v2: {"data": [{"paragraphs":
// [{"context", "qas": [{"question", "answers": [{"text"}],
// "is_impossible"}]}]}]}); questions without an answer are left out.
func ReadSQuAD(r io.Reader) (*QASet, error) {
	var f struct {
		Data []struct {
			Paragraphs []struct {
				Context string `json:"context"`
				QAs     []struct {
					Question     string `json:"question"`
					IsImpossible bool   `json:"is_impossible"`
					Answers      []struct {
						Text string `json:"text"`
					} `json:"answers"`
				} `json:"qas"`
			} `json:"paragraphs"`
		} `json:"data"`
	}
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("not a SQuAD JSON file: %v", err)
	}
	set := &QASet{}
	index := map[string]int{}
	var all []string
	for _, d := range f.Data {
		for _, p := range d.Paragraphs {
			all = append(all, p.Context)
		}
	}
	set.Docs = distinctSorted(all)
	for i, d := range set.Docs {
		index[d] = i
	}
	for _, d := range f.Data {
		var article []int
		for _, p := range d.Paragraphs {
			article = append(article, index[p.Context])
		}
		for _, p := range d.Paragraphs {
			for _, q := range p.QAs {
				if q.IsImpossible || len(q.Answers) == 0 || strings.TrimSpace(q.Question) == "" {
					continue
				}
				it := QAItem{Question: q.Question, Gold: []int{index[p.Context]}}
				for _, a := range q.Answers {
					it.Answers = append(it.Answers, a.Text)
				}
				for _, o := range article {
					if o != it.Gold[0] {
						it.More = append(it.More, o)
					}
				}
				set.Items = append(set.Items, it)
			}
		}
	}
	return set.check("SQuAD")
}

// ReadHotpotQA reads a HotpotQA JSON file ([{"question", "answer",
// "context": [[title, [sentence, …]], …]}]); a document is its title, a
// line break and its sentences.
func ReadHotpotQA(r io.Reader) (*QASet, error) {
	var f []struct {
		Question string               `json:"question"`
		Answer   string               `json:"answer"`
		Context  [][2]json.RawMessage `json:"context"`
	}
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("not a HotpotQA JSON file: %v", err)
	}
	docsOf := make([][]string, len(f))
	var all []string
	for i, q := range f {
		for _, c := range q.Context {
			var title string
			var sents []string
			if json.Unmarshal(c[0], &title) != nil || json.Unmarshal(c[1], &sents) != nil {
				return nil, fmt.Errorf("not a HotpotQA JSON file: question %d: a context entry must be [title, [sentences]]", i+1)
			}
			d := title + "\n" + strings.Join(sents, "")
			docsOf[i] = append(docsOf[i], d)
			all = append(all, d)
		}
	}
	set := &QASet{Docs: distinctSorted(all)}
	index := map[string]int{}
	for i, d := range set.Docs {
		index[d] = i
	}
	for i, q := range f {
		if strings.TrimSpace(q.Question) == "" || q.Answer == "" || len(docsOf[i]) == 0 {
			continue
		}
		it := QAItem{Question: q.Question, Answers: []string{q.Answer}}
		for _, d := range docsOf[i] {
			it.Gold = append(it.Gold, index[d])
		}
		set.Items = append(set.Items, it)
	}
	return set.check("HotpotQA")
}

func (s *QASet) check(what string) (*QASet, error) {
	if len(s.Items) == 0 {
		return nil, fmt.Errorf("the %s file has no answerable question", what)
	}
	return s, nil
}

func distinctSorted(a []string) []string {
	sort.Strings(a)
	var out []string
	for i, s := range a {
		if i == 0 || s != a[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// qa is a QA sample: the question's documents among distractors.
type qa struct {
	set   *QASet
	item  QAItem
	order []int    // documents in the order they are added: gold, same article, others
	keys  []uint64 // the position key of each document of order
}

// qaDraft takes question index of the set (in a seeded order, so that
// every sample asks another question while the set lasts).
func qaDraft(set *QASet, name string, seed uint64, index int, r *rand.Rand) (*qa, error) {
	if set == nil {
		return nil, fmt.Errorf("%s needs its data file", name)
	}
	h := fnv.New64a()
	fmt.Fprint(h, name)
	perm := rand.New(rand.NewPCG(seed, h.Sum64())).Perm(len(set.Items))
	it := set.Items[perm[index%len(perm)]]
	d := &qa{set: set, item: it}
	used := map[int]bool{}
	add := func(ids []int) {
		for _, i := range ids {
			if !used[i] {
				used[i] = true
				d.order = append(d.order, i)
			}
		}
	}
	add(it.Gold)
	more := append([]int(nil), it.More...)
	r.Shuffle(len(more), func(i, j int) { more[i], more[j] = more[j], more[i] })
	add(more)
	add(r.Perm(len(set.Docs)))
	for range d.order {
		d.keys = append(d.keys, r.Uint64())
	}
	return d, nil
}

func (d *qa) minUnits() int { return len(d.item.Gold) }
func (d *qa) maxUnits() int { return len(d.order) + 1 }
func (d *qa) fine(n int) int {
	if n >= len(d.order) {
		return 0
	}
	return len(d.set.Docs[d.order[n]]) - 1
}

// render is the first n documents in their shuffled order, numbered as
// RULER numbers them, then f bytes of one more as a last paragraph
// without a header (a header's tokens would leave gaps no byte count
// fills).
func (d *qa) render(n, f int) parts {
	items := make([]keyed, n)
	for i := range items {
		items[i] = keyed{d.keys[i], d.set.Docs[d.order[i]]}
	}
	docs := byKey(items)
	s := make([]string, len(docs))
	for i, doc := range docs {
		s[i] = fmt.Sprintf("Document %d:\n%s", i+1, doc)
	}
	if f > 0 && n < len(d.order) {
		s = append(s, haystack{unit: func(int) string { return d.set.Docs[d.order[n]] }}.tail(0, f))
	}
	return parts{
		context: fill(qaTemplate.context, "{context}", strings.Join(s, "\n\n")),
		query:   fill(qaTemplate.query, "{query}", d.item.Question),
		prefix:  qaTemplate.prefix,
		answers: d.item.Answers,
	}
}
