package tokenizer

import (
	"math/rand"
	"strings"
	"testing"
)

// benchText makes about n bytes of text that looks like prose and code:
// random words (so the word cache does not see the same few words
// only), punctuation, numbers, newlines and some non-Latin text.
func benchText(n int) string {
	rng := rand.New(rand.NewSource(42))
	letters := "etaoinshrdlcumwfgypbvkjxqz"
	extras := []string{", ", ". ", "! ", "? ", "\n", "\n\n", " (", ") ", "; ", " - ", " 42", " 1999", " 3.14", "'s", " don't", " 你好世界", " café", " Привет", " 😀", "\tx = y + 1;\n", " {}", " <tag>"}
	var b strings.Builder
	for b.Len() < n {
		if rng.Intn(6) == 0 {
			b.WriteString(extras[rng.Intn(len(extras))])
			continue
		}
		b.WriteByte(' ')
		l := 1 + rng.Intn(9)
		for i := 0; i < l; i++ {
			// Skewed towards frequent letters.
			b.WriteByte(letters[rng.Intn(1+rng.Intn(len(letters)))])
		}
	}
	return b.String()
}

// BenchmarkHFEncode encodes ~50 KB with the Llama 3 tokenizer.json.
func BenchmarkHFEncode(b *testing.B) {
	tok := llama3(b)
	text := benchText(50_000)
	ids, _ := tok.Encode(text, false)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tok.Encode(text, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ids)), "tokens/op")
}

// BenchmarkHFEncodeNoCache is BenchmarkHFEncode with the word cache
// emptied before each run: the cost on text never seen before.
func BenchmarkHFEncodeNoCache(b *testing.B) {
	tok := llama3(b)
	text := benchText(50_000)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.mu.Lock()
		clear(tok.cache)
		tok.mu.Unlock()
		if _, err := tok.Encode(text, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLlama2CEncode encodes ~50 KB with the Llama 2 tokenizer.bin.
func BenchmarkLlama2CEncode(b *testing.B) {
	tok := loadShared(b, llama2File)
	text := benchText(50_000)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tok.Encode(text, false); err != nil {
			b.Fatal(err)
		}
	}
}
