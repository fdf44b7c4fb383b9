package jobs

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func readAll(t *testing.T, in string, format string) []*Record {
	t.Helper()
	rr, err := NewRecordReader(strings.NewReader(in), format)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Record
	for {
		r, err := rr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

func TestRecordParsing(t *testing.T) {
	cases := []struct {
		name    string
		line    string
		id      string
		queries int
		errHas  string
	}{
		{"ours", `{"id":"d1","context":"text","queries":["a",{"query":"b","max_tokens":3,"stop":["\n"],"logprobs":true}]}`, "d1", 2, ""},
		{"numeric id", `{"id":17,"context":"text","query":"q"}`, "17", 1, ""},
		{"ruler", `{"index":3,"input_context":"ctx","input_query":"q","outputs":["x"],"length":10}`, "3", 1, ""},
		{"context file", `{"context_file":"/tmp/x","queries":["q"]}`, "record-1", 1, ""},
		{"no context", `{"id":"x","queries":["q"]}`, "x", 1, "no document"},
		{"two contexts", `{"context":"a","context_file":"b","queries":["q"]}`, "record-1", 1, "only one"},
		{"no query", `{"context":"a"}`, "record-1", 0, "no query"},
		{"empty query", `{"context":"a","queries":["  "]}`, "record-1", 1, "empty"},
		{"bad queries type", `{"context":"a","queries":"q"}`, "record-1", 0, "array"},
		{"bad max_tokens", `{"context":"a","queries":[{"query":"q","max_tokens":-1}]}`, "record-1", 1, "max_tokens"},
		{"fractional max_tokens", `{"context":"a","query":"q","max_tokens":2.5}`, "record-1", 1, "max_tokens"},
		{"bad temperature", `{"context":"a","query":"q","temperature":"hot"}`, "record-1", 1, "temperature"},
		{"bad top_p", `{"context":"a","query":"q","top_p":0}`, "record-1", 1, "top_p"},
		{"bad stop", `{"context":"a","query":"q","stop":[1]}`, "record-1", 1, "stop"},
		{"answer prefix", `{"context":"a","queries":[{"query":"q","answer_prefix":" Answer:"}],"answer_prefix":" A:"}`, "record-1", 1, ""},
		{"bad answer prefix", `{"context":"a","query":"q","answer_prefix":3}`, "record-1", 1, "answer_prefix"},
		{"context not string", `{"context":5,"query":"q"}`, "record-1", 1, "string"},
		{"not an object", `["context","q"]`, "record-1", 0, "object"},
		{"malformed", `{"context": "a", `, "record-1", 0, "malformed JSON"},
		{"two values", `{"context":"a","query":"q"} {}`, "record-1", 0, "more than one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := readAll(t, c.line+"\n", "jsonl")
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
			if r.ID != c.id {
				t.Errorf("id %q, want %q", r.ID, c.id)
			}
			if c.errHas == "" && r.Err != nil {
				t.Fatalf("unexpected error: %v", r.Err)
			}
			if c.errHas != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), c.errHas)) {
				t.Fatalf("error %v, want one mentioning %q", r.Err, c.errHas)
			}
			if c.errHas == "" && len(r.Queries) != c.queries {
				t.Fatalf("%d queries, want %d", len(r.Queries), c.queries)
			}
		})
	}
}

func TestRecordDefaultsAndOverrides(t *testing.T) {
	recs := readAll(t, `{"context":"c","max_tokens":9,"temperature":0.5,"queries":["a",{"query":"b","max_tokens":2}]}`, "auto")
	q := recs[0].Queries
	if *q[0].MaxTokens != 9 || *q[0].Temperature != 0.5 || *q[1].MaxTokens != 2 || *q[1].Temperature != 0.5 {
		t.Fatalf("record defaults not applied or not overridden: %+v %+v", q[0], q[1])
	}
}

func TestRecordLinesAndBlank(t *testing.T) {
	in := "\n{\"context\":\"a\",\"query\":\"q\"}\n\n  \nbroken\n{\"context\":\"b\",\"query\":\"q\"}"
	recs := readAll(t, in, "auto")
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	if recs[0].Line != 2 || recs[1].Line != 5 || recs[1].Err == nil || recs[2].Line != 6 || recs[2].Index != 2 {
		t.Fatalf("lines/indices wrong: %d %d %d (index %d)", recs[0].Line, recs[1].Line, recs[2].Line, recs[2].Index)
	}
}

func TestRecordMessagePack(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.Encode(map[string]any{"id": "m1", "context": "doc", "queries": []any{"q1", map[string]any{"query": "q2", "max_tokens": 4}}})
	enc.Encode(map[string]any{"index": 5, "input_context": "doc", "input_query": "q"})
	enc.Encode(map[string]any{"id": "m3"})
	recs := readAll(t, buf.String(), "auto")
	if len(recs) != 3 || recs[0].ID != "m1" || len(recs[0].Queries) != 2 || *recs[0].Queries[1].MaxTokens != 4 ||
		recs[1].ID != "5" || recs[1].Err != nil || recs[2].Err == nil {
		t.Fatalf("msgpack records parsed wrong: %+v %+v %+v", recs[0], recs[1], recs[2])
	}
	// a corrupt tail ends the stream with one error record
	b := append(buf.Bytes()[:len(buf.Bytes())-3:len(buf.Bytes())-3], 0xc1)
	recs = readAll(t, string(b), "msgpack")
	if last := recs[len(recs)-1]; last.Err == nil || !strings.Contains(last.Err.Error(), "MessagePack") {
		t.Fatalf("corrupt stream: last record %+v", last)
	}
}

// Fuzz: any input gives records or errors, never a panic; every record
// without an error has a document and at least one non-empty query.
func FuzzRecordReader(f *testing.F) {
	for _, s := range []string{
		`{"id":"d1","context":"text","queries":["a",{"query":"b","max_tokens":3}]}`,
		`{"index":3,"input_context":"ctx","input_query":"q"}`,
		`{"context_file":"x","query":"q","stop":["a","b"],"seed":3,"top_p":0.5}`,
		"{}\n[]\nnull\n\"s\"\n", "\x82\xa2id\xa1x", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, format := range []string{"auto", "jsonl", "msgpack"} {
			rr, err := NewRecordReader(bytes.NewReader(b), format)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 1000; i++ {
				r, err := rr.Next()
				if err != nil {
					break
				}
				if r.ID == "" {
					t.Fatalf("record without id: %+v", r)
				}
				if r.Err == nil {
					if !r.HasContext || len(r.Queries) == 0 {
						t.Fatalf("record accepted without context or queries: %+v", r)
					}
					for _, q := range r.Queries {
						if strings.TrimSpace(q.Text) == "" {
							t.Fatalf("empty query accepted: %+v", r)
						}
					}
				}
			}
		}
	})
}
