package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

// The tests read reference data from the shared/ folder that sits beside
// the repository root (never copied into the repo) through internal/shared:
// without it they skip, or fail in CI.

// refCase is one entry of shared/reference/tokenizer_cases.json.
type refCase struct {
	TokenizerFile string `json:"tokenizer_file"`
	Name          string `json:"name"`
	Text          string `json:"text"`
	IDs           []int  `json:"ids"`
	IDsPlain      []int  `json:"ids_with_special_tokens_as_plain_text"`
}

func loadCases(t testing.TB) []refCase {
	t.Helper()
	data, err := os.ReadFile(shared.Path(t, "reference/tokenizer_cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []refCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("tokenizer_cases.json: %v", err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("tokenizer_cases.json has no cases")
	}
	return f.Cases
}

// Tokenizers are loaded once per test binary (the Llama 3 tokenizer.json
// is 9 MB).
type loaded struct {
	once sync.Once
	tok  Tokenizer
	err  error
}

var tokCache sync.Map // shared-relative path -> *loaded

func loadShared(t testing.TB, rel string) Tokenizer {
	t.Helper()
	path := shared.Path(t, rel)
	v, _ := tokCache.LoadOrStore(rel, &loaded{})
	l := v.(*loaded)
	l.once.Do(func() {
		if strings.HasSuffix(rel, ".json") {
			l.tok, l.err = LoadHF(path)
		} else {
			l.tok, l.err = LoadLlama2C(path)
		}
	})
	if l.err != nil {
		t.Fatalf("loading %s: %v", rel, l.err)
	}
	return l.tok
}

const (
	llama3File = "tokenizers/llama3/tokenizer.json"
	llama2File = "tokenizers/llama2/tokenizer.bin"
	tok512File = "models/stories260K/tok512.bin"
)

// diffIDs describes how got differs from want, with the pieces around the
// first difference.
func diffIDs(tok Tokenizer, got, want []int) string {
	if equalInts(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	show := func(ids []int) string {
		var b strings.Builder
		lo, hi := max(0, i-2), min(len(ids), i+4)
		for k := lo; k < hi; k++ {
			fmt.Fprintf(&b, " %d%q", ids[k], tok.Piece(-1, ids[k]))
		}
		return b.String()
	}
	return fmt.Sprintf("first difference at index %d (got %d ids, want %d)\n  got: %v\n want: %v\n  got near:%s\n want near:%s",
		i, len(got), len(want), got, want, show(got), show(want))
}

func equalInts(a, b []int) bool {
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

// diffText describes where two strings differ.
func diffText(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("differ at byte %d:\n  got  %q\n  want %q", i, got, want)
}

// corpus is text used for differential tests: varied scripts, code,
// whitespace and punctuation runs, numbers, contractions.
var corpus = []string{
	"Hello, world! This is a test.",
	"The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
	"I'm sure they'll say we'd've done it; it's JOHN'S car, isn't it? 'tis",
	"   leading spaces, trailing spaces   ",
	"tabs\tand\t\tnewlines\n\nand\r\nwindows\r\n\r\n line\n \n  \n",
	"  \n\n   \t x",
	"numbers: 1 12 123 1234 12345 3.14159 1,000,000 2024-05-01 0x1F ٣٤٥ ①②③",
	"func main() {\n\tfmt.Println(\"hi\") // comment\n\treturn x+1;\n}\n",
	"def f(x):\n    return {'a': [1, 2, 3], \"b\": None}\n\n\nclass A:\n    pass\n",
	"<html><body><p class=\"x\">Text &amp; more</p></body></html>",
	"Ünïcödé: café naïve résumé façade jalapeño Ångström",
	"Русский текст: Привет, как дела? Всё хорошо!",
	"中文：你好，世界！我爱自然语言处理。日本語：こんにちは、世界。한국어: 안녕하세요",
	"العربية: مرحبا بالعالم. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया",
	"emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ ✨🔥",
	"math: ∀x∈ℝ, x²≥0; ∑_{i=1}^{n} i = n(n+1)/2 ≈ ∞ ≠ ±",
	"punctuation!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((())) [[[]]] {{{}}}",
	"a\u0000b\u0001c\u007fd\u001f e\u00a0f\u2003g\u3000h\u200bi\ufeffj",
	"mixed: abc123def 456ghi 'quoted' \"double\" `back` a'b a'S A'LL o'Re",
	"URLs: https://example.com/path?q=1&r=two#frag and emails a.b@c.de",
	"\n",
	" ",
	"x",
	"!!",
	"'s",
	" 's 't 're 've 'm 'll 'd 'x '",
	"...\n\n...\r\r\n",
	"<|eot_id|> <|begin_of_text|>text<|end_of_text|> <s> </s> <unk>",
	"Line one.\n    Indented line two.\n\t\tTabbed three.\n",
	"ﬁ ﬂ ǅ ǈ Ⅻ ⅷ ½ ¾ ²³ ℃ № ™ ©®",
}
