package jobs

import (
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights/tokenizer"
)

// --chat with a Llama 3 tokenizer: the context carries BOS, the user header
// and the document; the query the question, <|eot_id|> and the assistant
// header, as in Star Attention's reference prompts.
func TestChatLlama3(t *testing.T) {
	tok, err := tokenizer.LoadHF(shared.Path(t, "tokenizers/llama3/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Tokenize(tok, Input{Prompt: "The secret word is blue.", Query: "What is the secret word?", HasQuery: true, Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int {
		i, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no token %s", s)
		}
		return i
	}
	bos, sh, eh, eot := id("<|begin_of_text|>"), id("<|start_header_id|>"), id("<|end_header_id|>"), id("<|eot_id|>")
	c, q := got.Context, got.Query
	if bos != 128000 || c[0] != bos || c[1] != sh || c[3] != eh {
		t.Fatalf("context starts %v, want BOS, <|start_header_id|>, user, <|end_header_id|>", c[:4])
	}
	if tok.Decode(c[2:3]) != "user" {
		t.Fatalf("context role %q, want user", tok.Decode(c[2:3]))
	}
	n := len(q)
	if q[n-5] != eot || q[n-4] != sh || tok.Decode(q[n-3:n-2]) != "assistant" || q[n-2] != eh || tok.Decode(q[n-1:]) != "\n\n" {
		t.Fatalf("query ends %v (%q), want <|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n", q[n-5:], tok.Decode(q[n-5:]))
	}
	for _, x := range q {
		if x == bos {
			t.Fatal("BOS in the query: only the context carries it")
		}
	}
	if text := tok.Decode(q); text != "\n\nWhat is the secret word?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" {
		t.Fatalf("query text %q", text)
	}
}

func TestChatLlama2Style(t *testing.T) {
	tok, err := tokenizer.LoadLlama2C(shared.Path(t, "tokenizers/llama2/tokenizer.bin"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Tokenize(tok, Input{Prompt: "Document.\n\nWhat?", Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Context[0] != tok.BOS() || tok.Decode(got.Context) != "[INST] Document.\n\n" {
		t.Fatalf("context %q", tok.Decode(got.Context))
	}
	if _, err := Tokenize(tok, Input{Prompt: "no question here", Chat: true}); err == nil {
		t.Fatal("--chat without a question must fail")
	}
}
