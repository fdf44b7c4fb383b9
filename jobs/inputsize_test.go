package jobs

import (
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights/tokenizer"
)

// An input is refused before tokenizing exactly when its bytes cannot fit
// the context at any tokenization; one byte less is tokenized (and then
// may still be refused on its real token count).
func TestInputSizeBound(t *testing.T) {
	tok, err := tokenizer.LoadLlama2C(shared.Path(t, "models/stories260K/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	l := int64(tokenizer.MaxTokenBytes(tok))
	const seqLen = 512
	if got := MaxContextBytes(tok, seqLen); got != seqLen*l {
		t.Fatalf("MaxContextBytes = %d, want %d tokens x %d bytes", got, seqLen, l)
	}
	if MaxContextBytes(tok, 0) != 0 || MaxContextBytes(tok, -3) != 0 {
		t.Fatal("MaxContextBytes of no tokens is not 0")
	}
	limit := (seqLen - 1) * l // BOS takes one token
	cases := []struct {
		name   string
		in     Input
		refuse bool
	}{
		{"prompt at the limit", Input{Prompt: strings.Repeat("a", int(limit))}, false},
		{"prompt one byte over", Input{Prompt: strings.Repeat("a", int(limit)+1)}, true},
		{"prompt and query over together", Input{Prompt: strings.Repeat("a", int(limit)-5), Query: "123456", HasQuery: true}, true},
		{"prompt and query at the limit", Input{Prompt: strings.Repeat("a", int(limit)-6), Query: "123456", HasQuery: true}, false},
		{"5 MB", Input{Prompt: strings.Repeat("once upon a time ", 5<<20/17)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckInputSize(tok, c.in, seqLen)
			if (err != nil) != c.refuse {
				t.Fatalf("refused: %v, want %v", err, c.refuse)
			}
			if err != nil && (!strings.Contains(err.Error(), "context length 512") || !strings.Contains(err.Error(), "bytes")) {
				t.Fatalf("message %q does not give the context length and the size", err)
			}
			if !c.refuse {
				// the bound is a bound: the accepted text really needs at
				// least that many tokens (here: it fits or is refused later)
				ids, _ := tok.Encode(c.in.Prompt+c.in.Query, true)
				if int64(len(ids)-1)*l < int64(len(c.in.Prompt+c.in.Query)) {
					t.Fatalf("%d tokens of at most %d bytes cannot hold %d bytes", len(ids)-1, l, len(c.in.Prompt+c.in.Query))
				}
			}
		})
	}
	if err := TooLong(tok, "the document", 1<<20, true, 100, 102); err == nil || !strings.Contains(err.Error(), "more than 1048575 bytes") {
		t.Fatalf("a stream over the limit: %v", err)
	}
}
