package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dlclark/regexp2"
)

// hfTokenizer is the part of a Hugging Face tokenizer.json we read.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type                    string          `json:"type"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	} `json:"model"`
}

// hfPreTokenizer is one node of the pre_tokenizer tree.
type hfPreTokenizer struct {
	Type          string           `json:"type"`
	PreTokenizers []hfPreTokenizer `json:"pretokenizers"`
	Pattern       struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	UseRegex       bool   `json:"use_regex"`
}

// LoadHF reads a Hugging Face tokenizer.json holding a byte-level BPE
// model (GPT-2, Llama 3 and most newer models). Supported pre-tokenizers:
// ByteLevel, Split (Regex or String, behaviour Isolated) and a Sequence of
// them. Added tokens are matched in the text before BPE: those with
// special=true only by Encode (not by EncodeOpts without ParseSpecial).
//
// BOS and EOS come from tokenizer_config.json beside the file when present
// (bos_token, eos_token), else BOS is <|begin_of_text|> when the
// vocabulary has it. EOS() lists eos_token, the eos_token_id of a
// generation_config.json beside the file, and the end-of-turn tokens the
// vocabulary has (<|eot_id|>, <|eom_id|>, <|end_of_text|>, ...).
func LoadHF(path string) (Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json %s: %w", path, err)
	}
	var f hfTokenizer
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json %s is not valid JSON of a Hugging Face tokenizer: %w", path, err)
	}
	t, err := buildHF(&f, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json %s: %w", path, err)
	}
	return t, nil
}

func buildHF(f *hfTokenizer, dir string) (*BPE, error) {
	split, prefix, err := hfCheck(f)
	if err != nil {
		return nil, err
	}
	sp := bpeSpec{
		kind:   "hf-bpe",
		tokens: make(map[int]string, len(f.Model.Vocab)),
		added:  map[int]string{},
		ctrl:   map[int]bool{},
		split:  split,
		prefix: prefix,
		ignore: f.Model.IgnoreMerges,
	}
	if err := hfVocab(&sp, f); err != nil {
		return nil, err
	}
	if sp.merges, err = hfMerges(f.Model.Merges); err != nil {
		return nil, err
	}
	if err := hfEnds(&sp, f.Model.Vocab, dir); err != nil {
		return nil, err
	}
	return newBPE(sp)
}

// hfCheck refuses what is not byte-level BPE and returns the
// pre-tokenizer's splitter and whether it adds a prefix space.
func hfCheck(f *hfTokenizer) (split splitter, prefix bool, err error) {
	m := &f.Model
	if m.Type != "BPE" {
		return nil, false, fmt.Errorf("model type %q is not supported; only byte-level BPE models (\"type\": \"BPE\") are", m.Type)
	}
	if len(m.Vocab) == 0 {
		return nil, false, fmt.Errorf("model.vocab is empty or missing")
	}
	if (m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "") || (m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "") {
		return nil, false, fmt.Errorf("model uses continuing_subword_prefix/end_of_word_suffix, which byte-level BPE does not; this tokenizer is not supported")
	}
	if n := bytes.TrimSpace(f.Normalizer); len(n) > 0 && !bytes.Equal(n, []byte("null")) {
		return nil, false, fmt.Errorf("normalizer %s is not supported; only tokenizers without a normalizer are", abbrev(n))
	}
	if p := bytes.TrimSpace(f.PreTokenizer); len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return nil, false, fmt.Errorf("pre_tokenizer is missing; only byte-level BPE (a ByteLevel pre-tokenizer) is supported")
	}
	var pre hfPreTokenizer
	if err := json.Unmarshal(f.PreTokenizer, &pre); err != nil {
		return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	split, prefix, byteLevel, err := hfSplitter(pre)
	if err != nil {
		return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if !byteLevel {
		return nil, false, fmt.Errorf("pre_tokenizer has no ByteLevel step; only byte-level BPE is supported")
	}
	return split, prefix, nil
}

// hfVocab fills sp's tokens, added tokens and size, refusing negative or
// absurdly sparse ids.
func hfVocab(sp *bpeSpec, f *hfTokenizer) error {
	for text, id := range f.Model.Vocab {
		if id < 0 {
			return fmt.Errorf("model.vocab gives token %q the negative id %d", text, id)
		}
		if old, dup := sp.tokens[id]; dup && old < text {
			continue // two texts with one id: keep one, deterministically
		}
		sp.tokens[id] = text
		sp.size = max(sp.size, id+1)
	}
	for i, a := range f.AddedTokens {
		if a.ID < 0 || a.Content == "" {
			return fmt.Errorf("added_tokens[%d] has id %d and content %q; expected a non-negative id and some text", i, a.ID, a.Content)
		}
		sp.added[a.ID] = a.Content
		sp.ctrl[a.ID] = a.Special
		sp.size = max(sp.size, a.ID+1)
	}
	if limit := 2*(len(f.Model.Vocab)+len(f.AddedTokens)) + 1024; sp.size > limit {
		return fmt.Errorf("token ids go up to %d for %d tokens; ids this sparse are not a real vocabulary", sp.size-1, len(f.Model.Vocab)+len(f.AddedTokens))
	}
	return nil
}

// hfEnds sets sp's BOS and EOS ids from the config files in dir, the
// added tokens and the vocabulary.
func hfEnds(sp *bpeSpec, vocab map[string]int, dir string) error {
	// Special tokens by text, for BOS/EOS.
	addedIDs := make(map[string]int, len(sp.added))
	for id, text := range sp.added {
		if old, dup := addedIDs[text]; !dup || id < old {
			addedIDs[text] = id
		}
	}
	special := func(text string) (int, bool) {
		id, ok := addedIDs[text]
		return id, ok
	}
	bos, eosText, err := hfConfigTokens(dir)
	if err != nil {
		return err
	}
	if sp.bos, err = hfBOS(bos, special, vocab); err != nil {
		return err
	}
	eos, err := hfEOS(eosText, special, vocab)
	if err != nil {
		return err
	}
	genEOS, err := hfGenerationEOS(dir)
	if err != nil {
		return err
	}
	sp.eos = endIDs(eos, special)
	for _, id := range genEOS {
		if id >= 0 && id < sp.size && !contains(sp.eos, id) {
			sp.eos = append(sp.eos, id)
		}
	}
	return nil
}

// hfBOS is the BOS id tokenizer_config.json names (-1 for none), by
// default <|begin_of_text|> when the vocabulary has it.
func hfBOS(bos configToken, special func(string) (int, bool), vocab map[string]int) (int, error) {
	switch {
	case bos.set && bos.text == "":
		// bos_token: null: the model has no BOS.
	case bos.set:
		id, ok := special(bos.text)
		if !ok {
			if id, ok = vocab[bos.text]; !ok {
				return -1, fmt.Errorf("tokenizer_config.json bos_token %q is not a token of this vocabulary", bos.text)
			}
		}
		return id, nil
	default:
		if id, ok := special("<|begin_of_text|>"); ok {
			return id, nil
		}
	}
	return -1, nil
}

// hfEOS is the EOS id tokenizer_config.json names (-1 for none), by
// default Llama 3's <|end_of_text|> when it has no config.
func hfEOS(eosText configToken, special func(string) (int, bool), vocab map[string]int) (int, error) {
	if !eosText.set {
		eosText.text = "<|end_of_text|>" // Llama 3's, when there is no config
		if _, ok := special(eosText.text); !ok {
			eosText.text = ""
		}
	}
	if eosText.text == "" {
		return -1, nil
	}
	id, ok := special(eosText.text)
	if !ok {
		if id, ok = vocab[eosText.text]; !ok {
			return -1, fmt.Errorf("tokenizer_config.json eos_token %q is not a token of this vocabulary", eosText.text)
		}
	}
	return id, nil
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// abbrev shortens a JSON value for an error message.
func abbrev(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// hfMerges reads model.merges: "a b" strings (older files) or [a, b]
// pairs (newer files).
func hfMerges(raw json.RawMessage) ([][2]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil {
		out := make([][2]string, len(lines))
		for i, l := range lines {
			m, ok := parseMerge(l)
			if !ok {
				return nil, fmt.Errorf("model.merges[%d] is %q, expected two tokens separated by one space", i, l)
			}
			out[i] = m
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges is neither a list of \"a b\" strings nor of [a, b] pairs: %w", err)
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d] has %d elements, expected a pair", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

// hfSplitter turns a pre_tokenizer node into a splitter. prefix reports a
// ByteLevel add_prefix_space, byteLevel whether a ByteLevel step exists.
func hfSplitter(p hfPreTokenizer) (split splitter, prefix, byteLevel bool, err error) {
	switch p.Type {
	case "ByteLevel":
		if p.UseRegex {
			if split, err = splitterFor(patternGPT2); err != nil {
				return nil, false, false, err
			}
		}
		return split, p.AddPrefixSpace, true, nil
	case "Split":
		if p.Invert {
			return nil, false, false, fmt.Errorf("Split with invert=true is not supported")
		}
		if p.Behavior != "Isolated" {
			return nil, false, false, fmt.Errorf("Split behavior %q is not supported; only \"Isolated\" is", p.Behavior)
		}
		switch {
		case p.Pattern.Regex != nil:
			split, err = splitterFor(*p.Pattern.Regex)
		case p.Pattern.String != nil:
			split, err = regexSplitter(regexp2.Escape(*p.Pattern.String))
		default:
			err = fmt.Errorf("Split has no pattern (neither Regex nor String)")
		}
		return split, false, false, err
	case "Sequence":
		var steps []splitter
		for i, c := range p.PreTokenizers {
			s, pf, bl, err := hfSplitter(c)
			if err != nil {
				return nil, false, false, fmt.Errorf("pretokenizers[%d]: %w", i, err)
			}
			prefix = prefix || pf
			byteLevel = byteLevel || bl
			if s != nil {
				steps = append(steps, s)
			}
		}
		return chain(steps), prefix, byteLevel, nil
	}
	return nil, false, false, fmt.Errorf("pre-tokenizer type %q is not supported; supported: ByteLevel, Split, Sequence", p.Type)
}

// chain runs splitters one after the other: each word of one is split
// again by the next. No splitter at all leaves the text whole.
func chain(steps []splitter) splitter {
	switch len(steps) {
	case 0:
		return func(text string, emit func(string)) {
			if text != "" {
				emit(text)
			}
		}
	case 1:
		return steps[0]
	}
	first, rest := steps[0], chain(steps[1:])
	return func(text string, emit func(string)) {
		first(text, func(w string) { rest(w, emit) })
	}
}

// configToken is a token named in tokenizer_config.json; set reports that
// the key was there (text "" for null).
type configToken struct {
	text string
	set  bool
}

// hfConfigTokens reads bos_token and eos_token from tokenizer_config.json
// in dir, if the file exists. The values are strings or AddedToken
// objects ({"content": "..."}).
func hfConfigTokens(dir string) (bos, eos configToken, err error) {
	path := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return bos, eos, nil
	}
	if err != nil {
		return bos, eos, fmt.Errorf("%s: %w", path, err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return bos, eos, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	read := func(key string) (configToken, error) {
		raw, ok := cfg[key]
		if !ok {
			return configToken{}, nil
		}
		var s *string
		if err := json.Unmarshal(raw, &s); err == nil {
			if s == nil {
				return configToken{set: true}, nil
			}
			return configToken{text: *s, set: true}, nil
		}
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return configToken{}, fmt.Errorf("%s: %s is %s, expected a string or {\"content\": ...}", path, key, abbrev(raw))
		}
		return configToken{text: obj.Content, set: true}, nil
	}
	if bos, err = read("bos_token"); err != nil {
		return bos, eos, err
	}
	eos, err = read("eos_token")
	return bos, eos, err
}

// hfGenerationEOS reads eos_token_id (a number or a list) from
// generation_config.json in dir, if the file exists.
func hfGenerationEOS(dir string) ([]int, error) {
	path := filepath.Join(dir, "generation_config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cfg struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	if len(cfg.EOS) == 0 || bytes.Equal(cfg.EOS, []byte("null")) {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(cfg.EOS, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(cfg.EOS, &many); err != nil {
		return nil, fmt.Errorf("%s: eos_token_id is %s, expected a number or a list of numbers", path, abbrev(cfg.EOS))
	}
	return many, nil
}
