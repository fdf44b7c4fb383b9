package eval

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/rank"
)

// RULER data files: the task comes from TASK=FILE, the folder name RULER
// writes (TASK/validation.jsonl) or the file name; each line needs
// input_context, input_query and outputs, and a missing one is refused
// naming the line; a chat template spelled out as text is refused.
func TestDataFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) string {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"index": 0, "input_context": "Some text.\n", "input_query": "What? Answer:", "outputs": ["x"], "length": 40}` + "\n" +
		`{"index": 1, "input_context": "More text.\n", "input_query": "Why?", "outputs": ["y", "z"]}` + "\n"
	cases := []struct {
		arg    string // %s: dir
		text   string
		file   string
		task   string
		errHas string
	}{
		{"niah_single_1=%s/a.jsonl", good, "a.jsonl", "niah_single_1", ""},
		{"%s/vt/validation.jsonl", good, "vt/validation.jsonl", "vt", ""},
		{"%s/cwe.jsonl", good, "cwe.jsonl", "cwe", ""},
		{"%s/mystery.jsonl", good, "mystery.jsonl", "", "cannot tell its task"},
		{"qa_1=%s/b.jsonl", `{"input_context": "c", "outputs": ["x"]}` + "\n", "b.jsonl", "qa_1", `line 1: missing "input_query"`},
		{"qa_1=%s/c.jsonl", good + `{"input_query": "q", "outputs": ["x"]}` + "\n", "c.jsonl", "qa_1", `line 3: missing "input_context"`},
		{"qa_1=%s/d.jsonl", `{"input_context": "c", "input_query": "q"}` + "\n", "d.jsonl", "qa_1", `missing "outputs"`},
		{"qa_1=%s/e.jsonl", `{"input_context": "c", "input_query": "q", "outputs": "x"}` + "\n", "e.jsonl", "qa_1", "not a RULER record"},
		{"qa_1=%s/f.jsonl", `{"input_context": "<|begin_of_text|>c", "input_query": "q", "outputs": ["x"]}` + "\n", "f.jsonl", "qa_1", "base template"},
		{"qa_1=%s/g.jsonl", "\n\n", "g.jsonl", "qa_1", "no samples"},
		{"qa_1=%s/h.jsonl", "not json\n", "h.jsonl", "qa_1", "line 1: not a RULER record"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			write(c.file, c.text)
			arg := strings.Replace(c.arg, "%s", dir, 1)
			d, err := ParseDataFile(arg)
			if err == nil {
				if d.Task.Name != c.task {
					t.Fatalf("task %q, want %q", d.Task.Name, c.task)
				}
				var ss []*Sample
				ss, err = d.Read(func(s *Sample) (int, error) { return len(s.Context) + s.MaxTokens, nil })
				if err == nil && (len(ss) != 2 || ss[0].Outputs[0] != "x" || ss[1].Queries[0].Query != "Why?" || ss[0].Length != ss[1].Length) {
					t.Fatalf("samples %+v", ss)
				}
			}
			if c.errHas == "" && err != nil {
				t.Fatal(err)
			}
			if c.errHas != "" && (err == nil || !strings.Contains(err.Error(), c.errHas)) {
				t.Fatalf("error %v, want one saying %q", err, c.errHas)
			}
		})
	}
}

// Settings: the exact mode first, then Star per block and anchor size;
// anchors larger than the block left out; at most one exact mode, none
// named twice.
func TestSettings(t *testing.T) {
	s, notes, err := Settings([]rank.Attention{rank.Star, rank.Global}, []int{64, 128}, []int{32, 128})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range s {
		names = append(names, x.slug())
	}
	if got := strings.Join(names, " "); got != "global star-b64-a32 star-b128-a32 star-b128-a128" {
		t.Fatalf("settings %s", got)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "block 64 with anchor 128") {
		t.Fatalf("notes %q", notes)
	}
	for _, bad := range [][]rank.Attention{{rank.Global, rank.Ring}, {rank.Star, rank.Star}, nil} {
		if _, _, err := Settings(bad, nil, nil); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
	if _, _, err := Settings([]rank.Attention{rank.Star}, []int{16}, []int{32}); err == nil {
		t.Fatal("no valid pair accepted")
	}
}

// Perplexity windows: BOS and n-1 tokens in phase 1, the n-th as the
// query, then k scored; consecutive, at most max.
func TestWindows(t *testing.T) {
	ids := make([]int, 23)
	for i := range ids {
		ids[i] = 10 + i
	}
	w, err := Windows(ids, 1, 4, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 3 {
		t.Fatalf("%d windows, want 3 (23 tokens / 7)", len(w))
	}
	if got := [3][]int{w[1].Context, w[1].Query, w[1].Cont}; !equal(got[0], []int{1, 17, 18, 19}) || !equal(got[1], []int{20}) || !equal(got[2], []int{21, 22, 23}) {
		t.Fatalf("window 1: %v", got)
	}
	if w, _ := Windows(ids, 1, 4, 3, 2); len(w) != 2 {
		t.Fatalf("max 2: %d windows", len(w))
	}
	if _, err := Windows(ids[:6], 1, 4, 3, 0); err == nil || !strings.Contains(err.Error(), "one window needs 7") {
		t.Fatalf("too short a text: %v", err)
	}
}

func equal(a, b []int) bool {
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
