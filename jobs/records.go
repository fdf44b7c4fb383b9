package jobs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Query is one question about a record's document, with optional
// per-query settings (unset: the record's, then the command line's).
type Query struct {
	Text        string
	MaxTokens   *int
	Temperature *float64
	TopP        *float64
	Seed        *uint64
	Stop        []string
	Logprobs    *bool
	// AnswerPrefix starts the answer: after the query (plain), or after
	// the assistant header (chat), as RULER's answer prefixes go.
	AnswerPrefix string
}

// Record is one document and its queries, as read from a batch input.
//
// JSON Lines (or a MessagePack stream of maps) with our fields:
//
//	{"id": "doc-1", "context": "…" | "context_file": "path",
//	 "queries": ["question", {"query": "…", "max_tokens": 32, "temperature": 0,
//	             "top_p": 1, "seed": 1, "stop": ["\n"], "logprobs": true}],
//	 "max_tokens": 64, "answer_prefix": " Answer:", …record-wide defaults…}
//
// or the RULER-style fields Star Attention's reference code reads:
//
//	{"index": 3, "input_context": "…", "input_query": "…", "outputs": […]}
type Record struct {
	Index       int    // 0-based position among the input's records
	Line        int    // line number (JSON Lines) or 0
	ID          string // "id", else RULER "index", else "record-<Index+1>"
	Context     string // inline document
	ContextFile string // or a path to it
	HasContext  bool
	Queries     []Query
	Err         error    // what is wrong with the record (then Queries may be empty)
	Sum         [32]byte // sha256 of the record's bytes as read
}

// RecordReader reads records one at a time from JSON Lines or MessagePack.
type RecordReader struct {
	r       *bufio.Reader
	lim     *limitScanner // r with a per-record byte budget (MessagePack)
	msgpack bool
	mp      *msgpack.Decoder
	index   int
	line    int
	dead    error // unrecoverable stream error (MessagePack cannot resync)
	// MaxRecord bounds one record's bytes (a JSON line or a MessagePack
	// value); a longer one becomes an error record and is skipped, so an
	// endless line cannot fill the memory. Default maxRecord.
	MaxRecord int64
}

// NewRecordReader reads format "jsonl", "msgpack" or "auto" (sniff the
// first byte: '{' is JSON, a MessagePack map header is MessagePack).
func NewRecordReader(r io.Reader, format string) (*RecordReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	rr := &RecordReader{r: br, MaxRecord: maxRecord}
	switch format {
	case "jsonl", "json":
	case "msgpack":
		rr.msgpack = true
	case "auto", "":
		for {
			b, err := br.Peek(1)
			if err != nil {
				break // empty input: JSON Lines with no records
			}
			if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
				br.ReadByte()
				rr.line += boolInt(b[0] == '\n')
				continue
			}
			rr.msgpack = b[0] != '{'
			break
		}
	default:
		return nil, checkFormat(format)
	}
	if rr.msgpack {
		rr.lim = &limitScanner{r: br}
		rr.mp = msgpack.NewDecoder(rr.lim)
	}
	return rr, nil
}

// checkFormat refuses an unknown input format name.
func checkFormat(format string) error {
	switch format {
	case "jsonl", "json", "msgpack", "auto", "":
		return nil
	}
	return fmt.Errorf("input format %q: use jsonl, msgpack or auto", format)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxRecord is the default bound on one record's bytes.
const maxRecord = 1 << 30

// Next returns the next record, or io.EOF. A malformed record comes back
// with Err set; reading goes on with the next line. A corrupt or truncated
// MessagePack stream cannot be resynchronised: that record carries the
// error and the next call returns io.EOF.
func (rr *RecordReader) Next() (*Record, error) {
	if rr.dead != nil {
		return nil, io.EOF
	}
	if rr.msgpack {
		return rr.nextMsgpack()
	}
	for {
		line, long, err := rr.readLine()
		if len(line) == 0 && !long && err != nil {
			return nil, err
		}
		rr.line++
		if !long && len(bytes.TrimSpace(line)) == 0 {
			if err != nil {
				return nil, err
			}
			continue
		}
		rec := &Record{Index: rr.index, Line: rr.line, Sum: sha256.Sum256(line)}
		rr.index++
		if long {
			rec.ID = fmt.Sprintf("record-%d", rec.Index+1)
			rec.Err = fmt.Errorf("line %d is longer than %d bytes: give long documents as context_file", rr.line, rr.MaxRecord)
			return rec, nil
		}
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			rec.ID = fmt.Sprintf("record-%d", rec.Index+1)
			rec.Err = fmt.Errorf("line %d: malformed JSON: %v", rr.line, err)
			return rec, nil
		}
		if d.More() {
			rec.ID = fmt.Sprintf("record-%d", rec.Index+1)
			rec.Err = fmt.Errorf("line %d: more than one JSON value on the line", rr.line)
			return rec, nil
		}
		fillRecord(rec, v)
		return rec, nil
	}
}

// readLine reads one line (newline included) of at most MaxRecord bytes.
// A longer line is skipped to its end and reported with long set (its
// bytes are not kept). err is io.EOF after the last line.
func (rr *RecordReader) readLine() (line []byte, long bool, err error) {
	for {
		chunk, err := rr.r.ReadSlice('\n')
		if !long {
			if int64(len(line)+len(chunk)) > rr.MaxRecord {
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			return line, long, nil
		default:
			return line, long, err
		}
	}
}

// nextMsgpack reads one MessagePack value. End of input exactly between
// two records is the end; anything else that stops a value (a truncated
// last record, corrupt bytes, a value over MaxRecord) is an error record,
// and the stream ends there.
func (rr *RecordReader) nextMsgpack() (*Record, error) {
	if _, err := rr.r.Peek(1); err == io.EOF {
		return nil, io.EOF
	}
	rr.lim.left = rr.MaxRecord
	raw, err := rr.mp.DecodeRaw()
	rec := &Record{Index: rr.index, Sum: sha256.Sum256(raw)}
	rr.index++
	var v any
	if err == nil {
		err = msgpack.Unmarshal(raw, &v)
	}
	if err != nil {
		rr.dead = err
		rec.ID = fmt.Sprintf("record-%d", rec.Index+1)
		switch {
		case rr.lim.left < 0:
			rec.Err = fmt.Errorf("record %d is longer than %d bytes; records after it cannot be read", rec.Index+1, rr.MaxRecord)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			rec.Err = fmt.Errorf("record %d: the input ends in the middle of this MessagePack record (truncated file?)", rec.Index+1)
		default:
			rec.Err = fmt.Errorf("record %d: corrupt MessagePack (%v); records after it cannot be read", rec.Index+1, err)
		}
		return rec, nil
	}
	fillRecord(rec, v)
	return rec, nil
}

// limitScanner is a bufio.Reader that fails once more than left bytes are
// read (left < 0 then tells so).
type limitScanner struct {
	r    *bufio.Reader
	left int64
}

var errRecordTooLong = errors.New("record too long")

func (l *limitScanner) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.left = -1
		return 0, errRecordTooLong
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitScanner) ReadByte() (byte, error) {
	if l.left <= 0 {
		l.left = -1
		return 0, errRecordTooLong
	}
	b, err := l.r.ReadByte()
	if err == nil {
		l.left--
	}
	return b, err
}

func (l *limitScanner) UnreadByte() error {
	err := l.r.UnreadByte()
	if err == nil {
		l.left++
	}
	return err
}

// where names the record in errors.
func (r *Record) where() string {
	if r.Line > 0 {
		return fmt.Sprintf("record %d (line %d)", r.Index+1, r.Line)
	}
	return fmt.Sprintf("record %d", r.Index+1)
}

// fillRecord interprets a decoded value as a record, setting Err for
// anything missing or of the wrong type.
func fillRecord(rec *Record, v any) {
	rec.ID = fmt.Sprintf("record-%d", rec.Index+1)
	m, ok := v.(map[string]any)
	if !ok {
		rec.Err = fmt.Errorf("%s: expected an object with context and queries, got %s", rec.where(), typeName(v))
		return
	}
	fail := func(format string, a ...any) {
		if rec.Err == nil {
			rec.Err = fmt.Errorf("%s: %s", rec.where(), fmt.Sprintf(format, a...))
		}
	}
	for _, k := range []string{"id", "index"} {
		if x, ok := m[k]; ok && x != nil {
			id, ok := scalarString(x)
			if !ok || id == "" {
				fail("%q must be a string or a number", k)
			} else {
				rec.ID = id
			}
			break
		}
	}
	fillDocument(rec, m, fail)
	fillQueries(rec, m, fail)
}

// fillDocument reads the record's one document field.
func fillDocument(rec *Record, m map[string]any, fail func(string, ...any)) {
	nctx := 0
	for _, k := range []string{"context", "input_context"} {
		if x, ok := m[k]; ok {
			nctx++
			s, ok := x.(string)
			if !ok {
				fail("%q must be a string", k)
			}
			rec.Context, rec.HasContext = s, true
		}
	}
	if x, ok := m["context_file"]; ok {
		nctx++
		s, ok := x.(string)
		if !ok || s == "" {
			fail(`"context_file" must be a non-empty path`)
		}
		rec.ContextFile, rec.HasContext = s, true
	}
	switch {
	case nctx == 0:
		fail(`no document: give "context", "context_file" or "input_context"`)
	case nctx > 1:
		fail(`give only one of "context", "context_file" and "input_context"`)
	}
}

// fillQueries reads the record's queries (strings or objects with their
// own settings) and its default settings.
func fillQueries(rec *Record, m map[string]any, fail func(string, ...any)) {
	var def Query
	parseQuerySettings(&def, m, fail)
	var qs []any
	if x, ok := m["queries"]; ok {
		arr, ok := x.([]any)
		if !ok {
			fail(`"queries" must be an array of strings or objects`)
		}
		qs = arr
	}
	for _, k := range []string{"query", "input_query"} {
		if x, ok := m[k]; ok {
			qs = append(qs, x)
		}
	}
	if len(qs) == 0 {
		fail(`no query: give "queries", "query" or "input_query"`)
	}
	for i, x := range qs {
		q := def
		switch t := x.(type) {
		case string:
			q.Text = t
		case map[string]any:
			txt, ok := t["query"]
			if !ok {
				txt, ok = t["text"]
			}
			s, sok := txt.(string)
			if !ok || !sok {
				fail(`query %d: an object query needs a "query" string`, i)
			}
			q.Text = s
			parseQuerySettings(&q, t, func(format string, a ...any) { fail("query %d: "+format, append([]any{i}, a...)...) })
		default:
			fail("query %d must be a string or an object, got %s", i, typeName(x))
		}
		if strings.TrimSpace(q.Text) == "" && rec.Err == nil {
			fail("query %d is empty", i)
		}
		rec.Queries = append(rec.Queries, q)
	}
}

// parseQuerySettings reads the optional per-query settings of m into q.
func parseQuerySettings(q *Query, m map[string]any, fail func(string, ...any)) {
	if x, ok := m["max_tokens"]; ok {
		f, ok := number(x)
		if !ok {
			fail(`"max_tokens" must be a non-negative integer, got %s`, typeName(x))
		} else if err := CheckMaxTokens(f); err != nil {
			fail("%v", err)
		} else {
			n := int(f)
			q.MaxTokens = &n
		}
	}
	if x, ok := m["temperature"]; ok {
		f, ok := number(x)
		if !ok {
			fail(`"temperature" must be a number >= 0, got %s`, typeName(x))
		} else if err := CheckTemperature(f); err != nil {
			fail("%v", err)
		} else {
			q.Temperature = &f
		}
	}
	if x, ok := m["top_p"]; ok {
		f, ok := number(x)
		if !ok {
			fail(`"top_p" must be a number in (0, 1], got %s`, typeName(x))
		} else if err := CheckTopP(f); err != nil {
			fail("%v", err)
		} else {
			q.TopP = &f
		}
	}
	if x, ok := m["seed"]; ok {
		f, ok := number(x)
		if !ok || f < 0 || f != math.Trunc(f) || f > 1<<53 {
			fail(`"seed" must be a non-negative integer`)
		} else {
			s := uint64(f)
			q.Seed = &s
		}
	}
	if x, ok := m["logprobs"]; ok {
		b, ok := x.(bool)
		if !ok {
			fail(`"logprobs" must be true or false`)
		} else {
			q.Logprobs = &b
		}
	}
	if x, ok := m["answer_prefix"]; ok {
		s, ok := x.(string)
		if !ok {
			fail(`"answer_prefix" must be a string`)
		} else {
			q.AnswerPrefix = s
		}
	}
	if x, ok := m["stop"]; ok {
		switch t := x.(type) {
		case string:
			q.Stop = []string{t}
		case []any:
			q.Stop = nil
			for _, s := range t {
				str, ok := s.(string)
				if !ok {
					fail(`"stop" must be a string or an array of strings`)
					break
				}
				q.Stop = append(q.Stop, str)
			}
		default:
			fail(`"stop" must be a string or an array of strings`)
		}
	}
}

func number(x any) (float64, bool) {
	switch t := x.(type) {
	case json.Number:
		f, err := t.Float64()
		if errors.Is(err, strconv.ErrRange) {
			return f, true // ±Inf: the range checks name it
		}
		return f, err == nil
	case float64:
		return t, true
	case float32:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint64:
		return float64(t), true
	case int8, int16, int32, int, uint8, uint16, uint32, uint:
		f, _ := strconv.ParseFloat(fmt.Sprint(t), 64)
		return f, true
	}
	return 0, false
}

func scalarString(x any) (string, bool) {
	switch t := x.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	}
	if f, ok := number(x); ok {
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return "", false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	}
	if _, ok := number(v); ok {
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// ErrNoRecords is returned when an input holds no records.
var ErrNoRecords = errors.New("the input holds no records")
