// Package tokenizer turns text into token ids and back for the vocabularies
// Llama-family checkpoints ship with: llama2.c tokenizer.bin, GGUF
// vocabularies (SentencePiece-style "llama" and byte-level BPE "gpt2"),
// and Hugging Face tokenizer.json byte-level BPE as used by Llama 3.
package tokenizer

import "fmt"

// Tokenizer encodes and decodes text for one vocabulary.
type Tokenizer interface {
	// Encode returns the ids of text. With bos, the BOS id is prepended.
	// Special tokens written in the text (such as <|eot_id|>) are
	// recognised as single ids where the vocabulary has them.
	Encode(text string, bos bool) ([]int, error)
	// Decode returns the text of ids (special/control tokens are
	// rendered by their text, BOS is dropped).
	Decode(ids []int) string
	// Piece returns the raw bytes id decodes to when it follows prev
	// (prev matters for llama2.c's "strip the space after BOS" rule).
	// It may be an incomplete UTF-8 sequence (byte-fallback tokens).
	Piece(prev, id int) []byte
	// VocabSize is the number of ids.
	VocabSize() int
	// BOS is the beginning-of-sequence id, or -1 if there is none.
	BOS() int
	// EOS lists every id that ends generation (eos, eot, eom).
	EOS() []int
	// TokenID looks up the id of a token string (e.g. "<|eot_id|>").
	TokenID(s string) (int, bool)
	// Kind names the tokenizer family ("llama2c", "spm", "gpt2", "hf-bpe").
	Kind() string
}

// EncodeOptions controls EncodeOpts.
type EncodeOptions struct {
	// BOS prepends the beginning-of-sequence id (when the vocabulary has one).
	BOS bool
	// ParseSpecial recognises special/control tokens written in the text
	// (such as <|eot_id|> or <s>) as their single ids. Encode does this;
	// leave it false for untrusted text so that a user cannot inject
	// control tokens: the text is then tokenized as ordinary characters.
	// User-defined (non-special) added tokens are always recognised.
	ParseSpecial bool
}

// OptionsEncoder is implemented by every tokenizer of this package.
type OptionsEncoder interface {
	EncodeOpts(text string, opts EncodeOptions) ([]int, error)
}

// EncodeWith encodes text with opts. Tokenizers that do not implement
// OptionsEncoder can only honour ParseSpecial = true (what Encode does);
// for them a request to treat special tokens as plain text is an error.
func EncodeWith(t Tokenizer, text string, opts EncodeOptions) ([]int, error) {
	if oe, ok := t.(OptionsEncoder); ok {
		return oe.EncodeOpts(text, opts)
	}
	if !opts.ParseSpecial {
		return nil, fmt.Errorf("tokenizer %q (%T) cannot encode special tokens as plain text; use a tokenizer from package tokenizer", t.Kind(), t)
	}
	return t.Encode(text, opts.BOS)
}

// Every tokenizer of the package implements both interfaces.
var (
	_ Tokenizer      = (*SentencePiece)(nil)
	_ Tokenizer      = (*BPE)(nil)
	_ OptionsEncoder = (*SentencePiece)(nil)
	_ OptionsEncoder = (*BPE)(nil)
)

// Token types, as GGUF's tokenizer.ggml.token_type and llama.cpp use them.
const (
	TypeUndefined   = 0
	TypeNormal      = 1
	TypeUnknown     = 2
	TypeControl     = 3
	TypeUserDefined = 4
	TypeUnused      = 5
	TypeByte        = 6
)

// endTokenTexts are the texts of tokens that end a turn or a document in
// the common chat vocabularies; EOS() lists those a vocabulary has, next
// to its declared eos id.
var endTokenTexts = []string{
	"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", // Llama 3
	"<|im_end|>", "<|endoftext|>", // ChatML / Qwen / GPT-2
	"<end_of_turn>", // Gemma
}

// endIDs returns eos (when >= 0) followed by the ids of endTokenTexts that
// lookup finds, without duplicates.
func endIDs(eos int, lookup func(string) (int, bool)) []int {
	var out []int
	add := func(id int) {
		if id < 0 {
			return
		}
		for _, x := range out {
			if x == id {
				return
			}
		}
		out = append(out, id)
	}
	add(eos)
	for _, s := range endTokenTexts {
		if id, ok := lookup(s); ok {
			add(id)
		}
	}
	return out
}

// MaxTokenBytes is the most bytes of text one token of t can stand for
// (its longest piece, special tokens included), at least 1. A text of B
// bytes therefore needs at least ceil(B / MaxTokenBytes(t)) tokens, for
// every tokenizer of this package: none of them normalizes text into
// fewer bytes, and a token covers at most its piece (prefix spaces only
// add bytes). Callers use it to refuse, before tokenizing, a text that
// cannot fit a context.
func MaxTokenBytes(t Tokenizer) int {
	if m, ok := t.(interface{ maxTokenBytes() int }); ok {
		return max(m.maxTokenBytes(), 1)
	}
	n := 1
	for id := 0; id < t.VocabSize(); id++ {
		n = max(n, len(t.Piece(-1, id)))
	}
	for _, s := range []string{"<|begin_of_text|>", "<s>"} { // specials written in text
		if _, ok := t.TokenID(s); ok {
			n = max(n, len(s))
		}
	}
	return n
}

// reserve makes room for n more ids in out, doubling its capacity when it
// must grow: append grows large slices by only a quarter, which for the
// ids of a long text means copying them again and again.
func reserve(out []int, n int) []int {
	if cap(out)-len(out) >= n {
		return out
	}
	grown := make([]int, len(out), max(2*cap(out), len(out)+n))
	copy(grown, out)
	return grown
}
