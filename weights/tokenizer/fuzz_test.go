package tokenizer

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/star-attn/star/internal/shared"
)

// Fuzz tests: run briefly with
//
//	go test -fuzz=FuzzLlama2CEncode -fuzztime=20s ./weights/tokenizer/
//
// Without -fuzz they run their seed corpus (f.Add and testdata/fuzz) as
// ordinary tests.

var (
	spmOnce sync.Once
	spmTok  Tokenizer
)

// sharedSPM is the GGUF Llama 2 vocabulary, built once.
func sharedSPM(t testing.TB) Tokenizer {
	shared.Path(t, "models/gguf/tiny-random-llama2.gguf")
	spmOnce.Do(func() { spmTok = ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf") })
	if spmTok == nil {
		t.Fatal("GGUF tokenizer did not load")
	}
	return spmTok
}

func addSeeds(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	for _, s := range []string{"", " ", "  ", "\x00", "\xff\xfe", "a\x80\x80\x80\x80b", "<0x41>", "<0x0A>x", "\n<s>\n", "▁▁x", "ſ'ſ 'ſ"} {
		f.Add(s)
	}
}

// FuzzLlama2CEncode: llama2.c encoding never fails on these vocabularies
// (byte fallback covers every byte) and Decode(Encode(x, bos)) == x: the
// dummy prefix space is dropped after BOS. The exception is text spelling
// a byte token literally ("<0x41>"), which llama2.c may merge into that
// byte token (tokenizer.bin gives byte tokens no type). The GGUF
// SentencePiece tokenizer of the same vocabulary must give the same ids
// (when the text has no '▁', which it reads as a space, and no "<0x").
func FuzzLlama2CEncode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, text string) {
		for _, file := range []string{tok512File, llama2File} {
			tok := loadShared(t, file)
			ids, err := tok.Encode(text, true)
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", file, text, err)
			}
			plain, err := tok.Encode(text, false)
			if err != nil || !equalInts(plain, ids[1:]) {
				t.Fatalf("%s: Encode without BOS %v is not Encode with BOS %v less BOS", file, plain, ids)
			}
			if got := tok.Decode(ids); got != text && !strings.Contains(text, "<0x") {
				t.Fatalf("%s: Decode(Encode(%q)): %s", file, text, diffText(got, text))
			}
			if text != "" && !strings.Contains(text, "<0x") && tok.Decode(plain) != " "+text {
				t.Fatalf("%s: Decode without BOS of %q = %q", file, text, tok.Decode(plain))
			}
			if utf8.ValidString(text) {
				if got := strings.Join(streamAll(tok, ids), ""); got != tok.Decode(ids) && !strings.Contains(text, "<0x") {
					t.Fatalf("%s: stream %s", file, diffText(got, tok.Decode(ids)))
				}
			}
			checkWhole(t, file, tok.(*SentencePiece), text)
			checkBound(t, file, tok, text)
		}
		checkWhole(t, "gguf", sharedSPM(t).(*SentencePiece), text)
		checkBound(t, "gguf", sharedSPM(t), text)
		if strings.Contains(text, "▁") || strings.Contains(text, "<0x") {
			return
		}
		want, _ := loadShared(t, llama2File).Encode(text, true)
		got, err := EncodeWith(sharedSPM(t), text, EncodeOptions{BOS: true})
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(got, want) {
			t.Fatalf("GGUF SentencePiece differs from tokenizer.bin on %q: %s", text, diffIDs(sharedSPM(t), got, want))
		}
	})
}

// FuzzHFEncode: Llama 3 byte-level BPE round-trips exactly (BOS written
// in the text is dropped by Decode), with special tokens as plain text
// always; the hand-written pre-tokenizer agrees with regexp2 running the
// pattern, and the ids agree with tiktoken-go on valid UTF-8 (both except
// for 'ſ', which only the hand-written one folds to 's' as Rust and
// JavaScript regex engines do).
func FuzzHFEncode(f *testing.F) {
	addSeeds(f)
	slow, err := regexSplitter(patternLlama3)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tok := llama3(t)
		ids, err := tok.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, "llama3", tok, text)
		if got, want := tok.Decode(ids), strings.ReplaceAll(text, "<|begin_of_text|>", ""); got != want {
			t.Fatalf("Decode(Encode(%q)): %s", text, diffText(got, want))
		}
		plain, err := tok.EncodeOpts(text, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Decode(plain); got != text {
			t.Fatalf("Decode(EncodeOpts(%q)): %s", text, diffText(got, text))
		}
		if utf8.ValidString(text) {
			if got := strings.Join(streamAll(tok, ids), ""); got != tok.Decode(ids) {
				t.Fatalf("stream %s", diffText(got, tok.Decode(ids)))
			}
		}
		if strings.ContainsRune(text, 'ſ') {
			return
		}
		fast := func(s string, emit func(string)) { splitLlama3(s, 3, emit) }
		if got, want := words(fast, text), words(slow, text); !equalStrings(got, want) {
			t.Fatalf("pre-tokenizer on %q:\n  got  %q\n  want %q", text, got, want)
		}
		if utf8.ValidString(text) {
			want := tiktokenLlama3(t).Encode(text, []string{"all"}, nil)
			got := ids[1:]
			if d := diffIDs(tok, got, want); d != "" {
				t.Fatalf("differs from tiktoken on %q: %s", text, d)
			}
		}
	})
}

// FuzzLoadLlama2C: the tokenizer.bin parser never panics, and whatever
// it accepts encodes and decodes without panicking.
func FuzzLoadLlama2C(f *testing.F) {
	f.Add(makeLlama2C(6, []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "ab"}, []float32{0, 0, 0, -1, -1, -1, -2}), "ab ba")
	f.Add(makeLlama2C(1, []string{"a", "b", "c", "d"}, []float32{0, 0, 0, 0}), "abcd")
	f.Add([]byte{}, "")
	// tokens with spaces inside and at their end, merges across "><"
	f.Add(makeLlama2C(6, []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "a b", "b ", "<0x61>", "><", "ba b"}, []float32{0, 0, 0, -1, -1, -1, -2, -3, -4, -5, -6}), "a b ab  ba b\xff")
	f.Add([]byte{255, 255, 255, 127, 0, 0, 0, 0, 255, 255, 255, 255}, "x")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		tok, err := ParseLlama2C(data)
		if err != nil {
			return
		}
		if tok.VocabSize() < 3 {
			t.Fatalf("accepted a vocabulary of %d tokens", tok.VocabSize())
		}
		ids, err := tok.Encode(text, true)
		if err != nil {
			return // a byte without a byte token in a small vocabulary
		}
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode gave id %d outside the vocabulary of %d", id, tok.VocabSize())
			}
		}
		checkWhole(t, "fuzzed vocabulary", tok, text) // cutting the text where no merge reaches changes nothing
		checkBound(t, "fuzzed vocabulary", tok, text)
		_ = tok.Decode(ids)
		_ = streamAll(tok, ids)
	})
}
