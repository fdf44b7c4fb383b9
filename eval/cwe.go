package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// keyed is a list item with the random key that orders the list: a
// list of more items keeps the order of the items it shares with a
// shorter one, so its length grows smoothly with its size.
type keyed struct {
	key  uint64
	word string
}

func byKey(items []keyed) []string {
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.word
	}
	return out
}

// itemKey is the key of copy c of word i of a list drawn with seed.
func itemKey(seed uint64, i, c int) uint64 {
	r := rand.New(rand.NewPCG(seed, uint64(i)<<20|uint64(c)))
	return r.Uint64()
}

// cwe is a common-words-extraction sample: a numbered list in which ten
// words appear cw times each and the others ucw times.
type cwe struct {
	pool         []string // the first ten are the common words
	cw, ucw      int
	seed         uint64
	example      string // the worked example before the task
	exampleWords []string
}

// numbered is "1. a 2. b 3. c", as RULER writes its lists.
func numbered(words []string) string {
	s := make([]string, len(words))
	for i, w := range words {
		s[i] = fmt.Sprintf("%d. %s", i+1, w)
	}
	return strings.Join(s, " ")
}

// cweList is the list of n words (ten common) drawn from pool.
func cweList(pool []string, n, cw, ucw int, seed uint64) []string {
	var items []keyed
	for i, w := range pool[:n] {
		k := ucw
		if i < 10 {
			k = cw
		}
		for c := 0; c < k; c++ {
			items = append(items, keyed{itemKey(seed, i, c), w})
		}
	}
	return byKey(items)
}

// cweDraft follows RULER's common_words_extraction.py: below 4096
// tokens the common words appear 6 times and the others once, with an
// example of 20 words (3 and 1); from 4096 on, 30 and 3 with an example
// of 40 words (10 and 3).
func cweDraft(length int, r *rand.Rand) *cwe {
	d := &cwe{cw: 30, ucw: 3, seed: r.Uint64()}
	exN, exCW, exUCW := 40, 10, 3
	if length < 4096 {
		d.cw, d.ucw, exN, exCW, exUCW = 6, 1, 20, 3, 1
	}
	pool := wordPool(r, length/(2*d.ucw)+exN+20)
	d.pool, d.exampleWords = pool[:len(pool)-exN], pool[len(pool)-exN:]
	ex := cweList(d.exampleWords, exN, exCW, exUCW, r.Uint64())
	d.example = fill(cweTemplate.context, "{context}", numbered(ex)) + cweTemplate.query + cweTemplate.prefix + numbered(d.exampleWords[:10])
	return d
}

func (d *cwe) minUnits() int { return 11 }
func (d *cwe) maxUnits() int { return len(d.pool) + 1 }
func (d *cwe) fine(int) int  { return 0 }
func (d *cwe) render(n, _ int) parts {
	list := cweList(d.pool, n, d.cw, d.ucw, d.seed)
	return parts{
		context: d.example + "\n" + fill(cweTemplate.context, "{context}", numbered(list)),
		query:   cweTemplate.query, prefix: cweTemplate.prefix,
		answers: append([]string(nil), d.pool[:10]...),
	}
}

// fwe is a frequent-words-extraction sample: coded words whose counts
// follow Zipf's law (alpha 2); the most frequent one is the noise "...",
// the next three are the answer.
type fwe struct {
	vocab []string
	seed  uint64
}

const (
	fweAlpha   = 2.0
	fweWordLen = 6
	fweDots    = 100 // fine steps: extra "..." (noise) words at the end
)

// fweDraft follows RULER's freq_words_extraction.py: a vocabulary of
// length/50 random six-letter words.
func fweDraft(length int, r *rand.Rand) *fwe {
	n := max(length/50, 5)
	seen := map[string]bool{"...": true}
	d := &fwe{vocab: []string{"..."}, seed: r.Uint64()}
	for len(d.vocab) < n {
		b := make([]byte, fweWordLen)
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		if w := string(b); !seen[w] {
			seen[w] = true
			d.vocab = append(d.vocab, w)
		}
	}
	return d
}

// counts are the Zipf counts of n words: floor(n k^-alpha / zeta(alpha)).
func (d *fwe) counts(n int) []int {
	zeta := math.Pi * math.Pi / 6 // zeta(2)
	c := make([]int, len(d.vocab))
	for k := range c {
		c[k] = int(float64(n) * math.Pow(float64(k+1), -fweAlpha) / zeta)
	}
	return c
}

// minUnits is the smallest size at which the three answers are the only
// words after "..." with the top counts (the fourth's count is above the
// fifth's).
func (d *fwe) minUnits() int {
	for n := 1; ; n++ {
		if c := d.counts(n); c[3] > 0 && (len(c) < 5 || c[3] > c[4]) {
			return n
		}
	}
}

func (d *fwe) maxUnits() int { return 1 << 30 }
func (d *fwe) fine(int) int  { return fweDots }
func (d *fwe) render(n, f int) parts {
	var items []keyed
	for k, c := range d.counts(n) {
		for i := 0; i < c; i++ {
			items = append(items, keyed{itemKey(d.seed, k, i), d.vocab[k]})
		}
	}
	words := byKey(items)
	for i := 0; i < f; i++ {
		words = append(words, "...")
	}
	return parts{
		context: fill(fweTemplate.context, "{context}", strings.Join(words, " ")),
		query:   fweTemplate.query, prefix: fweTemplate.prefix,
		answers: append([]string(nil), d.vocab[1:4]...),
	}
}
