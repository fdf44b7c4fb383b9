package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

func star(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"star"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func writeFile(t *testing.T, name, text string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunJSONContract(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", "Once upon a time, there was a little girl named Lily.\n\nShe loved to")
	for _, att := range []string{"star", "global"} {
		code, out, errOut := star(t, "--model", model, "--prompt", prompt, "--max-tokens", "12", "--json", "--attention", att, "--block-size", "8", "--anchor-size", "4")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", att, code, errOut)
		}
		if strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Fatalf("%s: stdout is not exactly one JSON line: %q", att, out)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s: stdout is not JSON: %v: %q", att, err, out)
		}
		for _, f := range []string{"context_tokens", "query_tokens", "tokens", "text", "logprobs", "timings"} {
			if _, ok := res[f]; !ok {
				t.Fatalf("%s: JSON lacks %q: %s", att, f, out)
			}
		}
		toks, lps := res["tokens"].([]any), res["logprobs"].([]any)
		if len(toks) == 0 || len(toks) != len(lps) || len(toks) > 12 {
			t.Fatalf("%s: %d tokens and %d logprobs (max 12)", att, len(toks), len(lps))
		}
		for _, lp := range lps {
			if v := lp.(float64); v > 0 || v < -50 {
				t.Fatalf("%s: logprob %g is not a log-probability", att, v)
			}
		}
		if res["query_tokens"].(float64) < 1 || res["context_tokens"].(float64) < 10 {
			t.Fatalf("%s: context/query split wrong: %v / %v", att, res["context_tokens"], res["query_tokens"])
		}
	}
}

func TestRunStreamsText(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", "Once upon a time")
	code, out, errOut := star(t, "--model", model, "--prompt", prompt, "--max-tokens", "20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// with the JSON run the text must be identical
	_, js, _ := star(t, "--model", model, "--prompt", prompt, "--max-tokens", "20", "--json")
	var res struct{ Text string }
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatal(err)
	}
	if out != res.Text+"\n" || res.Text == "" {
		t.Fatalf("streamed %q, JSON text %q", out, res.Text)
	}
}

func TestScoreAndTokenize(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", "Once upon a time")
	cont := writeFile(t, "c.txt", ", there was a little girl")
	code, out, errOut := star(t, "score", "--model", model, "--prompt", prompt, "--continuation-file", cont, "--json")
	if code != 0 {
		t.Fatalf("score exit %d: %s", code, errOut)
	}
	var s struct {
		ContextTokens int       `json:"context_tokens"`
		QueryTokens   int       `json:"query_tokens"`
		Tokens        []int     `json:"tokens"`
		Logprobs      []float64 `json:"logprobs"`
		NLL           float64   `json:"nll"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("score JSON: %v: %q", err, out)
	}
	var sum float64
	for _, lp := range s.Logprobs {
		sum -= lp
	}
	if len(s.Tokens) == 0 || len(s.Tokens) != len(s.Logprobs) || s.NLL <= 0 || absf(sum/float64(len(s.Tokens))-s.NLL) > 1e-9 {
		t.Fatalf("score result inconsistent: %+v", s)
	}
	code, out, errOut = star(t, "tokenize", "--model", model, "--text", "Once upon a time", "--json")
	if code != 0 || strings.TrimSpace(out) != "[403,407,261,378]" {
		t.Fatalf("tokenize: exit %d, %q %s", code, out, errOut)
	}
	code, out, _ = star(t, "tokenize", "--model", model, "--text", "403 407 261 378", "--decode")
	if code != 0 || !strings.Contains(out, "Once upon a time") {
		t.Fatalf("tokenize --decode: exit %d, %q", code, out)
	}
	code, out, errOut = star(t, "inspect", "--model", model)
	if code != 0 || !strings.Contains(out, "layers 5") || !strings.Contains(out, "kv_cache") {
		t.Fatalf("inspect: exit %d, %q %s", code, out, errOut)
	}
}

func absf(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Bad input gets one clear error line and a non-zero exit, never a panic.
func TestBadInput(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", "Once upon a time")
	empty := writeFile(t, "e.txt", "  \n\n ")
	long := writeFile(t, "l.txt", strings.Repeat("Once upon a time there was a girl. ", 200))
	trunc := writeFile(t, "t.bin", "\x40\x00\x00\x00\xac\x00\x00")
	cases := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"missing prompt file", []string{"--model", model, "--prompt", "/nonexistent/p.txt"}, "prompt file"},
		{"no prompt", []string{"--model", model}, "--prompt"},
		{"empty prompt", []string{"--model", model, "--prompt", empty}, "empty"},
		{"prompt too long", []string{"--model", model, "--prompt", long}, "context length"},
		{"missing model", []string{"--model", "/nonexistent/m.bin", "--prompt", prompt}, "/nonexistent/m.bin"},
		{"truncated model", []string{"--model", trunc, "--prompt", prompt}, "header"},
		{"bad attention", []string{"--model", model, "--prompt", prompt, "--attention", "ring2"}, "--attention"},
		{"anchor beyond block", []string{"--model", model, "--prompt", prompt, "--block-size", "2", "--anchor-size", "3"}, "anchor"},
		{"zero block", []string{"--model", model, "--prompt", prompt, "--block-size", "0"}, "--block-size"},
		{"bad top-p", []string{"--model", model, "--prompt", prompt, "--top-p", "1.5"}, "--top-p"},
		{"unknown flag", []string{"--model", model, "--prompt", prompt, "--frobnicate"}, "frobnicate"},
		{"empty query", []string{"--model", model, "--prompt", prompt, "--query", " "}, "query"},
		{"tokenize nothing", []string{"tokenize", "--model", model}, "--text"},
		{"decode bad id", []string{"tokenize", "--model", model, "--decode", "--text", "99999"}, "vocabulary"},
		{"score without continuation", []string{"score", "--model", model, "--prompt", prompt}, "continuation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := star(t, c.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", out)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
				t.Fatalf("panic trace on stderr: %s", errOut)
			}
			if !strings.Contains(errOut, c.want) {
				t.Fatalf("error %q does not mention %q", errOut, c.want)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines > 2 {
				t.Fatalf("error is %d lines, want one clear line: %s", lines+1, errOut)
			}
		})
	}
}

func TestBenchJSON(t *testing.T) {
	code, out, errOut := star(t, "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--dtype", "f32",
		"--context", "96,192", "--attention", "star,ring,global", "--block-size", "32", "--anchor-size", "16,0", "--decode-tokens", "4", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d JSON lines, want 8 (2 contexts x global, ring, star with 2 anchor sizes):\n%s", len(lines), out)
	}
	if strings.Count(out, `"anchor":16,`) != 2 || strings.Count(out, `"attention":"star"`) != 4 {
		t.Fatalf("want a star row per context and anchor size (16, 0):\n%s", out)
	}
	globalNLL := map[float64]float64{} // context -> global attention's NLL (rows come in order)
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		for _, f := range []string{"attention", "ranks", "threads", "context", "block", "anchor", "phase1_s", "ttft_s",
			"decode_tok_s", "linear_gflops", "attention_gflops", "peak_rss_bytes", "weight_dtype", "kv_dtype", "kernel"} {
			if _, ok := r[f]; !ok {
				t.Fatalf("bench JSON lacks %q: %s", f, l)
			}
		}
		// Timings are measurements: only their form is checked (numbers,
		// not negative, and the time to first token includes phase 1).
		for _, f := range []string{"phase1_s", "ttft_s", "decode_tok_s", "linear_gflops", "attention_gflops"} {
			if v, ok := r[f].(float64); !ok || v < 0 || math.IsInf(v, 0) {
				t.Fatalf("%s = %v, want a non-negative number: %s", f, r[f], l)
			}
		}
		if r["weight_dtype"] != "F32" || r["kv_dtype"] != "f32" || !strings.HasPrefix(r["kernel"].(string), "cpu-") {
			t.Fatalf("weight_dtype %v, kv_dtype %v, kernel %v: want F32, f32 and a cpu kernel: %s", r["weight_dtype"], r["kv_dtype"], r["kernel"], l)
		}
		if r["ttft_s"].(float64) < r["phase1_s"].(float64) {
			t.Fatalf("ttft_s < phase1_s: the first token comes after phase 1: %s", l)
		}
		// The decode bound is the time to read the bytes one decode step
		// reads: the weights at the rate measured over them, the K/V at the
		// fresh buffer's. configs/tiny.json in f32 (tied embedding) is
		// 2 layers x (64x64 wq, wo + 32x64 wk, wv + 3 x 160x64 MLP + 2x64
		// norms) + 64 final norm + 512x64 embedding = 119104 floats; its
		// K/V are 2 x 2 layers x 32 floats a token, and one rank reads the
		// context, 16 query tokens and on average 2 of the 4 generated.
		bw, _ := r["membw_gbs"].(float64)
		wbw, _ := r["weights_bw_gbs"].(float64)
		bound, _ := r["decode_bound_tok_s"].(float64)
		kv, _ := r["kv_bytes_per_token_step"].(float64)
		if !(bw > 0) || !(wbw > 0) || !(bound > 0) {
			t.Fatalf("no read bandwidth, weights' read rate or decode bound: %s", l)
		}
		if want := (r["context"].(float64) + 16 + 2) * 2 * 2 * 32 * 4; kv != want {
			t.Fatalf("kv_bytes_per_token_step %.0f, want %.0f: %s", kv, want, l)
		}
		if got, want := 1/bound, 119104.0*4/(wbw*1e9)+kv/(bw*1e9); math.Abs(got/want-1) > 1e-9 {
			t.Fatalf("1 / decode bound = %.3g s per decode step, want %.3g (weights at weights_bw, K/V at membw): %s", got, want, l)
		}
		// Accuracy: every row has the scored tokens' NLL; exact modes run
		// first, and ring and star carry their ratio to global.
		if nll, _ := r["nll"].(float64); nll <= 0 {
			t.Fatalf("no NLL: %s", l)
		}
		ratio, hasRatio := r["nll_ratio"].(float64)
		switch r["attention"] {
		case "global":
			if hasRatio {
				t.Fatalf("global row has a ratio to itself: %s", l)
			}
		case "ring":
			if !hasRatio || math.Abs(ratio-1) > 1e-5 || r["logprob_max_diff"].(float64) > 1e-4 {
				t.Fatalf("ring is exact: want nll_ratio 1 and logprob_max_diff <= 1e-4: %s", l)
			}
		case "star":
			// The ratio is this row's NLL over global's for the same
			// context, and near 1: this random model's predictions barely
			// depend on attention (measured 0.98 to 1.01), so 5% checks the
			// report, not Star's accuracy (jobs.TestStarBlocksAndChunks does
			// that on a trained model). With 3 to 6 blocks of 32 tokens Star
			// is not global attention: its log-probabilities differ.
			g, ok := globalNLL[r["context"].(float64)]
			if !hasRatio || !ok || math.Abs(ratio-r["nll"].(float64)/g) > 1e-9 {
				t.Fatalf("star row's nll_ratio %v is not its NLL over global's (%v): %s", r["nll_ratio"], g, l)
			}
			if math.Abs(ratio-1) > 0.05 {
				t.Fatalf("star NLL ratio %.4f not within 5%% of 1: %s", ratio, l)
			}
			if d, _ := r["logprob_max_diff"].(float64); !(d > 1e-4) {
				t.Fatalf("star with several blocks gives global's log-probabilities (max diff %v): %s", r["logprob_max_diff"], l)
			}
		}
		if r["attention"] == "global" {
			globalNLL[r["context"].(float64)] = r["nll"].(float64)
		}
	}
	if order := []string{`"global"`, `"ring"`, `"star"`}; !(strings.Index(out, order[0]) < strings.Index(out, order[1]) && strings.Index(out, order[1]) < strings.Index(out, order[2])) {
		t.Fatalf("exact modes should run first:\n%s", out)
	}
	if !strings.Contains(errOut, "phase 1") {
		t.Fatalf("no progress on stderr: %q", errOut)
	}
	code, _, errOut = star(t, "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--context", "64", "--query-tokens", "0")
	if code == 0 || !strings.Contains(errOut, "--query-tokens") {
		t.Fatalf("empty query: exit %d, %q", code, errOut)
	}
	code, _, errOut = star(t, "bench", "--load-format", "dummy", "--context", "64")
	if code == 0 || !strings.Contains(errOut, "--model-config") {
		t.Fatalf("dummy without config: exit %d, %q", code, errOut)
	}
}

// Bench on dummy quantized weights names their dtype and kernel in the
// JSON and the table; a shape whose rows are not whole blocks of the
// dtype is refused in one line.
func TestBenchQuantizedDummy(t *testing.T) {
	code, out, errOut := star(t, "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--dtype", "q4_0",
		"--context", "32", "--attention", "global", "--decode-tokens", "2", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("not one JSON line: %q", out)
	}
	if r["weight_dtype"] != "Q4_0" || !strings.HasPrefix(r["kernel"].(string), "cpu-") {
		t.Fatalf("weight_dtype %v kernel %v, want Q4_0 and a cpu kernel", r["weight_dtype"], r["kernel"])
	}
	code, out, errOut = star(t, "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--dtype", "Q8_0",
		"--context", "32", "--attention", "global", "--decode-tokens", "2")
	if code != 0 || !strings.Contains(out, "Q8_0") || !strings.Contains(out, "kernel") {
		t.Fatalf("bench table: exit %d, want the weight type and kernel:\n%s%s", code, out, errOut)
	}
	code, _, errOut = star(t, "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--dtype", "q4_k", "--context", "32")
	if code == 0 || !strings.Contains(errOut, "hidden_size 64 is not a multiple of 256") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("q4_k on a 64-wide model: exit %d, %q", code, errOut)
	}
}
