package tokenizer

import (
	"testing"
)

// TestReferenceCases checks every case of shared/reference/
// tokenizer_cases.json: the text must encode exactly to ids (no BOS) and
// decode back to the text.
func TestReferenceCases(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.TokenizerFile+"/"+c.Name, func(t *testing.T) {
			tok := loadShared(t, c.TokenizerFile)
			got, err := tok.Encode(c.Text, false)
			if err != nil {
				t.Fatalf("Encode(%q): %v", c.Text, err)
			}
			if d := diffIDs(tok, got, c.IDs); d != "" {
				t.Errorf("Encode(%q): %s", c.Text, d)
			}
			checkDecode(t, tok, c.Text, c.IDs)
			if c.IDsPlain != nil {
				plain, err := EncodeWith(tok, c.Text, EncodeOptions{ParseSpecial: false})
				if err != nil {
					t.Fatalf("EncodeWith(ParseSpecial=false): %v", err)
				}
				if d := diffIDs(tok, plain, c.IDsPlain); d != "" {
					t.Errorf("Encode(%q) with special tokens as plain text: %s", c.Text, d)
				}
				checkDecode(t, tok, c.Text, c.IDsPlain)
			}
		})
	}
}

// checkDecode checks that ids (encoded without BOS) decode to text. The
// SentencePiece-style tokenizers drop their dummy prefix space only after
// BOS, so there BOS is put in front first, and without it the decoded text
// is " " + text.
func checkDecode(t *testing.T, tok Tokenizer, text string, ids []int) {
	t.Helper()
	if _, ok := tok.(*SentencePiece); ok && text != "" {
		if got := tok.Decode(append([]int{tok.BOS()}, ids...)); got != text {
			t.Errorf("Decode(BOS + ids): %s", diffText(got, text))
		}
		if got := tok.Decode(ids); got != " "+text {
			t.Errorf("Decode(ids) without BOS keeps the dummy prefix: %s", diffText(got, " "+text))
		}
		return
	}
	if got := tok.Decode(ids); got != text {
		t.Errorf("Decode(ids): %s", diffText(got, text))
	}
}
