package jobs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Output is one result line of a batch job: one per query.
type Output struct {
	ID            string    `json:"id"`
	QueryIndex    int       `json:"query_index"`
	Text          string    `json:"text"`
	Tokens        []int     `json:"tokens"`
	Logprobs      []float64 `json:"logprobs,omitempty"`
	StopReason    string    `json:"stop_reason,omitempty"`
	ContextTokens int       `json:"context_tokens,omitempty"`
	QueryTokens   int       `json:"query_tokens,omitempty"`
	Timings       *Timings  `json:"timings,omitempty"`
	Error         string    `json:"error,omitempty"`
}

// key identifies a query's result across runs.
type key struct {
	id string
	q  int
}

// ResultFile appends result lines to a JSON Lines file, one write and one
// fsync per line, so a crash loses at most the line in flight.
type ResultFile struct {
	f      *os.File // nil: stdout
	w      io.Writer
	done   map[key]bool
	failed int // error results already in the file
	sync   bool
}

// OpenResults opens path for appending ("-": stdout, no resume). It reads
// the results already there (a rerun skips them), and repairs a truncated
// last line left by a crash. repaired reports whether it cut one.
func OpenResults(path string) (rf *ResultFile, repaired bool, err error) {
	if path == "-" {
		return &ResultFile{w: os.Stdout, done: map[key]bool{}}, false, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open output: %w", err)
	}
	done, failed, good, size, err := scanResults(f)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("output %s: %w", path, err)
	}
	if good < size {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("repair truncated last line of %s: %w", path, err)
		}
		repaired = true
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, false, err
	}
	return &ResultFile{f: f, w: f, done: done, failed: failed, sync: true}, repaired, nil
}

// scanResults reads existing result lines: the keys done, how many are
// errors, the offset after the last complete, valid line, and the file size. A bad line that is not
// the last one is an error: the file is not ours or was edited.
func scanResults(f *os.File) (map[key]bool, int, int64, int64, error) {
	done := map[key]bool{}
	failed := 0
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, 0, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var off int64
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 {
			break
		}
		n++
		complete := err == nil
		var o struct {
			ID         *string `json:"id"`
			QueryIndex *int    `json:"query_index"`
			Error      string  `json:"error"`
		}
		bad := json.Unmarshal(bytes.TrimSpace(line), &o) != nil || o.ID == nil || o.QueryIndex == nil
		if !complete || bad {
			if !complete || isLastLine(br) {
				return done, failed, off, st.Size(), nil // the crash's partial line: cut it
			}
			return nil, 0, 0, 0, fmt.Errorf("line %d is not a result line (id, query_index); move the file away or fix it before resuming", n)
		}
		done[key{*o.ID, *o.QueryIndex}] = true
		failed += boolInt(o.Error != "")
		off += int64(len(line))
		if err != nil {
			break
		}
	}
	return done, failed, off, st.Size(), nil
}

func isLastLine(br *bufio.Reader) bool {
	_, err := br.Peek(1)
	return err == io.EOF
}

// Done reports whether the result for (id, query) is already written.
func (rf *ResultFile) Done(id string, q int) bool { return rf.done[key{id, q}] }

// Count is the number of results already in the file.
func (rf *ResultFile) Count() int { return len(rf.done) }

// Failed is the number of error results the file held when opened.
func (rf *ResultFile) Failed() int { return rf.failed }

// Write appends one result line and makes it durable.
func (rf *ResultFile) Write(o *Output) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := rf.w.Write(b); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if rf.sync {
		if err := rf.f.Sync(); err != nil {
			return fmt.Errorf("flush result: %w", err)
		}
	}
	rf.done[key{o.ID, o.QueryIndex}] = true
	return nil
}

// Close closes the file.
func (rf *ResultFile) Close() error {
	if rf.f != nil {
		return rf.f.Close()
	}
	return nil
}
