package jobs

import (
	"fmt"
	"strings"

	"github.com/star-attn/star/weights/tokenizer"
)

// Input is what a user asks: a context (the long document) and a query.
type Input struct {
	Prompt   string // the prompt file's text
	Query    string // the question; "" with HasQuery false: split Prompt
	HasQuery bool
	Chat     bool // wrap in the model's chat format
}

// Tokens are the two separately tokenized parts of a Star Attention prompt.
type Tokens struct {
	Context []int // BOS first
	Query   []int // no BOS
}

// SplitPrompt applies the documented rule for a prompt given without a
// query: the last paragraph (after the last blank line) is the query and
// the rest the context. It returns ok=false for a one-paragraph prompt.
func SplitPrompt(prompt string) (context, query string, ok bool) {
	p := strings.TrimRight(prompt, " \t\r\n")
	i := strings.LastIndex(p, "\n\n")
	if i < 0 {
		return "", "", false
	}
	context, query = p[:i+2], strings.TrimLeft(p[i+2:], "\r\n")
	if strings.TrimSpace(context) == "" || query == "" {
		return "", "", false
	}
	return context, query, true
}

// Tokenize turns an Input into context and query tokens. Context and query
// are tokenized separately and BOS is prepended to the context only. A
// one-paragraph prompt without a query (a plain continuation such as "Once
// upon a time") is tokenized as one sequence whose last token is the query.
func Tokenize(tok tokenizer.Tokenizer, in Input) (Tokens, error) {
	if strings.TrimSpace(in.Prompt) == "" {
		return Tokens{}, fmt.Errorf("the prompt is empty: give a prompt file with the document (and the question in its last paragraph or with --query)")
	}
	ctx, q := in.Prompt, in.Query
	if !in.HasQuery {
		var ok bool
		if ctx, q, ok = SplitPrompt(in.Prompt); !ok {
			if in.Chat {
				return Tokens{}, fmt.Errorf("--chat needs a question: pass --query or put it in the prompt's last paragraph, after a blank line")
			}
			all, err := plain(tok, strings.TrimRight(in.Prompt, "\r\n"), true)
			if err != nil {
				return Tokens{}, err
			}
			if len(all) < 2 {
				return Tokens{}, fmt.Errorf("the prompt has no tokens after BOS")
			}
			return Tokens{Context: all[:len(all)-1], Query: all[len(all)-1:]}, nil
		}
	}
	if strings.TrimSpace(q) == "" {
		return Tokens{}, fmt.Errorf("the query is empty: give a non-empty --query or --query-file")
	}
	c, err := EncodeContext(tok, ctx, in.Chat)
	if err != nil {
		return Tokens{}, err
	}
	qt, err := EncodeQuery(tok, ctx, q, in.Chat)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{Context: c, Query: qt}, nil
}

// Documents and chat queries are plain text: text that spells a special
// token (such as <|eot_id|> or <s>) inside them is encoded as ordinary
// characters, never as the control token, so a document cannot end a turn
// or start a new one. The chat format's own special tokens are added as
// ids. A query without --chat is the user's own prompt and may spell
// special tokens.

// plain encodes text as ordinary characters (with BOS first if bos).
func plain(tok tokenizer.Tokenizer, text string, bos bool) ([]int, error) {
	return tokenizer.EncodeWith(tok, text, tokenizer.EncodeOptions{BOS: bos, ParseSpecial: false})
}

// EncodeContext tokenizes a document (BOS first), in the chat format when
// chat is set.
func EncodeContext(tok tokenizer.Tokenizer, ctx string, chat bool) ([]int, error) {
	if strings.TrimSpace(ctx) == "" {
		return nil, fmt.Errorf("the document is empty")
	}
	var c []int
	var err error
	if chat {
		c, err = chatFormat(tok).context(tok, ctx)
	} else {
		c, err = plain(tok, ctx, true)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenize context: %w", err)
	}
	return c, nil
}

// EncodeQuery tokenizes a query (no BOS) asked about document ctx, in the
// chat format when chat is set.
func EncodeQuery(tok tokenizer.Tokenizer, ctx, q string, chat bool) ([]int, error) {
	return EncodeQueryAnswer(tok, ctx, q, "", chat)
}

// EncodeQueryAnswer is EncodeQuery with the start of the answer given
// (RULER's answer prefixes, such as " Answer:"): plain, the prefix follows
// the query's text; in the chat format, it follows the assistant header,
// where the model's answer begins. The prefix is encoded as the query is.
func EncodeQueryAnswer(tok tokenizer.Tokenizer, ctx, q, prefix string, chat bool) ([]int, error) {
	if strings.TrimSpace(q) == "" {
		return nil, fmt.Errorf("the query is empty: give a non-empty --query or --query-file")
	}
	var qt []int
	var err error
	if chat {
		qt, err = chatFormat(tok).query(tok, ctx, q, prefix)
	} else {
		qt, err = tok.Encode(q+prefix, false)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenize query: %w", err)
	}
	if len(qt) == 0 {
		return nil, fmt.Errorf("the query tokenizes to nothing")
	}
	return qt, nil
}

// chat is a chat format as the reference prompts of Star Attention use
// it: the context carries BOS, the headers and the start of the user
// message; the query carries the question, the end of the turn and the
// assistant header. Its pieces are special tokens (by their text in the
// vocabulary) and plain text.
type chat struct {
	ctxHead   []piece // before the document
	queryTail []piece // after the question
}

// piece is a special token (special set) or plain text.
type piece struct {
	text    string
	special bool
}

// llama3Chat is Llama 3's format; llama2Chat is [INST] … [/INST] (BOS from
// the tokenizer) for vocabularies without Llama 3's header tokens.
var (
	llama3Chat = chat{
		ctxHead: []piece{{"<|begin_of_text|>", true}, {"<|start_header_id|>", true}, {"user", false},
			{"<|end_header_id|>", true}, {"\n\n", false}},
		queryTail: []piece{{"<|eot_id|>", true}, {"<|start_header_id|>", true}, {"assistant", false},
			{"<|end_header_id|>", true}, {"\n\n", false}},
	}
	llama2Chat = chat{ctxHead: []piece{{"[INST] ", false}}, queryTail: []piece{{" [/INST]", false}}}
)

// chatFormat is the format for tok's vocabulary.
func chatFormat(tok tokenizer.Tokenizer) chat {
	_, hdr := tok.TokenID("<|start_header_id|>")
	_, eot := tok.TokenID("<|eot_id|>")
	if hdr && eot {
		return llama3Chat
	}
	return llama2Chat
}

// context is the document in the chat format: the head's pieces with the
// document as plain text after the head's last text piece.
func (f chat) context(tok tokenizer.Tokenizer, doc string) ([]int, error) {
	ps := append([]piece(nil), f.ctxHead...)
	last := &ps[len(ps)-1]
	last.text += doc // the document continues the head's last text
	bos := !ps[0].special
	return encodePieces(tok, ps, bos)
}

// query is the question in the chat format, after document ctx, with
// the start of the answer (prefix) after the assistant's header.
func (f chat) query(tok tokenizer.Tokenizer, ctx, q, prefix string) ([]int, error) {
	sep := ""
	if !strings.HasSuffix(ctx, "\n") {
		sep = "\n\n"
	}
	ps := append([]piece{{sep + strings.TrimSpace(q), false}}, f.queryTail...)
	if !ps[1].special { // text after the question: one text piece
		ps = append([]piece{{ps[0].text + ps[1].text, false}}, ps[2:]...)
	}
	if prefix != "" {
		if last := &ps[len(ps)-1]; !last.special {
			last.text += prefix
		} else {
			ps = append(ps, piece{prefix, false})
		}
	}
	return encodePieces(tok, ps, false)
}

// encodePieces encodes special pieces as their ids and text pieces as
// plain text, in order; bos prepends BOS to the first text piece.
func encodePieces(tok tokenizer.Tokenizer, ps []piece, bos bool) ([]int, error) {
	var ids []int
	for i, p := range ps {
		if p.special {
			id, ok := tok.TokenID(p.text)
			if !ok {
				return nil, fmt.Errorf("the vocabulary has no %s token for the chat format", p.text)
			}
			ids = append(ids, id)
			continue
		}
		t, err := plain(tok, p.text, bos && i == 0)
		if err != nil {
			return nil, err
		}
		ids = append(ids, t...)
	}
	return ids, nil
}

// MaxContextBytes is the largest text, in bytes, that could still fit in
// seqLen tokens: a token stands for at most tokenizer.MaxTokenBytes bytes,
// so a longer text needs more tokens however it is tokenized. It lets
// callers refuse an input before reading or tokenizing it.
func MaxContextBytes(tok tokenizer.Tokenizer, seqLen int) int64 {
	if seqLen <= 0 {
		return 0
	}
	return int64(seqLen) * int64(tokenizer.MaxTokenBytes(tok))
}

// TooLong is the refusal of a text of n bytes (what names it) that cannot
// fit room tokens whatever its tokenization, or nil; seqLen is the
// model's context length, room what is left of it for the text (less
// BOS, a query). With more, n is only what was read so far (a stream).
func TooLong(tok tokenizer.Tokenizer, what string, n int64, more bool, room, seqLen int) error {
	limit := MaxContextBytes(tok, room)
	if n <= limit {
		return nil
	}
	l := int64(tokenizer.MaxTokenBytes(tok))
	size := fmt.Sprintf("is %d bytes", n)
	if more {
		size = fmt.Sprintf("is more than %d bytes", n-1)
	}
	return fmt.Errorf("%s %s: even at %d bytes per token (the tokenizer's longest token) that is at least %d tokens, more than fit in the model's context length %d; shorten it to at most %d bytes, or pass --context-length if the model supports more",
		what, size, l, (n+l-1)/l, seqLen, limit)
}

// CheckInputSize refuses, before tokenizing, an input whose text cannot
// fit the context: with BOS, the prompt and query need at least
// 1 + (their bytes) / MaxTokenBytes tokens.
func CheckInputSize(tok tokenizer.Tokenizer, in Input, seqLen int) error {
	what := "the prompt"
	if in.HasQuery {
		what = "the prompt and query"
	}
	return TooLong(tok, what, int64(len(in.Prompt)+len(in.Query)), false, seqLen-1, seqLen)
}

// encodeContext is EncodeContext for a document of this engine's model:
// a document that cannot fit the context is refused before tokenizing.
func (e *Engine) encodeContext(text string, chat bool) ([]int, error) {
	if err := TooLong(e.Tok, "the document", int64(len(text)), false, e.M.Cfg.SeqLen-2, e.M.Cfg.SeqLen); err != nil {
		return nil, err
	}
	return EncodeContext(e.Tok, text, chat)
}
