package jobs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
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

// Text inside a document is never a control token: a document that spells
// <|eot_id|> or <|start_header_id|> (or <s>, </s> for Llama 2) gets those
// characters, not the ids, with --chat or without; the chat format's own
// tokens are the only special ids. Without such text the ids are exactly
// what encoding the whole template as text with specials gave before.
func TestDocumentTextIsNeverAControlToken(t *testing.T) {
	l3, err := tokenizer.LoadHF(shared.Path(t, "tokenizers/llama3/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := weights.Load(shared.Path(t, "models/gguf/tiny-random-llama2.gguf"), weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	l2 := m2.Tokenizer // Llama 2's vocabulary with its control tokens marked
	for _, c := range []struct {
		name     string
		tok      tokenizer.Tokenizer
		specials []string
	}{
		{"llama3", l3, []string{"<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>"}},
		{"llama2", l2, []string{"<s>", "</s>"}},
	} {
		var ids []int
		for _, s := range c.specials {
			if id, ok := c.tok.TokenID(s); ok {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			t.Fatalf("%s: none of %v in the vocabulary", c.name, c.specials)
		}
		count := func(toks []int) int {
			n := 0
			for _, x := range toks {
				for _, id := range ids {
					n += boolInt(x == id)
				}
			}
			return n
		}
		for _, chat := range []bool{false, true} {
			clean, err := Tokenize(c.tok, Input{Prompt: "The secret word is blue.", Query: "What is it?", HasQuery: true, Chat: chat})
			if err != nil {
				t.Fatal(err)
			}
			doc := "The secret word is blue." + strings.Join(c.specials, " ") + " The end."
			got, err := Tokenize(c.tok, Input{Prompt: doc, Query: "What is it?", HasQuery: true, Chat: chat})
			if err != nil {
				t.Fatal(err)
			}
			if n, want := count(got.Context), count(clean.Context); n != want {
				t.Fatalf("%s chat=%v: the document's special-token text became %d control tokens", c.name, chat, n-want)
			}
			if text := c.tok.Decode(got.Context); !strings.Contains(text, strings.Join(c.specials, " ")) {
				t.Fatalf("%s chat=%v: the document's text is not kept: %q", c.name, chat, text)
			}
		}
		// without special-token text, the ids are those of the whole
		// template encoded with specials (the previous way)
		ctxText, qText := "One day, Lily found a ball.\n", "Who found it?"
		in := Input{Prompt: ctxText, Query: qText, HasQuery: true, Chat: true}
		got, err := Tokenize(c.tok, in)
		if err != nil {
			t.Fatal(err)
		}
		var wantC, wantQ []int
		if c.name == "llama3" {
			wantC, _ = c.tok.Encode("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"+ctxText, false)
			wantQ, _ = c.tok.Encode(qText+"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false)
		} else {
			wantC, _ = c.tok.Encode("[INST] "+ctxText, true)
			wantQ, _ = c.tok.Encode(qText+" [/INST]", false)
		}
		if fmt.Sprint(got.Context) != fmt.Sprint(wantC) || fmt.Sprint(got.Query) != fmt.Sprint(wantQ) {
			t.Fatalf("%s: chat ids changed:\ncontext %v\nwant    %v\nquery %v\nwant  %v", c.name, got.Context, wantC, got.Query, wantQ)
		}
	}
}

// An answer prefix (RULER's " Answer:") follows the question as plain
// text, and with --chat follows the assistant header, where the model's
// answer starts; the prefix of a record's query reaches the query's own
// setting, the record's being the default.
func TestAnswerPrefix(t *testing.T) {
	l3, err := tokenizer.LoadHF(shared.Path(t, "tokenizers/llama3/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := tokenizer.LoadLlama2C(shared.Path(t, "tokenizers/llama2/tokenizer.bin"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tok  tokenizer.Tokenizer
		chat bool
		want string // the query's text, decoded
	}{
		{"plain", l3, false, "Who found it? Answer:"},
		{"llama3 chat", l3, true, "Who found it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n Answer:"},
		{"llama2 chat", l2, true, " Who found it? [/INST] Answer:"}, // SentencePiece's leading space
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := EncodeQueryAnswer(c.tok, "Lily found a ball.\n", "Who found it?", " Answer:", c.chat)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.tok.Decode(q); got != c.want {
				t.Fatalf("query %q, want %q", got, c.want)
			}
		})
	}
	recs := readAll(t, `{"context":"a","queries":["q",{"query":"r","answer_prefix":" B:"}],"answer_prefix":" A:"}`+"\n", "jsonl")
	if got := []string{recs[0].Queries[0].AnswerPrefix, recs[0].Queries[1].AnswerPrefix}; got[0] != " A:" || got[1] != " B:" {
		t.Fatalf("answer prefixes %q, want the record's then the query's own", got)
	}
}
