package tokenizer

import (
	"fmt"
	"strings"
	"sync"
)

// BPE is a byte-level BPE tokenizer (GPT-2, Llama 3): the text is cut into
// words by a regex pre-tokenizer, each word's UTF-8 bytes start as one
// token per byte, and the pair of adjacent tokens with the lowest merge
// rank is merged until no listed merge applies (the leftmost pair on
// ties). With ignoreMerges (Llama 3), a word that is a token as a whole is
// that token. Special tokens are matched in the text first.
//
// It is built by LoadHF (Kind "hf-bpe") or NewGPT2BPE (Kind "gpt2").
// Decode is exact: Decode(Encode(x, bos)) == x for any x.
type BPE struct {
	kind    string
	texts   []string       // token text as given (byte-level form, or a special's text)
	pieces  [][]byte       // raw bytes each id decodes to
	ids     map[string]int // token text as given -> id, for TokenID
	vocab   map[string]int // raw bytes -> id of ordinary tokens (ignoreMerges)
	merges  map[uint64]bpeMerge
	byteIDs [256]int // id of the single-byte token of each byte, -1 if none

	split          splitter
	addPrefixSpace bool // put a space before text that does not start with one
	ignoreMerges   bool
	specials       *specialMatcher

	bos int
	eos []int

	mu    sync.RWMutex
	cache map[string][]int // word -> ids
}

// bpeMerge is what a pair of ids merges into, and the merge's priority.
type bpeMerge struct {
	rank int32
	id   int32
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// maxCache bounds the word cache; it is emptied when full.
const maxCache = 1 << 17

// bpeSpec is what both constructors collect before building a BPE.
type bpeSpec struct {
	kind   string
	size   int            // number of ids
	tokens map[int]string // id -> byte-level text of ordinary tokens
	added  map[int]string // id -> raw text of special/added tokens
	ctrl   map[int]bool   // added tokens recognised only with ParseSpecial
	merges [][2]string    // in rank order, byte-level texts
	split  splitter
	prefix bool
	ignore bool
	bos    int
	eos    []int
}

// newBPE builds the tables. Merges naming unknown tokens are skipped (as
// llama.cpp does); it is an error when none is usable.
func newBPE(sp bpeSpec) (*BPE, error) {
	t := &BPE{
		kind:           sp.kind,
		texts:          make([]string, sp.size),
		pieces:         make([][]byte, sp.size),
		ids:            make(map[string]int, sp.size),
		vocab:          make(map[string]int, len(sp.tokens)),
		merges:         make(map[uint64]bpeMerge, len(sp.merges)),
		split:          sp.split,
		addPrefixSpace: sp.prefix,
		ignoreMerges:   sp.ignore,
		bos:            sp.bos,
		eos:            sp.eos,
		cache:          make(map[string][]int),
	}
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
	}
	// Go over ids in order, so that where two tokens share a text the
	// lower id wins, whatever the map order.
	var specials []specialToken
	for id := 0; id < sp.size; id++ {
		if text, ok := sp.added[id]; ok {
			t.texts[id] = text
			t.pieces[id] = []byte(text)
			if _, dup := t.ids[text]; !dup {
				t.ids[text] = id
			}
			specials = append(specials, specialToken{text: text, id: id, control: sp.ctrl[id]})
			continue
		}
		text, ok := sp.tokens[id]
		if !ok {
			continue // a hole in the id space: decodes to nothing
		}
		t.texts[id] = text
		if _, dup := t.ids[text]; !dup {
			t.ids[text] = id
		}
		raw, ok := byteLevelDecode(text)
		if !ok {
			// Not byte-level text: Hugging Face's ByteLevel decoder then
			// outputs the text as it is; BPE cannot produce it.
			t.pieces[id] = []byte(text)
			continue
		}
		t.pieces[id] = raw
		if _, dup := t.vocab[string(raw)]; !dup {
			t.vocab[string(raw)] = id
		}
		if len(raw) == 1 && t.byteIDs[raw[0]] < 0 {
			t.byteIDs[raw[0]] = id
		}
	}
	for b, id := range t.byteIDs {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary has no token for byte 0x%02X (byte-level form %q); a byte-level BPE vocabulary needs all 256 single-byte tokens", b, string(byteToRune[b]))
		}
	}
	used := 0
	for rank, m := range sp.merges {
		a, okA := t.ids[m[0]]
		b, okB := t.ids[m[1]]
		c, okC := t.ids[m[0]+m[1]]
		if !okA || !okB || !okC {
			continue
		}
		k := pairKey(a, b)
		if _, dup := t.merges[k]; dup {
			continue // the first (lowest rank) listing wins
		}
		t.merges[k] = bpeMerge{rank: int32(rank), id: int32(c)}
		used++
	}
	if used == 0 && len(sp.merges) > 0 {
		return nil, fmt.Errorf("none of the %d merges names tokens of the vocabulary (the first is %q %q); are the merges from another vocabulary?", len(sp.merges), sp.merges[0][0], sp.merges[0][1])
	}
	t.specials = newSpecialMatcher(specials)
	return t, nil
}

// parseMerge splits a "left right" merge line.
func parseMerge(line string) ([2]string, bool) {
	a, b, ok := strings.Cut(line, " ")
	if !ok || a == "" || b == "" || strings.Contains(b, " ") {
		return [2]string{}, false
	}
	return [2]string{a, b}, true
}

// maxTokenBytes: a token covers its raw bytes (the text of a special).
func (t *BPE) maxTokenBytes() int {
	n := 0
	for _, p := range t.pieces {
		n = max(n, len(p))
	}
	return n
}

// Kind is "hf-bpe" or "gpt2".
func (t *BPE) Kind() string { return t.kind }

// VocabSize is the number of ids (one more than the largest id).
func (t *BPE) VocabSize() int { return len(t.texts) }

// BOS is the beginning-of-sequence id, -1 if none.
func (t *BPE) BOS() int { return t.bos }

// EOS lists every id that ends generation.
func (t *BPE) EOS() []int { return append([]int(nil), t.eos...) }

// TokenID finds a token by its text: byte-level form for ordinary tokens
// ("Ġhello"), the plain text for special tokens ("<|eot_id|>").
func (t *BPE) TokenID(text string) (int, bool) {
	id, ok := t.ids[text]
	return id, ok
}

// Encode tokenizes text, recognising special tokens written in it.
func (t *BPE) Encode(text string, bos bool) ([]int, error) {
	return t.EncodeOpts(text, EncodeOptions{BOS: bos, ParseSpecial: true})
}

// EncodeOpts tokenizes text with options; with ParseSpecial false,
// special tokens in the text are encoded as the plain characters they
// are made of.
func (t *BPE) EncodeOpts(text string, opts EncodeOptions) ([]int, error) {
	out := make([]int, 0, len(text)/4+2)
	if opts.BOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	sc := bpeScratchPool.Get().(*bpeScratch)
	defer bpeScratchPool.Put(sc)
	for _, f := range t.specials.split(text, opts.ParseSpecial) {
		if f.id >= 0 {
			out = append(reserve(out, 1), f.id)
			continue
		}
		s := f.text
		if t.addPrefixSpace && !strings.HasPrefix(s, " ") {
			s = " " + s
		}
		t.split(s, func(word string) {
			out = t.appendWord(out, word, sc)
		})
	}
	return out, nil
}

// appendWord appends the ids of one pre-token, through the cache.
func (t *BPE) appendWord(out []int, word string, sc *bpeScratch) []int {
	if word == "" {
		return out
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[word]; ok {
			return append(reserve(out, 1), id)
		}
	}
	t.mu.RLock()
	ids, ok := t.cache[word]
	t.mu.RUnlock()
	if ok {
		return append(reserve(out, len(ids)), ids...)
	}
	start := len(out)
	out = t.bpe(out, word, sc)
	ids = append([]int(nil), out[start:]...)
	t.mu.Lock()
	if len(t.cache) >= maxCache {
		clear(t.cache)
	}
	// Clone: word points into the caller's text, which the cache must not
	// keep alive.
	t.cache[strings.Clone(word)] = ids
	t.mu.Unlock()
	return out
}

// bpeSymbol is one token of the word being merged, in a linked list.
type bpeSymbol struct {
	id         int32 // -1 once merged into its left neighbour
	prev, next int32
}

// bpePair is a candidate merge; lower rank first, then the leftmost.
type bpePair struct {
	rank, left, right int32
	lid, rid, id      int32
}

// bpeScratch is the working memory of bpe, reused from word to word (and,
// through a pool, from call to call): nothing is allocated per word.
type bpeScratch struct {
	syms []bpeSymbol
	heap []bpePair
}

var bpeScratchPool = sync.Pool{New: func() any { return new(bpeScratch) }}

// symbols is word's bytes as a list of byte-level tokens.
func (t *BPE) symbols(syms []bpeSymbol, word string) []bpeSymbol {
	for i := 0; i < len(word); i++ {
		syms = append(syms, bpeSymbol{id: int32(t.byteIDs[word[i]]), prev: int32(i - 1), next: int32(i + 1)})
	}
	syms[len(syms)-1].next = -1
	return syms
}

// bpe merges the bytes of word and appends the resulting ids to out.
func (t *BPE) bpe(out []int, word string, sc *bpeScratch) []int {
	syms := t.symbols(sc.syms[:0], word)
	h := sc.heap[:0]
	less := func(i, j int) bool {
		if h[i].rank != h[j].rank {
			return h[i].rank < h[j].rank
		}
		return h[i].left < h[j].left
	}
	push := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		m, ok := t.merges[pairKey(int(syms[l].id), int(syms[r].id))]
		if !ok {
			return
		}
		h = append(h, bpePair{rank: m.rank, left: l, right: r, lid: syms[l].id, rid: syms[r].id, id: m.id})
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !less(i, p) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	pop := func() bpePair {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < last && less(l, m) {
				m = l
			}
			if r < last && less(r, m) {
				m = r
			}
			if m == i {
				break
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
		return top
	}
	for i := int32(0); int(i)+1 < len(syms); i++ {
		push(i, i+1)
	}
	for len(h) > 0 {
		p := pop()
		l, r := &syms[p.left], &syms[p.right]
		if l.id != p.lid || l.next != p.right || r.id != p.rid {
			continue // stale
		}
		l.id = p.id
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.id = -1
		push(l.prev, p.left)
		push(p.left, l.next)
	}
	sc.syms, sc.heap = syms, h
	return appendSymbols(out, syms)
}

// appendSymbols appends the ids of the symbols left in the list.
func appendSymbols(out []int, syms []bpeSymbol) []int {
	n := 0
	for i := int32(0); i >= 0; i = syms[i].next {
		n++
	}
	out = reserve(out, n)
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}

// Piece returns the bytes of id (prev does not matter for byte-level
// BPE); nil for ids out of range.
func (t *BPE) Piece(prev, id int) []byte {
	if id < 0 || id >= len(t.pieces) {
		return nil
	}
	return append([]byte(nil), t.pieces[id]...)
}

// Decode concatenates the bytes of ids; BOS is dropped, other special
// tokens appear as their text, ids out of range as nothing.
func (t *BPE) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		if id == t.bos || id < 0 || id >= len(t.pieces) {
			continue
		}
		b = append(b, t.pieces[id]...)
	}
	return string(b)
}
