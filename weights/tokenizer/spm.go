package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// SentencePiece is a score-based BPE tokenizer: the vocabulary of
// llama2.c's tokenizer.bin and of GGUF "llama" models (Llama 1/2,
// TinyLlama, Mistral v0.1, ...). It is built by LoadLlama2C (Kind
// "llama2c") or NewSentencePiece (Kind "spm").
//
// Encoding follows llama2.c's run.c encode() (which matches SentencePiece
// BPE and llama.cpp's llm_tokenizer_spm on these vocabularies):
//
//  1. unless the text is empty, a dummy prefix space is put in front;
//  2. the text is cut into UTF-8 characters (a byte plus up to three
//     continuation bytes); each character that is a token becomes that
//     token, any other is spelled with byte tokens (<0xNN>);
//  3. repeatedly, the adjacent pair whose concatenation is a token with the
//     highest score is merged (the leftmost pair on ties), until no pair
//     concatenates to a token.
//
// Decoding concatenates the tokens' texts, byte tokens turn into their
// byte, and the space a token starts with is dropped when it follows BOS
// (run.c's decode()). Decode(Encode(x, true)) == x therefore holds, while
// Decode(Encode(x, false)) == " " + x for non-empty x: without BOS the
// dummy prefix stays visible.
type SentencePiece struct {
	kind   string    // "llama2c" or "spm"
	tokens []string  // token texts as stored ("▁" for spaces in "spm")
	scores []float32 // merge priority; higher merges first
	pieces [][]byte  // what each id decodes to
	isByte []bool    // byte tokens: their piece is one raw byte

	lookup  map[string]int // tokens that characters and merges may produce
	all     map[string]int // every token text, for TokenID
	byteIDs [256]int       // byte-fallback id of each byte, -1 if none
	unk     int            // id used when a byte has no byte token, -1 if none

	bos, eos int
	eosList  []int

	addSpacePrefix bool
	space          string  // what ' ' is written as in token texts
	minScore       float32 // a merge needs a score above this
	mergeBytes     bool    // may byte-fallback symbols take part in merges
	specials       *specialMatcher

	joinOnce sync.Once
	joinTab  *spmJoins
}

// NewSentencePiece builds a tokenizer from a GGUF "llama" (SentencePiece)
// vocabulary: tokens use '▁' (U+2581) for spaces, scores rank merges
// (higher first), types are the GGUF token types (1 normal, 2 unknown,
// 3 control, 4 user-defined, 5 unused, 6 byte). scores and types may be
// nil (all scores 0, every token normal); bos and eos may be -1 (none).
// addSpacePrefix is tokenizer.ggml.add_space_prefix (true for Llama).
//
// Control and unknown tokens written in the text are recognised by Encode
// (not by EncodeOpts without ParseSpecial), user-defined tokens always;
// as in llama.cpp, the text after a special token gets a prefix space
// again.
func NewSentencePiece(tokens []string, scores []float32, types []int32, bos, eos int, addSpacePrefix bool) (Tokenizer, error) {
	n := len(tokens)
	if err := checkSPMVocab(n, scores, types, bos, eos); err != nil {
		return nil, err
	}
	if scores == nil {
		scores = make([]float32, n)
	}
	s := &SentencePiece{
		kind:           "spm",
		tokens:         tokens,
		scores:         scores,
		pieces:         make([][]byte, n),
		isByte:         make([]bool, n),
		lookup:         make(map[string]int, n),
		all:            make(map[string]int, n),
		unk:            -1,
		bos:            bos,
		eos:            eos,
		addSpacePrefix: addSpacePrefix,
		space:          "▁",
		minScore:       float32(math.Inf(-1)),
	}
	typ := func(id int) int32 {
		if types == nil {
			if _, ok := parseByteToken(tokens[id]); ok {
				return TypeByte
			}
			return TypeNormal
		}
		return types[id]
	}
	var specials []specialToken
	for id, tok := range tokens {
		if sp, ok := s.addToken(id, tok, typ(id)); ok {
			specials = append(specials, sp)
		}
	}
	for b := range s.byteIDs {
		s.byteIDs[b] = -1
		if id, ok := s.all[fmt.Sprintf("<0x%02X>", b)]; ok && s.isByte[id] {
			s.byteIDs[b] = id
		}
	}
	s.specials = newSpecialMatcher(specials)
	s.eosList = endIDs(eos, func(text string) (int, bool) {
		id, ok := s.all[text]
		return id, ok && typ(id) == TypeControl
	})
	return s, nil
}

// checkSPMVocab refuses arrays of different lengths and BOS/EOS ids out
// of range.
func checkSPMVocab(n int, scores []float32, types []int32, bos, eos int) error {
	if n == 0 {
		return fmt.Errorf("sentencepiece vocabulary is empty: pass the tokenizer.ggml.tokens array")
	}
	if scores != nil && len(scores) != n {
		return fmt.Errorf("sentencepiece vocabulary has %d tokens but %d scores; the two arrays must have the same length", n, len(scores))
	}
	if types != nil && len(types) != n {
		return fmt.Errorf("sentencepiece vocabulary has %d tokens but %d token types; the two arrays must have the same length", n, len(types))
	}
	if bos < -1 || bos >= n || eos < -1 || eos >= n {
		return fmt.Errorf("sentencepiece vocabulary has %d tokens but bos=%d, eos=%d; use ids in range or -1 for none", n, bos, eos)
	}
	return nil
}

// addToken enters token id of type t in the lookup tables and its piece;
// it returns the token as a special token to match in text when it is one
// (unknown, control or user-defined).
func (s *SentencePiece) addToken(id int, tok string, t int32) (specialToken, bool) {
	if _, ok := s.all[tok]; !ok {
		s.all[tok] = id
	}
	switch t {
	case TypeUndefined, TypeNormal, TypeUserDefined:
		if _, ok := s.lookup[tok]; !ok {
			s.lookup[tok] = id
		}
	}
	switch t {
	case TypeByte:
		if b, ok := parseByteToken(tok); ok {
			s.pieces[id] = []byte{b}
			s.isByte[id] = true
		} else {
			s.pieces[id] = []byte(tok)
		}
	default:
		s.pieces[id] = []byte(strings.ReplaceAll(tok, "▁", " "))
	}
	switch t {
	case TypeUnknown:
		if s.unk < 0 {
			s.unk = id
		}
		return specialToken{text: tok, id: id, control: true}, true
	case TypeControl:
		return specialToken{text: tok, id: id, control: true}, true
	case TypeUserDefined:
		return specialToken{text: tok, id: id}, true
	}
	return specialToken{}, false
}

// parseByteToken recognises the byte-fallback token form <0xNN>.
func parseByteToken(tok string) (byte, bool) {
	if len(tok) != 6 || tok[0] != '<' || tok[1] != '0' || tok[2] != 'x' || tok[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(tok[3])
	lo, ok2 := hexDigit(tok[4])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// maxTokenBytes: a token covers its piece, or its stored text when the
// input spells its spaces as '▁' (which encodes like a space).
func (s *SentencePiece) maxTokenBytes() int {
	n := 0
	for id, p := range s.pieces {
		n = max(n, len(p), len(s.tokens[id]))
	}
	return n
}

// Kind is "llama2c" or "spm".
func (s *SentencePiece) Kind() string { return s.kind }

// VocabSize is the number of tokens.
func (s *SentencePiece) VocabSize() int { return len(s.tokens) }

// BOS is the beginning-of-sequence id (-1 if none).
func (s *SentencePiece) BOS() int { return s.bos }

// EOS lists the end-of-sequence id and any end-of-turn control tokens.
func (s *SentencePiece) EOS() []int { return append([]int(nil), s.eosList...) }

// TokenID finds a token by its stored text (with '▁' for spaces in "spm"
// vocabularies; llama2.c files store spaces, and BOS as "\n<s>\n").
func (s *SentencePiece) TokenID(text string) (int, bool) {
	id, ok := s.all[text]
	return id, ok
}

// Encode tokenizes text, recognising control tokens written in it.
func (s *SentencePiece) Encode(text string, bos bool) ([]int, error) {
	return s.EncodeOpts(text, EncodeOptions{BOS: bos, ParseSpecial: true})
}

// EncodeOpts tokenizes text as Encode does, with options. llama2.c
// vocabularies have no special tokens: ParseSpecial changes nothing there.
func (s *SentencePiece) EncodeOpts(text string, opts EncodeOptions) ([]int, error) {
	out := make([]int, 0, len(text)/3+2)
	if opts.BOS && s.bos >= 0 {
		out = append(out, s.bos)
	}
	prevSpecial := true // the first text fragment gets the prefix space
	for _, f := range s.specials.split(text, opts.ParseSpecial) {
		if f.id >= 0 {
			out = append(reserve(out, 1), f.id)
			prevSpecial = true
			continue
		}
		var err error
		out, err = s.encodeText(out, f.text, s.addSpacePrefix && prevSpecial)
		if err != nil {
			return nil, err
		}
		prevSpecial = false
	}
	return out, nil
}

// spmSymbol is one token of the text being merged, in a linked list.
type spmSymbol struct {
	id         int32 // -1 once merged into its left neighbour
	prev, next int32 // neighbour indices, -1 at the ends
	fallback   bool
}

// spmPair is a candidate merge of symbols left and right into id.
type spmPair struct {
	score       float32
	left, right int32
	lid, rid    int32 // the symbols' ids when the pair was found
	id          int32
}

// spmScratch is the working memory of one encoding, reused from piece to
// piece of the text (and, through a pool, from call to call).
type spmScratch struct {
	syms []spmSymbol
	heap pairHeap
	buf  []byte
}

var spmScratchPool = sync.Pool{New: func() any { return new(spmScratch) }}

// spmJoins is what decides where merges can never reach: the first and
// last character of every token's text, and every pair of adjacent
// characters inside a token that merges may produce.
type spmJoins struct {
	first, last []rune // per id; -1 when the text is not valid UTF-8 (or empty)
	inside      map[uint64]struct{}
}

func runePair(a, b rune) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// joins builds spmJoins once per tokenizer.
func (s *SentencePiece) joins() *spmJoins {
	s.joinOnce.Do(func() {
		j := &spmJoins{first: make([]rune, len(s.tokens)), last: make([]rune, len(s.tokens)), inside: map[uint64]struct{}{}}
		for id, tok := range s.tokens {
			j.first[id], j.last[id] = -1, -1
			if tok != "" && utf8.ValidString(tok) {
				j.first[id], _ = utf8.DecodeRuneInString(tok)
				j.last[id], _ = utf8.DecodeLastRuneInString(tok)
			}
		}
		for tok := range s.lookup {
			prev := rune(-1)
			for _, r := range tok { // invalid bytes read as RuneError: more pairs, never fewer
				if prev >= 0 {
					j.inside[runePair(prev, r)] = struct{}{}
				}
				prev = r
			}
		}
		s.joinTab = j
	})
	return s.joinTab
}

// encodeText appends the ids of one text fragment (no special tokens).
//
// Merges only ever join symbols into tokens of s.lookup, and a token made
// across the boundary between two adjacent characters contains the last
// character of the left one's text followed by the first of the right
// one's. Where no token has that pair of characters, no merge can cross:
// the text is cut there and each piece merged on its own, which gives the
// same ids (the merges of one piece never depend on another's) with
// working memory the size of a piece, not of the text.
func (s *SentencePiece) encodeText(out []int, text string, prefix bool) ([]int, error) {
	if text == "" {
		return out, nil
	}
	j := s.joins()
	sc := spmScratchPool.Get().(*spmScratch)
	defer spmScratchPool.Put(sc)
	sc.syms = sc.syms[:0]
	last := rune(-1) // last character of the previous symbol's text
	push := func(id int, fallback bool) {
		if n := len(sc.syms); n > 0 && last >= 0 && j.first[id] >= 0 {
			if _, joins := j.inside[runePair(last, j.first[id])]; !joins {
				out = s.merge(out, sc)
			}
		}
		n := int32(len(sc.syms))
		sc.syms = append(sc.syms, spmSymbol{id: int32(id), prev: n - 1, next: n + 1, fallback: fallback})
		last = j.last[id]
	}
	// addChar adds one character (ch is raw text: ' ' is looked up as
	// s.space, byte fallback spells the raw bytes, as llama2.c does).
	addChar := func(ch string) error {
		key := ch
		if ch == " " {
			key = s.space // the common case, without an allocation
		} else if s.space != " " && strings.IndexByte(ch, ' ') >= 0 {
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
		k := i + 1
		for k < len(text) && text[k]&0xC0 == 0x80 && k-i < 4 {
			k++
		}
		if err := addChar(text[i:k]); err != nil {
			return nil, err
		}
		i = k
	}
	return s.merge(out, sc), nil
}

// merge runs the merges over the symbols in sc (a piece of the text no
// merge reaches out of), appends the resulting ids to out and empties sc.
func (s *SentencePiece) merge(out []int, sc *spmScratch) []int {
	syms := sc.syms
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1
	h := &sc.heap
	h.a = h.a[:0]
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		a, b := &syms[l], &syms[r]
		if !s.mergeBytes && (a.fallback || b.fallback) {
			return
		}
		sc.buf = append(append(sc.buf[:0], s.tokens[a.id]...), s.tokens[b.id]...)
		id, ok := s.lookup[string(sc.buf)]
		if !ok || !(s.scores[id] > s.minScore) {
			return
		}
		h.push(spmPair{score: s.scores[id], left: l, right: r, lid: a.id, rid: b.id, id: int32(id)})
	}
	for i := int32(0); int(i)+1 < len(syms); i++ {
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
	n := 0
	for i := int32(0); i >= 0; i = syms[i].next {
		n++
	}
	out = reserve(out, n)
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	sc.syms = syms[:0]
	return out
}

// pairHeap is a max-heap of merge candidates: highest score first, then
// the leftmost.
type pairHeap struct{ a []spmPair }

func (h *pairHeap) len() int { return len(h.a) }

func (h *pairHeap) less(i, j int) bool {
	x, y := &h.a[i], &h.a[j]
	if x.score != y.score {
		return x.score > y.score
	}
	return x.left < y.left
}

func (h *pairHeap) push(p spmPair) {
	h.a = append(h.a, p)
	for i := len(h.a) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h.a[i], h.a[parent] = h.a[parent], h.a[i]
		i = parent
	}
}

func (h *pairHeap) pop() spmPair {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
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

// piece is Piece without the copy.
func (s *SentencePiece) piece(prev, id int) []byte {
	if id < 0 || id >= len(s.pieces) {
		return nil
	}
	p := s.pieces[id]
	if prev >= 0 && prev == s.bos && s.addSpacePrefix && !s.isByte[id] && len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	return p
}

// Piece returns the bytes id decodes to after prev: the token text with
// spaces, one raw byte for a byte token, the leading space dropped after
// BOS. Unknown ids give nil.
func (s *SentencePiece) Piece(prev, id int) []byte {
	return append([]byte(nil), s.piece(prev, id)...)
}

// Decode concatenates the pieces of ids, dropping BOS. Ids out of range
// decode to nothing.
func (s *SentencePiece) Decode(ids []int) string {
	var b []byte
	prev := -1
	for _, id := range ids {
		if id != s.bos {
			b = append(b, s.piece(prev, id)...)
		}
		prev = id
	}
	return string(b)
}
