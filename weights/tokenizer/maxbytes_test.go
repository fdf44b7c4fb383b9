package tokenizer

import (
	"strings"
	"testing"
)

// checkBound fails when text encodes to fewer tokens than the bound
// MaxTokenBytes promises: ceil(bytes / MaxTokenBytes).
func checkBound(t testing.TB, name string, tok Tokenizer, text string) {
	t.Helper()
	l := MaxTokenBytes(tok)
	for _, opts := range []EncodeOptions{{ParseSpecial: true}, {}} {
		ids, err := EncodeWith(tok, text, opts)
		if err != nil {
			return // a vocabulary that cannot spell the text
		}
		if need := (len(text) + l - 1) / l; len(ids) < need {
			t.Fatalf("%s: %q (%d bytes) encodes to %d tokens, fewer than %d = ceil(bytes / MaxTokenBytes %d)", name, text, len(text), len(ids), need, l)
		}
	}
}

// Every text needs at least ceil(bytes / MaxTokenBytes) tokens: on the
// shared vocabularies, on text made of their longest tokens (written with
// spaces and with '▁'), on special tokens written out, and on small
// vocabularies made to be awkward.
func TestMaxTokenBytes(t *testing.T) {
	toks := map[string]Tokenizer{
		tok512File: loadShared(t, tok512File),
		llama2File: loadShared(t, llama2File),
		llama3File: loadShared(t, llama3File),
		"gguf":     sharedSPM(t),
	}
	odd, err := ParseLlama2C(makeLlama2C(9, []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "a b", "a b a b", "<0x61>"}, []float32{0, 0, 0, -1, -1, -1, -2, -3, -4}))
	if err != nil {
		t.Fatal(err)
	}
	toks["odd"] = odd
	if got := MaxTokenBytes(odd); got != 7 {
		t.Errorf("MaxTokenBytes of a vocabulary whose longest token is \"a b a b\" = %d, want 7", got)
	}
	for name, tok := range toks {
		l := MaxTokenBytes(tok)
		if l < 1 {
			t.Fatalf("%s: MaxTokenBytes %d", name, l)
		}
		// the longest tokens, repeated
		var longest []string
		for id := 0; id < tok.VocabSize(); id++ {
			if p := tok.Piece(-1, id); len(p) >= l-2 {
				longest = append(longest, string(p))
			}
		}
		texts := append([]string{benchText(50_000), strings.Join(longest, ""), strings.Repeat(strings.Join(longest, " "), 3),
			strings.ReplaceAll(strings.Join(longest, ""), " ", "▁"), strings.Repeat("▁", 200), strings.Repeat(" ", 200),
			strings.Repeat("<|begin_of_text|><|reserved_special_token_250|>", 20), strings.Repeat("<s></s><unk>", 20)}, corpus...)
		for _, text := range texts {
			checkBound(t, name, tok, text)
		}
		t.Logf("%s: MaxTokenBytes %d", name, l)
	}
}
