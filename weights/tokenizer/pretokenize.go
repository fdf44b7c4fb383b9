package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// Byte-level BPE vocabularies (GPT-2, Llama 3) write each byte of a token
// as a printable character: bytes that are printable Latin-1 stand for
// themselves, the others (controls, space, 0x7F-0xA0, 0xAD) are shifted to
// U+0100 and up in byte order. So ' ' is 'Ġ' (U+0120) and '\n' is 'Ċ'.
var (
	byteToRune [256]rune
	runeToByte = make(map[rune]byte, 256)
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevelDecode turns a byte-level token text back into raw bytes. ok is
// false when a character is not one of the 256 byte characters.
func byteLevelDecode(tok string) ([]byte, bool) {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// byteLevelEncode writes raw bytes in byte-level form.
func byteLevelEncode(raw []byte) string {
	rs := make([]rune, len(raw))
	for i, b := range raw {
		rs[i] = byteToRune[b]
	}
	return string(rs)
}

// A splitter cuts text into pre-tokens ("words") that BPE encodes one by
// one; the words cover the text exactly, in order.
type splitter func(text string, emit func(word string))

// The pre-tokenizer patterns of the vocabularies we know. Both are
// implemented by hand below (Go's regexp has no lookahead, and a hand
// scanner is several times faster than a backtracking engine); any other
// pattern from a tokenizer.json runs on regexp2.
const (
	// Llama 3 (tiktoken cl100k-style), tokenizer.ggml.pre "llama-bpe".
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// GPT-2 and the GGUF "default"/"gpt2" pre-tokenizer.
	patternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// Qwen 2: Llama 3's pattern with single digits.
	patternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// splitterFor returns the splitter of a regex pattern: a hand-written one
// for the known patterns, regexp2 for the rest.
func splitterFor(pattern string) (splitter, error) {
	switch pattern {
	case patternLlama3:
		return func(text string, emit func(string)) { splitLlama3(text, 3, emit) }, nil
	case patternQwen2:
		return func(text string, emit func(string)) { splitLlama3(text, 1, emit) }, nil
	case patternGPT2:
		return splitGPT2, nil
	}
	return regexSplitter(pattern)
}

// regexSplitter splits text at the matches of pattern (regexp2, .NET
// syntax, which has lookarounds). Text between matches becomes words of
// its own ("Isolated" behaviour in Hugging Face terms).
func regexSplitter(pattern string) (splitter, error) {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("pre-tokenizer regex %q does not compile: %w", pattern, err)
	}
	return func(text string, emit func(string)) {
		// regexp2 works on runes: map rune indices back to byte offsets.
		// Invalid UTF-8 bytes are one U+FFFD rune each, as in a range loop.
		runes := make([]rune, 0, len(text))
		offs := make([]int, 0, len(text)+1)
		for i, r := range text {
			runes = append(runes, r)
			offs = append(offs, i)
		}
		offs = append(offs, len(text))
		last := 0
		m, err := re.FindRunesMatch(runes)
		for err == nil && m != nil {
			start, end := offs[m.Index], offs[m.Index+m.Length]
			if start > last {
				emit(text[last:start])
			}
			if end > start {
				emit(text[start:end])
			}
			last = end
			m, err = re.FindNextMatch(m)
		}
		if last < len(text) {
			emit(text[last:])
		}
	}, nil
}

// Character classes of the patterns. Invalid UTF-8 bytes decode as
// U+FFFD, a symbol: neither letter, number nor space.
func isLetter(r rune) bool { return unicode.IsLetter(r) }
func isNumber(r rune) bool { return unicode.IsNumber(r) }
func isSpace(r rune) bool  { return unicode.IsSpace(r) }
func isOther(r rune) bool  { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// runeAt decodes the rune at byte offset i; at the end of text it returns
// (-1, 0). An invalid byte is (U+FFFD, 1).
func runeAt(text string, i int) (rune, int) {
	if i >= len(text) {
		return -1, 0
	}
	if c := text[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(text[i:])
}

// contraction returns the length of an English contraction at i ('s 't 're
// 've 'm 'll 'd), or 0. With fold, letters match case-insensitively
// (Unicode simple case folding, so 'ſ' (U+017F) matches 's' as it does in
// the Rust and JavaScript regex engines).
func contraction(text string, i int, fold bool) int {
	if i >= len(text) || text[i] != '\'' {
		return 0
	}
	lower := func(j int) (rune, int) {
		r, n := runeAt(text, j)
		if fold {
			if r == 'ſ' {
				r = 's'
			} else if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
		}
		return r, n
	}
	r1, n1 := lower(i + 1)
	switch r1 {
	case 's', 't', 'm', 'd':
		return 1 + n1
	case 'r', 'v', 'l':
		r2, n2 := lower(i + 1 + n1)
		if (r1 == 'r' && r2 == 'e') || (r1 == 'v' && r2 == 'e') || (r1 == 'l' && r2 == 'l') {
			return 1 + n1 + n2
		}
	}
	return 0
}

// spanWhile returns the offset after the run of runes from i for which f
// holds (at most limit runes when limit > 0).
func spanWhile(text string, i int, limit int, f func(rune) bool) int {
	for count := 0; i < len(text) && (limit <= 0 || count < limit); count++ {
		r, n := runeAt(text, i)
		if !f(r) {
			break
		}
		i += n
	}
	return i
}

// matchSpaces implements the tail alternatives `\s+(?!\S)|\s+` at i (a
// space): the whole run of spaces if it ends the text, else the run less
// its last space (which then joins the next word), but at least one space.
func matchSpaces(text string, i int) int {
	end := spanWhile(text, i, 0, isSpace)
	if end == len(text) {
		return end
	}
	// Step back one rune: the last space is left for the next word.
	_, lastLen := utf8.DecodeLastRuneInString(text[:end])
	if end-lastLen > i {
		return end - lastLen
	}
	return end
}

// splitLlama3 scans patternLlama3 (maxDigits 3) or patternQwen2 (1):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)
//	|[^\r\n\p{L}\p{N}]?\p{L}+
//	|\p{N}{1,maxDigits}
//	| ?[^\s\p{L}\p{N}]+[\r\n]*
//	|\s*[\r\n]+
//	|\s+(?!\S)
//	|\s+
//
// trying the alternatives in order at each position, as a backtracking
// regex engine does.
func splitLlama3(text string, maxDigits int, emit func(string)) {
	isCRLF := func(r rune) bool { return r == '\r' || r == '\n' }
	for i := 0; i < len(text); {
		end := llama3Match(text, i, maxDigits, isCRLF)
		emit(text[i:end])
		i = end
	}
}

func llama3Match(text string, i, maxDigits int, isCRLF func(rune) bool) int {
	if n := contraction(text, i, true); n > 0 {
		return i + n
	}
	r, n := runeAt(text, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return spanWhile(text, i+n, 0, isLetter)
	}
	if !isCRLF(r) && !isNumber(r) {
		if r2, _ := runeAt(text, i+n); r2 >= 0 && isLetter(r2) {
			return spanWhile(text, i+n, 0, isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r) {
		return spanWhile(text, i, maxDigits, isNumber)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	j := i
	if r == ' ' {
		if r2, _ := runeAt(text, i+n); r2 >= 0 && isOther(r2) {
			j = i + n
		}
	}
	if r2, _ := runeAt(text, j); r2 >= 0 && isOther(r2) {
		end := spanWhile(text, j, 0, isOther)
		return spanWhile(text, end, 0, isCRLF)
	}
	// What is left starts with a space.
	// \s*[\r\n]+ : up to and including the last \r or \n of the run.
	end := spanWhile(text, i, 0, isSpace)
	lastNL := -1
	for k := i; k < end; {
		rk, nk := runeAt(text, k)
		if isCRLF(rk) {
			lastNL = k + nk
		}
		k += nk
	}
	if lastNL > 0 {
		return lastNL
	}
	return matchSpaces(text, i)
}

// splitGPT2 scans patternGPT2:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitGPT2(text string, emit func(string)) {
	for i := 0; i < len(text); {
		end := gpt2Match(text, i)
		emit(text[i:end])
		i = end
	}
}

func gpt2Match(text string, i int) int {
	if n := contraction(text, i, false); n > 0 {
		return i + n
	}
	j := i
	if text[i] == ' ' {
		j = i + 1
	}
	// ' ?' then a run of one class; without a run after the space, the
	// space itself falls through to the space alternatives.
	if r, _ := runeAt(text, j); r >= 0 {
		for _, class := range []func(rune) bool{isLetter, isNumber, isOther} {
			if class(r) {
				return spanWhile(text, j, 0, class)
			}
		}
	}
	return matchSpaces(text, i)
}
