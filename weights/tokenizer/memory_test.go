package tokenizer

import (
	"runtime"
	"testing"
)

// encodeAllocs encodes text once and returns the bytes allocated per input
// byte: everything allocated, the ids returned included, so an upper bound
// on what the encoding holds at once.
func encodeAllocs(t testing.TB, tok Tokenizer, text string) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ids, err := tok.Encode(text, true)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ids)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(len(text))
}

// Tokenizing costs a small multiple of the text's size: its ids (8 bytes
// each) and working memory that does not grow with the text (it cost
// 78-225 bytes per byte when whole texts were merged at once and every
// word allocated its own buffers).
func TestEncodeMemory(t *testing.T) {
	text := benchText(4 << 20)
	for _, c := range []struct {
		file  string
		limit float64 // bytes allocated per input byte
	}{
		{tok512File, 20}, // ~0.75 tokens per byte: 6 bytes of ids per byte
		{llama2File, 12},
		{llama3File, 20}, // its word cache (bounded) included
	} {
		tok := loadShared(t, c.file)
		if b, ok := tok.(*BPE); ok { // measure cache misses, not hits
			b.mu.Lock()
			clear(b.cache)
			b.mu.Unlock()
		}
		tok.Encode("warm up the scratch pools", false)
		got := encodeAllocs(t, tok, text)
		t.Logf("%s: %.1f bytes allocated per input byte", c.file, got)
		if got > c.limit {
			t.Errorf("%s: encoding %d bytes allocated %.1f bytes per byte, more than %.0f", c.file, len(text), got, c.limit)
		}
	}
}
