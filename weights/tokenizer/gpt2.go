package tokenizer

import (
	"fmt"
)

// NewGPT2BPE builds a byte-level BPE tokenizer from a GGUF "gpt2"
// vocabulary: tokens in GPT-2 byte-to-unicode form ("Ġ" for a space),
// merges as "left right" lines in priority order (tokenizer.ggml.merges),
// types the GGUF token types (nil: all normal), bos/eos ids (-1 for none)
// and pre the pre-tokenizer name (tokenizer.ggml.pre).
//
// Supported pre values: "llama-bpe"/"llama3" (Llama 3's regex; a word that
// is a token as a whole is that token, as llama.cpp does), "qwen2", and
// "default"/"gpt2"/"" (the GPT-2 regex; llama.cpp's "default" uses a
// slightly different set of regexes, which agree on ordinary text).
//
// Control (3) and unknown (2) tokens are special tokens, recognised in the
// text by Encode; user-defined (4) tokens are always recognised; both
// decode to their text as written.
func NewGPT2BPE(tokens []string, merges []string, types []int32, bos, eos int, pre string) (Tokenizer, error) {
	n := len(tokens)
	if n == 0 {
		return nil, fmt.Errorf("gpt2 vocabulary is empty: pass the tokenizer.ggml.tokens array")
	}
	if types != nil && len(types) != n {
		return nil, fmt.Errorf("gpt2 vocabulary has %d tokens but %d token types; the two arrays must have the same length", n, len(types))
	}
	if bos < -1 || bos >= n || eos < -1 || eos >= n {
		return nil, fmt.Errorf("gpt2 vocabulary has %d tokens but bos=%d, eos=%d; use ids in range or -1 for none", n, bos, eos)
	}
	var pattern string
	ignore := false
	switch pre {
	case "llama-bpe", "llama3":
		pattern, ignore = patternLlama3, true
	case "qwen2":
		pattern = patternQwen2
	case "", "default", "gpt2", "gpt-2":
		pattern = patternGPT2
	default:
		return nil, fmt.Errorf("gpt2 pre-tokenizer %q (tokenizer.ggml.pre) is not supported; supported: llama-bpe, llama3, qwen2, default, gpt2", pre)
	}
	split, err := splitterFor(pattern)
	if err != nil {
		return nil, err
	}
	sp := bpeSpec{
		kind:   "gpt2",
		size:   n,
		tokens: make(map[int]string, n),
		added:  map[int]string{},
		ctrl:   map[int]bool{},
		split:  split,
		ignore: ignore,
		bos:    bos,
	}
	for id, tok := range tokens {
		t := int32(TypeNormal)
		if types != nil {
			t = types[id]
		}
		switch t {
		case TypeControl, TypeUnknown:
			sp.added[id] = tok
			sp.ctrl[id] = true
		case TypeUserDefined:
			sp.added[id] = tok
		default:
			sp.tokens[id] = tok
		}
	}
	for i, line := range merges {
		m, ok := parseMerge(line)
		if !ok {
			return nil, fmt.Errorf("gpt2 merge %d is %q, expected two tokens separated by one space", i, line)
		}
		sp.merges = append(sp.merges, m)
	}
	sp.eos = endIDs(eos, func(text string) (int, bool) {
		for id, tok := range tokens {
			if tok == text && sp.ctrl[id] {
				return id, true
			}
		}
		return 0, false
	})
	t, err := newBPE(sp)
	if err != nil {
		return nil, fmt.Errorf("gpt2 vocabulary: %w", err)
	}
	return t, nil
}
