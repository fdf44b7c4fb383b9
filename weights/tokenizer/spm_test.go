package tokenizer

import (
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestSentencePieceGGUFMatchesReference encodes the reference cases of a
// llama2.c tokenizer.bin with the same vocabulary read from a GGUF file's
// metadata: the ids must be those of the reference.
func TestSentencePieceGGUFMatchesReference(t *testing.T) {
	for _, pair := range []struct{ gguf, bin string }{
		{"models/gguf/tiny-random-llama2.gguf", llama2File},
		{"models/gguf/stories260K.gguf", tok512File},
	} {
		t.Run(pair.gguf, func(t *testing.T) {
			tok := ggufTokenizer(t, pair.gguf)
			if tok.Kind() != "spm" {
				t.Fatalf("Kind() = %q, want spm", tok.Kind())
			}
			bin := loadShared(t, pair.bin)
			if tok.VocabSize() != bin.VocabSize() || tok.BOS() != 1 || !equalInts(tok.EOS(), []int{2}) {
				t.Fatalf("VocabSize %d BOS %d EOS %v; want %d, 1, [2]", tok.VocabSize(), tok.BOS(), tok.EOS(), bin.VocabSize())
			}
			n := 0
			for _, c := range loadCases(t) {
				if c.TokenizerFile != pair.bin {
					continue
				}
				n++
				got, err := tok.Encode(c.Text, false)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				if d := diffIDs(tok, got, c.IDs); d != "" {
					t.Errorf("%s: Encode(%q): %s", c.Name, c.Text, d)
				}
				if got := tok.Decode(append([]int{1}, c.IDs...)); got != c.Text {
					t.Errorf("%s: Decode: %s", c.Name, diffText(got, c.Text))
				}
			}
			if n == 0 {
				t.Fatalf("no reference cases for %s", pair.bin)
			}
			// Beyond the reference cases: the GGUF tokenizer and the
			// tokenizer.bin must agree on any text.
			for _, text := range append(corpus, randomTexts(200)...) {
				want, err := bin.Encode(text, true)
				if err != nil {
					t.Fatal(err)
				}
				got, err := EncodeWith(tok, text, EncodeOptions{BOS: true})
				if err != nil {
					t.Fatal(err)
				}
				if d := diffIDs(tok, got, want); d != "" {
					t.Errorf("Encode(%q) differs from the tokenizer.bin: %s", text, d)
				}
				if got := tok.Decode(got); got != text {
					t.Errorf("Decode(Encode(%q)): %s", text, diffText(got, text))
				}
			}
		})
	}
}

// randomTexts makes deterministic random strings mixing ASCII, spaces,
// Latin-1, CJK and emoji. (No '▁': SentencePiece vocabularies cannot tell
// it from a space, see TestSentencePieceMetaSpace.)
func randomTexts(n int) []string {
	rng := rand.New(rand.NewSource(1))
	alphabet := []rune("aeiou tnsrl  \n\t.,'!?0123456789ABCDEFé你好世界😀ß€\u00a0<>s/|")
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for k := rng.Intn(40); k >= 0; k-- {
			b.WriteRune(alphabet[rng.Intn(len(alphabet))])
		}
		out[i] = b.String()
	}
	return out
}

func TestSentencePieceSpecialTokens(t *testing.T) {
	tok := ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf")
	// Encode recognises control tokens; the text after one gets the prefix
	// space again (llama.cpp).
	got, err := tok.Encode("<s>hi</s>", false)
	if err != nil {
		t.Fatal(err)
	}
	hi, _ := tok.TokenID("▁hi")
	if want := []int{1, hi, 2}; !equalInts(got, want) {
		t.Errorf("Encode(<s>hi</s>) = %v, want %v", got, want)
	}
	plain, err := EncodeWith(tok, "<s>", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range plain {
		if id == 1 {
			t.Errorf("EncodeWith(ParseSpecial=false) produced BOS: %v", plain)
		}
	}
	if got := tok.Decode([]int{1, hi, 2}); got != "hi</s>" {
		t.Errorf("Decode = %q, want %q", got, "hi</s>")
	}
}

func TestSentencePieceConstructorErrors(t *testing.T) {
	cases := []struct {
		name   string
		tokens []string
		scores []float32
		types  []int32
		bos    int
	}{
		{"empty", nil, nil, nil, -1},
		{"scores length", []string{"a", "b"}, []float32{0}, nil, -1},
		{"types length", []string{"a", "b"}, nil, []int32{1}, -1},
		{"bos range", []string{"a"}, nil, nil, 5},
	}
	for _, c := range cases {
		if _, err := NewSentencePiece(c.tokens, c.scores, c.types, c.bos, -1, true); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	// A vocabulary without byte tokens cannot encode unknown characters.
	tok, err := NewSentencePiece([]string{"<unk>", "▁", "a"}, nil, []int32{1, 1, 1}, -1, -1, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("a☃", false); err == nil {
		t.Error("encoding a character with no token and no byte fallback gave no error")
	}
}

// TestSentencePieceInvalidUTF8 runs bytes that are not UTF-8 through both
// SentencePiece tokenizers: they must come back unchanged.
func TestSentencePieceInvalidUTF8(t *testing.T) {
	spm := ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf")
	bin := loadShared(t, llama2File)
	for _, text := range []string{"\xff", "a\x80\x80\x80\x80\x80b", "\xe4\xbd", "ok\xc3(", "\xf0\x9f\x98"} {
		if utf8.ValidString(text) {
			t.Fatalf("%q is valid", text)
		}
		for _, tok := range []Tokenizer{spm, bin} {
			ids, err := tok.Encode(text, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Decode(ids); got != text {
				t.Errorf("%s: %s", tok.Kind(), diffText(got, text))
			}
		}
	}
}

// TestSentencePieceMetaSpace documents that a '▁' (U+2581) in the text is
// a space to a GGUF SentencePiece vocabulary, as in SentencePiece itself.
func TestSentencePieceMetaSpace(t *testing.T) {
	tok := ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf")
	a, _ := tok.Encode("a▁b", true)
	b, _ := tok.Encode("a b", true)
	if !equalInts(a, b) {
		t.Errorf("Encode(a▁b) = %v, Encode(a b) = %v; expected the same", a, b)
	}
}
