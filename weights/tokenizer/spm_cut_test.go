package tokenizer

import (
	"fmt"
	"strings"
	"testing"
)

// wholeSymbol is one token of the text being merged, in a linked list.
type wholeSymbol struct {
	id         int // -1 once merged into its left neighbour
	prev, next int // neighbour indices, -1 at the ends
	fallback   bool
}

// wholePair is a candidate merge of symbols left and right into id.
type wholePair struct {
	score       float32
	left, right int
	lid, rid    int // the symbols' ids when the pair was found
	id          int
}

// encodeTextWhole is encodeText as it was before texts were cut where no
// merge reaches: every fragment is merged whole. It is the oracle the
// cutting is checked against.
func (s *SentencePiece) encodeTextWhole(out []int, text string, prefix bool) ([]int, error) {
	if text == "" {
		return out, nil
	}
	syms := make([]wholeSymbol, 0, len(text)+1)
	push := func(id int, fallback bool) {
		syms = append(syms, wholeSymbol{id: id, prev: len(syms) - 1, next: len(syms) + 1, fallback: fallback})
	}
	// addChar adds one character (ch is raw text: ' ' is looked up as
	// s.space, byte fallback spells the raw bytes, as llama2.c does).
	addChar := func(ch string) error {
		key := ch
		if s.space != " " && strings.IndexByte(ch, ' ') >= 0 {
			key = strings.ReplaceAll(ch, " ", s.space)
		}
		if id, ok := s.lookup[key]; ok {
			push(id, false)
			return nil
		}
		for i := 0; i < len(ch); i++ {
			id := s.byteIDs[ch[i]]
			if id < 0 {
				id = s.unk
			}
			if id < 0 {
				return fmt.Errorf("%s tokenizer: the text has byte 0x%02X, which is no token and the vocabulary has neither a byte token <0x%02X> nor an unknown token; this vocabulary cannot encode it", s.kind, ch[i], ch[i])
			}
			push(id, true)
		}
		return nil
	}
	if prefix {
		if err := addChar(" "); err != nil {
			return nil, err
		}
	}
	// Characters are a byte plus the continuation bytes after it, at most
	// four bytes (as run.c groups them; for valid UTF-8 that is one rune).
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && text[j]&0xC0 == 0x80 && j-i < 4 {
			j++
		}
		if err := addChar(text[i:j]); err != nil {
			return nil, err
		}
		i = j
	}
	syms[len(syms)-1].next = -1

	var h wholeHeap
	var buf []byte
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		a, b := &syms[l], &syms[r]
		if !s.mergeBytes && (a.fallback || b.fallback) {
			return
		}
		buf = append(append(buf[:0], s.tokens[a.id]...), s.tokens[b.id]...)
		id, ok := s.lookup[string(buf)]
		if !ok || !(s.scores[id] > s.minScore) {
			return
		}
		h.push(wholePair{score: s.scores[id], left: l, right: r, lid: a.id, rid: b.id, id: id})
	}
	for i := 0; i+1 < len(syms); i++ {
		try(i, i+1)
	}
	for h.len() > 0 {
		p := h.pop()
		l, r := &syms[p.left], &syms[p.right]
		if l.id != p.lid || l.next != p.right || r.id != p.rid {
			continue // stale: one side has changed since the pair was found
		}
		l.id = p.id
		l.fallback = false
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.id = -1
		try(l.prev, p.left)
		try(p.left, l.next)
	}
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out, nil
}

// wholeHeap is a max-heap of wholePair, highest score then leftmost first.
type wholeHeap struct{ a []wholePair }

func (h *wholeHeap) len() int { return len(h.a) }

func (h *wholeHeap) push(p wholePair) {
	h.a = append(h.a, p)
	for i := len(h.a) - 1; i > 0; {
		parent := (i - 1) / 2
		if !wholeLess(h.a[i], h.a[parent]) {
			break
		}
		h.a[i], h.a[parent] = h.a[parent], h.a[i]
		i = parent
	}
}

func (h *wholeHeap) pop() wholePair {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && wholeLess(h.a[l], h.a[m]) {
			m = l
		}
		if r < last && wholeLess(h.a[r], h.a[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.a[i], h.a[m] = h.a[m], h.a[i]
		i = m
	}
	return top
}

func wholeLess(x, y wholePair) bool {
	if x.score != y.score {
		return x.score > y.score
	}
	return x.left < y.left
}

// encodeWhole is EncodeOpts with encodeTextWhole.
func (s *SentencePiece) encodeWhole(text string, opts EncodeOptions) ([]int, error) {
	var out []int
	if opts.BOS && s.bos >= 0 {
		out = append(out, s.bos)
	}
	prevSpecial := true
	for _, f := range s.specials.split(text, opts.ParseSpecial) {
		if f.id >= 0 {
			out = append(out, f.id)
			prevSpecial = true
			continue
		}
		var err error
		if out, err = s.encodeTextWhole(out, f.text, s.addSpacePrefix && prevSpecial); err != nil {
			return nil, err
		}
		prevSpecial = false
	}
	return out, nil
}

// checkWhole fails when tok's ids for text differ from the oracle's.
func checkWhole(t *testing.T, name string, tok *SentencePiece, text string) {
	t.Helper()
	for _, opts := range []EncodeOptions{{BOS: true, ParseSpecial: true}, {}} {
		got, err1 := tok.EncodeOpts(text, opts)
		want, err2 := tok.encodeWhole(text, opts)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s on %q: error %v, the whole-text encoder's %v", name, text, err1, err2)
		}
		if d := diffIDs(tok, got, want); d != "" {
			t.Fatalf("%s: cutting the text changed the ids of %q: %s", name, text, d)
		}
	}
}

// Cutting the text where no merge reaches gives the ids merging it whole
// gives, on the llama2.c and GGUF vocabularies and on vocabularies whose
// tokens hold spaces anywhere.
func TestSentencePieceCutsAgree(t *testing.T) {
	texts := append([]string{benchText(200_000), strings.Repeat("ab ", 3000), strings.Repeat("▁", 100) + "x  y\n\n z"}, corpus...)
	toks := map[string]*SentencePiece{}
	for _, f := range []string{tok512File, llama2File} {
		toks[f] = loadShared(t, f).(*SentencePiece)
	}
	toks["gguf"] = sharedSPM(t).(*SentencePiece)
	// spaces inside and at the end of tokens, and a merge across "><"
	toks["odd"] = newLlama2C([]string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "a b", "b ", " a", "ab", "<0x61>", "ba b"},
		[]float32{0, 0, 0, -1, -1, -1, -2, -3, -4, -5, -6, -7})
	for name, tok := range toks {
		for _, text := range texts {
			checkWhole(t, name, tok, text)
		}
	}
}
