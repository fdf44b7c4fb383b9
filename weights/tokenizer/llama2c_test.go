package tokenizer

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

func TestLlama2CBasics(t *testing.T) {
	for _, c := range []struct {
		file string
		size int
	}{{tok512File, 512}, {llama2File, 32000}} {
		tok := loadShared(t, c.file)
		if tok.Kind() != "llama2c" || tok.VocabSize() != c.size || tok.BOS() != 1 || !equalInts(tok.EOS(), []int{2}) {
			t.Errorf("%s: Kind %q VocabSize %d BOS %d EOS %v", c.file, tok.Kind(), tok.VocabSize(), tok.BOS(), tok.EOS())
		}
		if id, ok := tok.TokenID(" "); !ok || tok.Decode([]int{id}) != " " {
			t.Errorf("%s: no ' ' token", c.file)
		}
		// Byte tokens decode to their byte; the space strip after BOS does
		// not apply to <0x20>.
		if got := string(tok.Piece(1, 0x20+3)); got != " " {
			t.Errorf("%s: Piece(BOS, <0x20>) = %q", c.file, got)
		}
		if got := string(tok.Piece(-1, 2)); got != "\n</s>\n" {
			t.Errorf("%s: EOS piece = %q (run.c prints the stored text)", c.file, got)
		}
	}
}

// makeLlama2C writes a tokenizer.bin of tokens with scores.
func makeLlama2C(maxLen int32, tokens []string, scores []float32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(maxLen))
	for i, tok := range tokens {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(scores[i]))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(tok)))
		b = append(b, tok...)
	}
	return b
}

func TestLlama2CSmall(t *testing.T) {
	// A hand-made vocabulary: merges by score, leftmost on ties.
	tokens := []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "ab", " a", "ba", " ab"}
	scores := []float32{0, 0, 0, -1, -1, -1, -2, -3, -2, -1}
	tok, err := ParseLlama2C(makeLlama2C(6, tokens, scores))
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string][]int{
		"ab":  {9},       // " a"(-3) vs "ab"(-2): ab first, then " ab"
		"aba": {9, 4},    // "ab" and "ba" tie at -2: the leftmost merges
		"bab": {3, 8, 5}, // " b" is no token; "ba" then "ab" cannot merge
		"":    {},
	} {
		got, err := tok.Encode(text, false)
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", text, got, want)
		}
	}
	// A character without a token and without byte tokens (the vocabulary
	// has 10 tokens, so only bytes 0..6 have an id byte+3) is an error.
	if _, err := tok.Encode("é", false); err == nil {
		t.Error("no error for a byte without a byte token")
	}
}

// TestLoadLlama2CCorrupt: truncated and corrupt files give errors naming
// the token, never a panic.
func TestLoadLlama2CCorrupt(t *testing.T) {
	data, err := os.ReadFile(shared.Path(t, tok512File))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseLlama2C(data); err != nil {
		t.Fatal(err)
	}
	// Every truncation either ends on a record boundary (a valid, smaller
	// vocabulary) or is an error that names a token.
	for n := 0; n < len(data); n++ {
		tok, err := ParseLlama2C(data[:n])
		if err == nil {
			if tok.VocabSize() >= 512 {
				t.Fatalf("prefix of %d bytes parsed as the whole vocabulary", n)
			}
			continue
		}
		if n > 4 && !strings.Contains(err.Error(), "token") {
			t.Fatalf("prefix of %d bytes: error does not name the token: %v", n, err)
		}
	}
	// A length field that is negative, larger than max_token_length, or
	// runs past the end of the file.
	for _, bad := range []int32{-1, 8, 1 << 30} {
		b := append([]byte(nil), data...)
		// Token 0 record: score at 4, length at 8.
		binary.LittleEndian.PutUint32(b[8:], uint32(bad))
		_, err := ParseLlama2C(b)
		if err == nil || !strings.Contains(err.Error(), "token 0") {
			t.Errorf("length %d: error %v does not name token 0", bad, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"short header":    {1, 2},
		"zero max length": make([]byte, 4),
		"header only":     {7, 0, 0, 0},
		"two tokens":      makeLlama2C(3, []string{"a", "b"}, []float32{0, 0}),
	} {
		if _, err := ParseLlama2C(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// LoadLlama2C names the file.
	p := filepath.Join(t.TempDir(), "tokenizer.bin")
	if err := os.WriteFile(p, data[:101], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLlama2C(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("LoadLlama2C of a truncated file: %v", err)
	}
	if _, err := LoadLlama2C(filepath.Join(t.TempDir(), "missing.bin")); err == nil {
		t.Error("missing file: no error")
	}
}
