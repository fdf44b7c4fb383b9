package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Any bytes as an existing output: OpenResults either refuses and leaves
// the file as it was, or accepts a file whose every complete line is a
// result or blank, cutting at most a last line without its newline that
// starts like a result; the results it counts are those lines.
func FuzzResultsFile(f *testing.F) {
	for _, s := range []string{
		"", "\n", "{\"id\":\"a\",\"query_index\":0,\"text\":\"x\",\"tokens\":[]}\n",
		"{\"id\":\"a\",\"query_index\":0}\n{\"id\":\"a\",\"query_index\":1,\"fingerprint\":\"f\"}\n{\"id\":\"b\",\"query",
		"hello\n", "{\"id\":\"a\",\"query_index\":0}\nnot\n", "{\"note\":1}", "{\"id\":",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "out.jsonl")
		os.WriteFile(p, b, 0o644)
		rf, repaired, err := OpenResults(p)
		after, _ := os.ReadFile(p)
		if err != nil {
			var nr *NotResultsError
			if !errors.As(err, &nr) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if !bytes.Equal(after, b) {
				t.Fatalf("refused (%v) but changed the file", err)
			}
			return
		}
		defer rf.Close()
		if !bytes.HasPrefix(b, after) {
			t.Fatalf("accepted file was changed other than by cutting its end")
		}
		cut := b[len(after):]
		if repaired != (len(cut) > 0) || bytes.Contains(cut, []byte("\n")) {
			t.Fatalf("cut %q (repaired %v): only a last line without newline may go", cut, repaired)
		}
		if len(bytes.TrimSpace(cut)) > 0 && !bytes.HasPrefix(bytes.TrimSpace(cut), []byte(`{"id":`)) {
			t.Fatalf("cut a partial line %q that does not start like a result", cut)
		}
		n := 0
		for _, line := range bytes.Split(after, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var o resultLine
			if json.Unmarshal(bytes.TrimSpace(line), &o) != nil || o.ID == nil || o.QueryIndex == nil {
				t.Fatalf("accepted a file with the line %q", line)
			}
			n++
		}
		if rf.Count() > n {
			t.Fatalf("%d results counted from %d result lines", rf.Count(), n)
		}
	})
}
