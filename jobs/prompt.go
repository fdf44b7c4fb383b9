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
			all, err := tok.Encode(strings.TrimRight(in.Prompt, "\r\n"), true)
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

// EncodeContext tokenizes a document (BOS first), in the chat format when
// chat is set.
func EncodeContext(tok tokenizer.Tokenizer, ctx string, chat bool) ([]int, error) {
	if strings.TrimSpace(ctx) == "" {
		return nil, fmt.Errorf("the document is empty")
	}
	if chat {
		ctx, _ = chatWrap(tok, ctx, "")
	}
	special := chat && strings.HasPrefix(ctx, "<|begin_of_text|>")
	c, err := tok.Encode(ctx, !special)
	if err != nil {
		return nil, fmt.Errorf("tokenize context: %w", err)
	}
	if special && (len(c) == 0 || c[0] != tok.BOS()) {
		return nil, fmt.Errorf("chat context does not start with BOS after tokenization")
	}
	return c, nil
}

// EncodeQuery tokenizes a query (no BOS) asked about document ctx, in the
// chat format when chat is set.
func EncodeQuery(tok tokenizer.Tokenizer, ctx, q string, chat bool) ([]int, error) {
	if strings.TrimSpace(q) == "" {
		return nil, fmt.Errorf("the query is empty: give a non-empty --query or --query-file")
	}
	if chat {
		_, q = chatWrap(tok, ctx, q)
	}
	qt, err := tok.Encode(q, false)
	if err != nil {
		return nil, fmt.Errorf("tokenize query: %w", err)
	}
	if len(qt) == 0 {
		return nil, fmt.Errorf("the query tokenizes to nothing")
	}
	return qt, nil
}

// chatWrap applies the model's chat format the way Star Attention's
// reference prompts do: the context carries BOS, the headers and the start
// of the user message; the query carries the question, the end of the turn
// and the assistant header. Llama 3 tokenizers (with <|start_header_id|>)
// get Llama 3's format, others Llama 2's [INST] … [/INST].
func chatWrap(tok tokenizer.Tokenizer, ctx, q string) (string, string) {
	sep := ""
	if !strings.HasSuffix(ctx, "\n") {
		sep = "\n\n"
	}
	_, hdr := tok.TokenID("<|start_header_id|>")
	_, eot := tok.TokenID("<|eot_id|>")
	if hdr && eot {
		return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + ctx,
			sep + strings.TrimSpace(q) + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	}
	// Llama 2 style: BOS is added by the tokenizer call.
	return "[INST] " + ctx, sep + strings.TrimSpace(q) + " [/INST]"
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
