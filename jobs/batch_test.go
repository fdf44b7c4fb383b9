package jobs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/star-attn/star/rank"
)

func readOutputs(t *testing.T, path string) []Output {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Output
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var o Output
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		out = append(out, o)
	}
	return out
}

// byKey checks every (id, query) appears exactly once and indexes them.
func byKey(t *testing.T, outs []Output) map[string]Output {
	t.Helper()
	m := map[string]Output{}
	for _, o := range outs {
		k := fmt.Sprintf("%s#%d", o.ID, o.QueryIndex)
		if _, dup := m[k]; dup {
			t.Fatalf("result %s appears twice", k)
		}
		m[k] = o
	}
	return m
}

const docA = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball. One day, she saw a cat sitting under a tree."
const docB = "Tom had a big dog. The dog liked to run and jump. One day, the dog ran into the woods and Tom could not find him."

func writeInput(t *testing.T, dir string, lines ...string) string {
	p := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func batchSettings() Settings {
	return Settings{Settings: rank.Settings{Attention: "star", BlockSize: 12, AnchorSize: 6}, MaxTokens: 12}
}

func TestBatchMixedRecords(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	dir := t.TempDir()
	docFile := filepath.Join(dir, "doc.txt")
	os.WriteFile(docFile, []byte(docB), 0o644)
	in := writeInput(t, dir,
		mustJSON(map[string]any{"id": "a", "context": docA, "queries": []any{"Lily said", map[string]any{"query": "The cat", "max_tokens": 3, "logprobs": true}}}),
		mustJSON(map[string]any{"id": "f", "context_file": docFile, "query": "Tom"}),
		mustJSON(map[string]any{"id": "missing", "context_file": filepath.Join(dir, "nope.txt"), "queries": []any{"x", "y"}}),
		`{"id": "broken", "context": `,
		mustJSON(map[string]any{"id": "long", "context": strings.Repeat("The cat sat. ", 300), "query": "q"}),
		mustJSON(map[string]any{"id": "a", "context": docB, "query": "dup"}),
		mustJSON(map[string]any{"index": 9, "input_context": docB, "input_query": "The dog"}),
	)
	out := filepath.Join(dir, "out.jsonl")
	sum, err := e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings()})
	if err != nil {
		t.Fatal(err)
	}
	res := byKey(t, readOutputs(t, out))
	want := map[string]string{ // key -> substring of the error ("" = success)
		"a#0": "", "a#1": "", "f#0": "", "missing#0": "context_file", "missing#1": "context_file",
		"record-4#0": "malformed", "long#0": "context length", "a@record-6#0": "repeats", "9#0": "",
	}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(res), len(want), res)
	}
	for k, e := range want {
		o, ok := res[k]
		if !ok {
			t.Fatalf("no result for %s", k)
		}
		if e == "" && (o.Error != "" || len(o.Tokens) == 0) {
			t.Errorf("%s: error %q, tokens %d", k, o.Error, len(o.Tokens))
		}
		if e != "" && !strings.Contains(o.Error, e) {
			t.Errorf("%s: error %q, want it to mention %q", k, o.Error, e)
		}
	}
	if len(res["a#1"].Tokens) != 3 || len(res["a#1"].Logprobs) != 3 || res["a#0"].Logprobs != nil {
		t.Fatalf("per-query settings ignored: a#1 %d tokens %d logprobs, a#0 logprobs %v", len(res["a#1"].Tokens), len(res["a#1"].Logprobs), res["a#0"].Logprobs)
	}
	if sum.Failed != 5 || sum.Queries != 9 {
		t.Fatalf("summary %+v, want 9 results, 5 failed", sum)
	}
	// Run again: everything is done; the summary counts the 5 earlier
	// failures (the exit code depends on them) and the file is unchanged.
	before, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Queries != 0 || sum.Failed != 0 || sum.Skipped != 9 || sum.FailedEarly != 5 {
		t.Fatalf("rerun summary %+v, want 0 written, 9 skipped of which 5 failed earlier", sum)
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Fatalf("a rerun of a finished job changed the output:\n%s\n---\n%s", before, after)
	}
}

// A multi-query document's answers equal separate single-query runs, in
// any query order.
func TestBatchEncodeOnceEqualsSeparateRuns(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	qs := []string{"Lily said to the cat,", "The cat", "One day, Lily went"}
	dir := t.TempDir()
	s := batchSettings()
	for _, order := range [][]int{{0, 1, 2}, {2, 0, 1}} {
		var ordered []any
		for _, i := range order {
			ordered = append(ordered, qs[i])
		}
		in := writeInput(t, dir, mustJSON(map[string]any{"id": "d", "context": docA, "queries": ordered}))
		out := filepath.Join(dir, fmt.Sprintf("out%d.jsonl", order[0]))
		if _, err := e.RunBatch(BatchOptions{Input: in, Output: out, Settings: s, Logprobs: true}); err != nil {
			t.Fatal(err)
		}
		res := byKey(t, readOutputs(t, out))
		for pos, i := range order {
			got := res[fmt.Sprintf("d#%d", pos)]
			ctx, _ := EncodeContext(e.Tok, docA, false)
			q, _ := EncodeQuery(e.Tok, docA, qs[i], false)
			ref, err := e.Generate(Tokens{Context: ctx, Query: q}, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			compareRuns(t, ref, &Result{Tokens: got.Tokens, Logprobs: got.Logprobs}, 1e-6)
		}
	}
}

func TestBatchInterruptAndResume(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	dir := t.TempDir()
	var lines []string
	for i := 0; i < 6; i++ {
		lines = append(lines, mustJSON(map[string]any{"id": fmt.Sprint("r", i), "context": docA, "queries": []any{"Lily", "The cat"}}))
	}
	in := writeInput(t, dir, lines...)
	full := filepath.Join(dir, "full.jsonl")
	if _, err := e.RunBatch(BatchOptions{Input: in, Output: full, Settings: batchSettings()}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	stop := NewStop()
	n := 0
	e.Hook = func(rank int, stage string) {
		if stage == "phase2" {
			if n++; n == 5 {
				stop.Request("test") // a signal arrives during record 3's first query
			}
		}
	}
	defer func() { e.Hook = nil }()
	sum, err := e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings(), Stop: stop})
	if !errors.Is(err, ErrInterrupted) || !sum.Interrupted {
		t.Fatalf("err %v, want ErrInterrupted", err)
	}
	if got := len(readOutputs(t, out)); got != 5 {
		t.Fatalf("%d results after the interruption, want 5 (the query in flight finishes)", got)
	}
	// a crash mid-write leaves a partial line: resume cuts it
	f, _ := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"r2","query_index":1,"text":"half`)
	f.Close()
	e.Hook = nil
	sum, err = e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings()})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Repaired || sum.Skipped != 5 || sum.Queries != 7 {
		t.Fatalf("resume summary %+v: want repaired, 5 skipped, 7 written", sum)
	}
	got, want := byKey(t, readOutputs(t, out)), byKey(t, readOutputs(t, full))
	if len(got) != 12 || len(want) != 12 {
		t.Fatalf("%d results after resume, want 12", len(got))
	}
	for k, w := range want {
		if fmt.Sprint(got[k].Tokens) != fmt.Sprint(w.Tokens) || got[k].Error != w.Error || got[k].Text != w.Text {
			t.Fatalf("%s: resumed answer %+v differs from uninterrupted %+v", k, got[k], w)
		}
	}
}

func TestBatchKVPersistence(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	dir := t.TempDir()
	kv := filepath.Join(dir, "kv")
	in := writeInput(t, dir,
		mustJSON(map[string]any{"id": "a", "context": docA, "queries": []any{"Lily said"}}),
		mustJSON(map[string]any{"id": "b", "context": docB, "queries": []any{"Tom"}}))
	run := func(name string) (*BatchSummary, map[string]Output) {
		out := filepath.Join(dir, name)
		sum, err := e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings(), Logprobs: true})
		if err != nil {
			t.Fatal(err)
		}
		return sum, byKey(t, readOutputs(t, out))
	}
	e.KVDir = ""
	_, ref := run("ref.jsonl")
	e.KVDir = kv
	s1, r1 := run("first.jsonl")
	s2, r2 := run("second.jsonl")
	files, _ := filepath.Glob(filepath.Join(kv, "*.kv"))
	if s1.KVLoaded != 0 || s2.KVLoaded != 2 || len(files) != 2 {
		t.Fatalf("K/V loaded %d then %d times, %d files; want 0, 2, 2", s1.KVLoaded, s2.KVLoaded, len(files))
	}
	// corrupt one file, make the other stale (another model's fingerprint)
	os.WriteFile(files[0], []byte("garbage"), 0o644)
	e.W.Fingerprint, e.KVDir = "other", kv
	s3, r3 := run("third.jsonl")
	if s3.KVLoaded != 0 {
		t.Fatalf("stale or corrupt K/V files used (%d loads)", s3.KVLoaded)
	}
	if len(ref) != 2 {
		t.Fatalf("%d reference results, want 2", len(ref))
	}
	for k, w := range ref {
		for i, r := range []map[string]Output{r1, r2, r3} {
			if w.Error != "" || r[k].Error != "" {
				t.Fatalf("%s: errors in run %d: reference %q, this run %q", k, i+1, w.Error, r[k].Error)
			}
			compareRuns(t, &Result{Tokens: w.Tokens, Logprobs: w.Logprobs}, &Result{Tokens: r[k].Tokens, Logprobs: r[k].Logprobs}, 1e-6)
		}
	}
}

func TestOpenResultsRejectsForeignFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.jsonl")
	os.WriteFile(p, []byte("{\"id\":\"a\",\"query_index\":0}\nnot a result\n{\"id\":\"b\",\"query_index\":0}\n"), 0o644)
	if _, _, err := OpenResults(p); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err %v, want one naming line 2", err)
	}
}

// Progress that reaches its total: a full bar, every record counted, no
// time left; a plain line names the same counts.
func TestBatchProgressReachesTotal(t *testing.T) {
	for _, c := range []struct {
		term  bool
		total int
		want  []string
	}{
		{true, 3, []string{"[########################] ", "3/3 records", "6 results (1 failed, 2 resumed)", "ETA 0s"}},
		{false, 3, []string{"star jobs: 3/3 records", "6 results (1 failed, 2 resumed)", "ETA 0s"}},
		{false, -1, []string{"star jobs: 3/? records", "ETA ?"}}, // stdin: total unknown
	} {
		var buf strings.Builder
		p := newProgress(&buf, c.term, time.Nanosecond, c.total)
		p.start = p.start.Add(-time.Minute) // a minute of work done
		p.last = p.start
		p.update(&BatchSummary{Records: 3, Queries: 6, Failed: 1, Skipped: 2, Tokens: 60})
		p.done()
		for _, w := range c.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("terminal %v, total %d: progress %q lacks %q", c.term, c.total, buf.String(), w)
			}
		}
	}
}

// A stop that comes during the last query of the last record leaves
// nothing undone: the job is complete, not interrupted. One that comes
// during a record's first query interrupts it after that query, even in
// the last record, and the rest runs on resume.
func TestBatchStopNearTheEnd(t *testing.T) {
	e := loadEngine(t, storiesModels[0].path, 0)
	for _, c := range []struct {
		name        string
		at          int // stop during the at-th query (1-based) of 4
		interrupted bool
		results     int
	}{
		{"last query of the last record", 4, false, 4},
		{"first query of the last record", 3, true, 3},
		{"last query of the first record", 2, true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeInput(t, dir,
				mustJSON(map[string]any{"id": "a", "context": docA, "queries": []any{"Lily", "The cat"}}),
				mustJSON(map[string]any{"id": "b", "context": docB, "queries": []any{"Tom", "The dog"}}))
			out := filepath.Join(dir, "out.jsonl")
			stop := NewStop()
			n := 0
			e.Hook = func(rank int, stage string) {
				if stage == "phase2" {
					if n++; n == c.at {
						stop.Request("test")
					}
				}
			}
			defer func() { e.Hook = nil }()
			sum, err := e.RunBatch(BatchOptions{Input: in, Output: out, Settings: batchSettings(), Stop: stop})
			if got := errors.Is(err, ErrInterrupted); got != c.interrupted || sum.Interrupted != c.interrupted {
				t.Fatalf("err %v, interrupted %v; want interrupted %v", err, sum.Interrupted, c.interrupted)
			}
			if !c.interrupted && err != nil {
				t.Fatal(err)
			}
			if got := len(readOutputs(t, out)); got != c.results || sum.Queries != c.results {
				t.Fatalf("%d results on disk, %d counted; want %d", got, sum.Queries, c.results)
			}
		})
	}
}
