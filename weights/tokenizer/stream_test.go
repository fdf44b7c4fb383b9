package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// streamAll feeds ids one by one and returns the chunks (Flush last).
func streamAll(tok Tokenizer, ids []int) []string {
	s := NewStreamDecoder(tok)
	var chunks []string
	for _, id := range ids {
		chunks = append(chunks, s.Add(id))
	}
	return append(chunks, s.Flush())
}

func TestStreamDecoder(t *testing.T) {
	texts := []string{
		"Once upon a time, 😀 there was 你好，世界！我爱自然语言处理。",
		"👨‍👩‍👧‍👦 family, 🇺🇸 flag, ❤️ heart, 日本語のテキスト",
		"café naïve résumé — “quotes” ½ ∑ ∞",
		" leading space and trailing ",
		"",
	}
	toks := map[string]Tokenizer{
		"tok512": loadShared(t, tok512File),
		"llama2": loadShared(t, llama2File),
		"llama3": loadShared(t, llama3File),
		"spm":    ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf"),
	}
	for name, tok := range toks {
		for _, text := range texts {
			for _, bos := range []bool{true, false} {
				ids, err := tok.Encode(text, bos)
				if err != nil {
					t.Fatal(err)
				}
				chunks := streamAll(tok, ids)
				for i, c := range chunks {
					if !utf8.ValidString(c) {
						t.Errorf("%s: chunk %d of %q is not valid UTF-8: %q", name, i, text, c)
					}
				}
				if got, want := strings.Join(chunks, ""), tok.Decode(ids); got != want {
					t.Errorf("%s bos=%v: stream %s", name, bos, diffText(got, want))
				}
				if bos && tok.Decode(ids) != text {
					t.Errorf("%s: Decode(Encode(%q, bos)) = %q", name, text, tok.Decode(ids))
				}
			}
		}
	}
}

// TestStreamDecoderHoldsBack: a character spelled by byte tokens comes out
// whole, with the token that completes it.
func TestStreamDecoderHoldsBack(t *testing.T) {
	tok := loadShared(t, tok512File)
	ids, err := tok.Encode("😀", true) // four byte-fallback tokens after " "
	if err != nil {
		t.Fatal(err)
	}
	chunks := streamAll(tok, ids)
	if want := []string{"", "", "", "", "", "😀", ""}; !equalStrings(chunks, want) {
		t.Errorf("ids %v: chunks %q, want %q", ids, chunks, want)
	}
	// Bytes that never complete a character are U+FFFD at Flush, and
	// bytes that cannot start one right away.
	s := NewStreamDecoder(tok)
	if got := s.Add(0xF0+3) + s.Add(0x9F+3); got != "" {
		t.Errorf("incomplete character emitted %q", got)
	}
	if got := s.Flush(); got != "\uFFFD\uFFFD" {
		t.Errorf("Flush = %q, want two U+FFFD", got)
	}
	if got := s.Add(0xFF + 3); got != "\uFFFD" {
		t.Errorf("invalid byte: %q", got)
	}
	if got := s.Add(0xE4+3) + s.Add('A'+3); got != "\uFFFDA" {
		t.Errorf("broken sequence: %q", got)
	}
}

// TestStreamDecoderStripsAfterBOS: the llama2.c rule needs the previous id.
func TestStreamDecoderStripsAfterBOS(t *testing.T) {
	tok := loadShared(t, llama2File)
	ids, _ := tok.Encode("Hello world", true)
	s := NewStreamDecoder(tok)
	var got []string
	for _, id := range ids {
		got = append(got, s.Add(id))
	}
	if want := []string{"", "Hello", " world"}; !equalStrings(got, want) {
		t.Errorf("chunks %q, want %q", got, want)
	}
}
