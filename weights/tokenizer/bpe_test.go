package tokenizer

import (
	"bufio"
	"encoding/base64"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/pkoukk/tiktoken-go"
	"github.com/star-attn/star/internal/shared"
)

func llama3(t testing.TB) *BPE {
	t.Helper()
	return loadShared(t, llama3File).(*BPE)
}

func TestLlama3Basics(t *testing.T) {
	tok := llama3(t)
	if tok.Kind() != "hf-bpe" || tok.VocabSize() != 128256 || tok.BOS() != 128000 {
		t.Errorf("Kind %q VocabSize %d BOS %d; want hf-bpe, 128256, 128000", tok.Kind(), tok.VocabSize(), tok.BOS())
	}
	// eos_token (<|end_of_text|>) and <|eot_id|>; this Llama 3.0
	// vocabulary has no <|eom_id|>.
	if got := tok.EOS(); !equalInts(got, []int{128001, 128009}) {
		t.Errorf("EOS() = %v, want [128001 128009]", got)
	}
	for text, want := range map[string]int{"<|eot_id|>": 128009, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "Hello": 9906, "Ġworld": 1917} {
		if id, ok := tok.TokenID(text); !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", text, id, ok, want)
		}
	}
	ids, err := tok.Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{128000, 128006, 882, 128007, 271, 13347, 128009}; !equalInts(ids, want) {
		t.Errorf("chat header: %s", diffIDs(tok, ids, want))
	}
	if got := tok.Decode(ids); got != "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" {
		t.Errorf("Decode dropped or changed text: %q", got)
	}
}

// TestEncodeBOSAndEmpty: bos prepends BOS, empty text is no ids (no dummy
// prefix) for every tokenizer.
func TestEncodeBOSAndEmpty(t *testing.T) {
	toks := map[string]Tokenizer{
		"llama3": loadShared(t, llama3File),
		"llama2": loadShared(t, llama2File),
		"tok512": loadShared(t, tok512File),
		"spm":    ggufTokenizer(t, "models/gguf/tiny-random-llama2.gguf"),
		"gpt2":   gpt2FromLlama3(t),
	}
	for name, tok := range toks {
		ids, err := tok.Encode("", false)
		if err != nil || len(ids) != 0 {
			t.Errorf("%s: Encode(\"\", false) = %v, %v; want []", name, ids, err)
		}
		ids, err = tok.Encode("", true)
		if err != nil || !equalInts(ids, []int{tok.BOS()}) {
			t.Errorf("%s: Encode(\"\", true) = %v, %v; want [BOS]", name, ids, err)
		}
		plain, err := tok.Encode("Hello world", false)
		if err != nil || len(plain) == 0 {
			t.Fatalf("%s: Encode(\"Hello world\", false) = %v, %v", name, plain, err)
		}
		withBOS, err := tok.Encode("Hello world", true)
		if err != nil {
			t.Fatalf("%s: Encode(\"Hello world\", true): %v", name, err)
		}
		if !equalInts(withBOS, append([]int{tok.BOS()}, plain...)) {
			t.Errorf("%s: Encode with bos = %v, without = %v", name, withBOS, plain)
		}
		if got := tok.Decode(withBOS); got != "Hello world" {
			t.Errorf("%s: Decode(Encode(bos)) = %q", name, got)
		}
		if tok.Piece(-1, -5) != nil || tok.Piece(-1, tok.VocabSize()) != nil {
			t.Errorf("%s: Piece of an id out of range is not nil", name)
		}
		if got := tok.Decode([]int{-1, tok.VocabSize(), 1 << 40}); got != "" {
			t.Errorf("%s: Decode of ids out of range = %q", name, got)
		}
	}
}

// tiktokenLlama3 builds tiktoken-go's encoder from the tiktoken-format
// tokenizer.model: an independent implementation to compare against.
var (
	tiktokenOnce sync.Once
	tiktokenBPE  *tiktoken.Tiktoken
	tiktokenErr  error
)

func tiktokenLlama3(t testing.TB) *tiktoken.Tiktoken {
	t.Helper()
	path := shared.Path(t, "tokenizers/llama3/tokenizer.model")
	tiktokenOnce.Do(func() {
		f, err := os.Open(path)
		if err != nil {
			tiktokenErr = err
			return
		}
		defer f.Close()
		ranks := map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			b64, rank, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			tok, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				tiktokenErr = err
				return
			}
			if ranks[string(tok)], err = strconv.Atoi(rank); err != nil {
				tiktokenErr = err
				return
			}
		}
		specials := map[string]int{"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009}
		core, err := tiktoken.NewCoreBPE(ranks, specials, patternLlama3)
		if err != nil {
			tiktokenErr = err
			return
		}
		set := map[string]any{}
		for k := range specials {
			set[k] = nil
		}
		tiktokenBPE = tiktoken.NewTiktoken(core, &tiktoken.Encoding{Name: "llama3"}, set)
	})
	if tiktokenErr != nil {
		t.Fatalf("tiktoken-go reference: %v", tiktokenErr)
	}
	return tiktokenBPE
}

// TestLlama3MatchesTiktoken compares with tiktoken-go fed the tiktoken
// tokenizer.model, on the corpus and random text.
func TestLlama3MatchesTiktoken(t *testing.T) {
	tok := llama3(t)
	ref := tiktokenLlama3(t)
	texts := append(append([]string{}, corpus...), randomTexts(300)...)
	texts = append(texts, strings.Repeat("a", 3000), strings.Repeat("😀", 500), strings.Repeat(" ", 100)+"x", strings.Repeat("1", 50))
	for _, text := range texts {
		want := ref.Encode(text, []string{"all"}, nil)
		got, err := tok.Encode(text, false)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffIDs(tok, got, want); d != "" {
			t.Errorf("Encode(%q) differs from tiktoken: %s", text, d)
		}
		// Decode drops BOS, also one written in the text.
		if got, want := tok.Decode(got), strings.ReplaceAll(text, "<|begin_of_text|>", ""); got != want {
			t.Errorf("Decode(Encode(%q)): %s", text, diffText(got, want))
		}
	}
}

// gpt2FromLlama3 rebuilds the Llama 3 vocabulary the way a GGUF "gpt2"
// file carries it (tokens, "a b" merges in rank order, token types) and
// builds it with NewGPT2BPE.
func gpt2FromLlama3(t testing.TB) Tokenizer {
	t.Helper()
	hf := llama3(t)
	types := make([]int32, len(hf.texts))
	for _, sp := range hf.specials.byFirst {
		for _, s := range sp {
			types[s.id] = TypeControl
		}
	}
	for id := range types {
		if types[id] == 0 {
			types[id] = TypeNormal
		}
	}
	type rm struct {
		rank int32
		line string
	}
	var ms []rm
	for k, m := range hf.merges {
		a, b := int(k>>32), int(uint32(k))
		ms = append(ms, rm{m.rank, hf.texts[a] + " " + hf.texts[b]})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].rank < ms[j].rank })
	merges := make([]string, len(ms))
	for i, m := range ms {
		merges[i] = m.line
	}
	tok, err := NewGPT2BPE(hf.texts, merges, types, 128000, 128001, "llama-bpe")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGPT2BPEMatchesReference(t *testing.T) {
	tok := gpt2FromLlama3(t)
	hf := llama3(t)
	if tok.Kind() != "gpt2" || !equalInts(tok.EOS(), []int{128001, 128009}) {
		t.Errorf("Kind %q EOS %v", tok.Kind(), tok.EOS())
	}
	for _, c := range loadCases(t) {
		if c.TokenizerFile != llama3File {
			continue
		}
		got, err := tok.Encode(c.Text, false)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffIDs(tok, got, c.IDs); d != "" {
			t.Errorf("%s: %s", c.Name, d)
		}
		if got := tok.Decode(got); got != c.Text {
			t.Errorf("%s: Decode: %s", c.Name, diffText(got, c.Text))
		}
	}
	for _, text := range corpus {
		want, herr := hf.Encode(text, true)
		got, err := tok.Encode(text, true)
		if herr != nil || err != nil || len(want) == 0 {
			t.Errorf("Encode(%q): tokenizer.json %v (%d ids), tokenizer.model %v", text, herr, len(want), err)
			continue
		}
		if d := diffIDs(tok, got, want); d != "" {
			t.Errorf("Encode(%q) differs from tokenizer.json: %s", text, d)
		}
	}
}

func TestGPT2BPEErrors(t *testing.T) {
	bytesVocab := make([]string, 256)
	for b := range bytesVocab {
		bytesVocab[b] = string(byteToRune[b])
	}
	if _, err := NewGPT2BPE(bytesVocab, nil, nil, -1, -1, "default"); err != nil {
		t.Errorf("a vocabulary of the 256 bytes: %v", err)
	}
	for name, f := range map[string]func() error{
		"empty":        func() error { _, err := NewGPT2BPE(nil, nil, nil, -1, -1, ""); return err },
		"missing byte": func() error { _, err := NewGPT2BPE(bytesVocab[:200], nil, nil, -1, -1, ""); return err },
		"bad merge":    func() error { _, err := NewGPT2BPE(bytesVocab, []string{"ab"}, nil, -1, -1, ""); return err },
		"unknown pre":  func() error { _, err := NewGPT2BPE(bytesVocab, nil, nil, -1, -1, "no-such-pre"); return err },
		"types length": func() error { _, err := NewGPT2BPE(bytesVocab, nil, []int32{1}, -1, -1, ""); return err },
		"bos range":    func() error { _, err := NewGPT2BPE(bytesVocab, nil, nil, 999, -1, ""); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestSplitters compares the hand-written pre-tokenizers with regexp2
// running the same patterns.
func TestSplitters(t *testing.T) {
	texts := append(append([]string{}, corpus...), randomTexts(500)...)
	for _, pattern := range []string{patternLlama3, patternGPT2, patternQwen2} {
		fast, err := splitterFor(pattern)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := regexSplitter(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range texts {
			if got, want := words(fast, text), words(slow, text); !equalStrings(got, want) {
				t.Errorf("pattern %.20q... text %q:\n  got  %q\n  want %q", pattern, text, got, want)
			}
		}
	}
}

func words(s splitter, text string) []string {
	var out []string
	s(text, func(w string) { out = append(out, w) })
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestContractionCaseFolding: (?i) in the Llama 3 pattern folds like the
// Rust and JavaScript engines, where 'ſ' (long s) matches 's'; regexp2
// does not, so this is checked here rather than against it.
func TestContractionCaseFolding(t *testing.T) {
	got := words(func(text string, emit func(string)) { splitLlama3(text, 3, emit) }, "IT'S it'ſ WE'D")
	want := []string{"IT", "'S", " it", "'ſ", " WE", "'D"}
	if !equalStrings(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLoadHFErrors: malformed tokenizer.json files give errors.
func TestLoadHFErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not json":        `{"model": `,
		"empty":           `{}`,
		"wordpiece":       `{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`,
		"no pre":          `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"not byte-level":  `{"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"missing bytes":   `{"pre_tokenizer": {"type": "ByteLevel", "use_regex": true}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"bad merges":      `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": 7}}`,
		"bad merge line":  `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}`,
		"bad regex":       `{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"normalizer":      `{"normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"negative id":     `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}}`,
		"huge id":         `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}}`,
		"bad added token": `{"added_tokens": [{"id": -1, "content": ""}], "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
	}
	for name, text := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHF(p); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	if _, err := LoadHF(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestLoadHFSmall builds a small GPT-2-style tokenizer.json (ByteLevel
// pre-tokenizer with its own regex and add_prefix_space, merges as pairs)
// with a tokenizer_config.json and generation_config.json beside it.
func TestLoadHFSmall(t *testing.T) {
	dir := t.TempDir()
	var vocab []string
	for b := 0; b < 256; b++ {
		vocab = append(vocab, strconv.Quote(string(byteToRune[b]))+": "+strconv.Itoa(b))
	}
	vocab = append(vocab, `"Ġh": 256`, `"Ġhi": 257`, `"ĠĠ": 258`)
	tj := `{"added_tokens": [{"id": 259, "content": "<s>", "special": true}, {"id": 260, "content": "</s>", "special": true}, {"id": 261, "content": "[X]", "special": false}],
	"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true, "use_regex": true},
	"model": {"type": "BPE", "vocab": {` + strings.Join(vocab, ",") + `}, "merges": [["Ġ", "h"], ["Ġh", "i"], ["Ġ", "Ġ"]]}}`
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tokenizer.json", tj)
	write("tokenizer_config.json", `{"bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>"}`)
	write("generation_config.json", `{"eos_token_id": [260, 5]}`)
	tok, err := LoadHF(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 259 || !equalInts(tok.EOS(), []int{260, 5}) || tok.VocabSize() != 262 {
		t.Errorf("BOS %d EOS %v VocabSize %d", tok.BOS(), tok.EOS(), tok.VocabSize())
	}
	ids, err := tok.Encode("hi<s>[X]hi  hi", true)
	if err != nil {
		t.Fatal(err)
	}
	// "hi" gets the prefix space (add_prefix_space) in every fragment; "  hi"
	// is " " + " hi" (\s+(?!\S)).
	sp := int(' ')
	if want := []int{259, 257, 259, 261, 257, byteID(t, tok, sp), 257}; !equalInts(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	plain, err := EncodeWith(tok, "[X]<s>", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) < 2 || plain[0] != 261 || contains(plain, 259) {
		t.Errorf("ParseSpecial=false: %v; want [X] matched (not special) and <s> spelled out", plain)
	}
	// bos_token: null means no BOS.
	write("tokenizer_config.json", `{"bos_token": null, "eos_token": "</s>"}`)
	if tok, err = LoadHF(filepath.Join(dir, "tokenizer.json")); err != nil || tok.BOS() != -1 {
		t.Errorf("bos_token null: BOS %v, %v", tok, err)
	}
	write("tokenizer_config.json", `{"bos_token": "<nope>"}`)
	if _, err = LoadHF(filepath.Join(dir, "tokenizer.json")); err == nil {
		t.Error("bos_token naming no token: no error")
	}
	write("tokenizer_config.json", `{"bos_token": `)
	if _, err = LoadHF(filepath.Join(dir, "tokenizer.json")); err == nil {
		t.Error("malformed tokenizer_config.json: no error")
	}
}

func byteID(t *testing.T, tok Tokenizer, b int) int {
	id, ok := tok.TokenID(string(byteToRune[b]))
	if !ok {
		t.Fatalf("no token for byte %d", b)
	}
	return id
}

// TestLlama3LongWord: a word of thousands of bytes (no spaces) must not
// take quadratic time, and must round-trip.
func TestLlama3LongWord(t *testing.T) {
	tok := llama3(t)
	text := strings.Repeat("abcdefghij", 20000) // one 200 KB word
	ids, err := tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Decode(ids) != text {
		t.Error("long word does not round-trip")
	}
	if !utf8.ValidString(tok.Decode(ids[:len(ids)/2])) {
		t.Error("prefix of ASCII decodes to invalid UTF-8")
	}
}

// TestLoadHFDefaults: without tokenizer_config.json, BOS and EOS fall back
// to Llama 3's names; a Split pattern that is not a known one runs on
// regexp2, chained with a second Split.
func TestLoadHFDefaults(t *testing.T) {
	dir := t.TempDir()
	var vocab []string
	for b := 0; b < 256; b++ {
		vocab = append(vocab, strconv.Quote(string(byteToRune[b]))+": "+strconv.Itoa(b))
	}
	vocab = append(vocab, `"ab": 256`, `"abc": 257`, `"12": 258`)
	tj := `{"added_tokens": [{"id": 300, "content": "<|begin_of_text|>", "special": true}, {"id": 301, "content": "<|end_of_text|>", "special": true}, {"id": 302, "content": "<|eot_id|>", "special": true}],
	"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
		{"type": "Split", "pattern": {"Regex": "[a-z]+|\\d+|\\s+|[^a-z\\d\\s]+"}, "behavior": "Isolated", "invert": false},
		{"type": "Split", "pattern": {"String": "-"}, "behavior": "Isolated", "invert": false},
		{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
	"model": {"type": "BPE", "vocab": {` + strings.Join(vocab, ",") + `}, "merges": ["a b", "ab c", "1 2"]}}`
	p := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(p, []byte(tj), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadHF(p)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 300 || !equalInts(tok.EOS(), []int{301, 302}) || tok.VocabSize() != 303 {
		t.Errorf("BOS %d EOS %v VocabSize %d; want 300, [301 302], 303", tok.BOS(), tok.EOS(), tok.VocabSize())
	}
	ids, err := tok.Encode("abc12 ab+-!", false)
	if err != nil {
		t.Fatal(err)
	}
	// Words: "abc" "12" " " "ab" then "+-!" split again at "-".
	if want := []int{257, 258, ' ', 256, '+', '-', '!'}; !equalInts(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	if got := tok.Decode(ids); got != "abc12 ab+-!" {
		t.Errorf("Decode = %q", got)
	}
}

// TestConcurrentEncode: tokenizers are safe for concurrent use (run with
// -race to check the word cache).
func TestConcurrentEncode(t *testing.T) {
	toks := []Tokenizer{llama3(t), loadShared(t, llama2File)}
	text := benchText(5000)
	var wg sync.WaitGroup
	results := make([][]int, 8)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := toks[g%2].Encode(text, true)
			if err != nil {
				t.Error(err)
			}
			results[g] = ids
		}()
	}
	wg.Wait()
	for g := 2; g < len(results); g++ {
		if !equalInts(results[g], results[g%2]) {
			t.Errorf("goroutine %d got different ids", g)
		}
	}
}
