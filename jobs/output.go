package jobs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Results files.
//
// A results file is JSON Lines, one line per answered query: an Output
// with its id, query_index and the fingerprint of what produced it. star
// writes only to an output that is absent, empty (or blank), or a results
// file of its own: every non-blank line a result line, except that the last
// one may be a result line a crash cut short (it is removed and its query
// runs again). Anything else is refused, so a text file, a records file or
// a model given as --output by mistake is never changed.
//
// For the job's life the output is held under an exclusive flock; a second
// job on the same file is refused (BusyError). Results are appended with
// O_APPEND, one write and one fsync per line; a failed write is cut back
// so that the file only ever holds complete lines.

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
	// Fingerprint identifies what produced the result: the model, the
	// document, the query and the settings that shape the answer. A
	// resumed job compares it with the record it reads now.
	Fingerprint string `json:"fingerprint"`
}

// key identifies a query's result across runs.
type key struct {
	id string
	q  int
}

func (k key) String() string { return fmt.Sprintf("%s#%d", k.id, k.q) }

// prior is what the output already says of one query.
type prior struct {
	fp     string // "" : written by a star that did not record fingerprints
	failed bool
}

// ResultFile appends result lines to a JSON Lines file.
type ResultFile struct {
	path string
	f    *os.File  // nil: stdout
	w    io.Writer // f or stdout
	size int64     // bytes of complete lines in the file
	done map[key]prior
	lock string // holder-information file beside the output ("" : none)
}

// BusyError is returned when another job holds the output.
type BusyError struct {
	Path   string
	Holder string // "pid N on HOST since T", or what is known
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("output %s is already being written by %s: wait for that job to end, or give this one another --output", e.Path, e.Holder)
}

// NotResultsError is returned when the output exists but is not a
// results file of star's.
type NotResultsError struct {
	Path string
	Why  string
}

func (e *NotResultsError) Error() string {
	return fmt.Sprintf("output %s is not a star results file (%s); star only appends to its own results: give another --output, or move this file away if you mean to replace it", e.Path, e.Why)
}

// OpenResults opens path for appending results ("-": stdout, no resume),
// after checking it is a results file of ours and taking its lock. It
// reads the results already there (a rerun skips them) and cuts a partial
// last line left by a crash; repaired reports whether it cut one.
func OpenResults(path string) (rf *ResultFile, repaired bool, err error) {
	if path == "-" {
		return &ResultFile{path: path, w: os.Stdout, done: map[key]prior{}}, false, nil
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, false, &NotResultsError{Path: path, Why: "it is " + fileKind(st.Mode()) + ", not a regular file; use - for stdout"}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open output: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() { // replaced between Stat and Open
		err = &NotResultsError{Path: path, Why: "it is " + fileKind(st.Mode()) + ", not a regular file"}
	}
	if err != nil {
		f.Close()
		return nil, false, err
	}
	lockInfo := lockInfoPath(path)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, &BusyError{Path: path, Holder: lockHolder(lockInfo, st)}
		}
		return nil, false, fmt.Errorf("lock output %s: %w", path, err)
	}
	rf = &ResultFile{path: path, f: f, w: f, done: map[key]prior{}}
	good, err := rf.scan()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if good < st.Size() {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("cut the partial last line of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("cut the partial last line of %s: %w", path, err)
		}
		repaired = true
	}
	rf.size = good
	host, _ := os.Hostname()
	info := fmt.Sprintf("pid %d on %s since %s\n", os.Getpid(), host, time.Now().Format(time.RFC3339))
	if os.WriteFile(lockInfo, []byte(info), 0o644) == nil {
		rf.lock = lockInfo
	}
	return rf, repaired, nil
}

// lockInfoPath names the file where the job holding path's lock says who
// it is (the lock itself is the flock on path).
func lockInfoPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".star-lock")
}

// lockHolder describes the process holding the lock on the file st.
func lockHolder(info string, st os.FileInfo) string {
	if b, err := os.ReadFile(info); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return strings.TrimSpace(string(b))
	}
	if pid := flockHolderPID(st); pid > 0 {
		host, _ := os.Hostname()
		return fmt.Sprintf("pid %d on %s", pid, host)
	}
	return "another process"
}

// flockHolderPID finds, in /proc/locks, the process holding a flock on the
// file st (0 if unknown).
func flockHolderPID(st os.FileInfo) int {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	want := fmt.Sprintf(":%d", sys.Ino)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
		if len(f) >= 6 && f[1] == "FLOCK" && strings.HasSuffix(f[5], want) {
			pid, _ := strconv.Atoi(f[4])
			return pid
		}
	}
	return 0
}

// fileKind names a non-regular file's type for messages.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// resultLine is what a line must hold to be a result.
type resultLine struct {
	ID          *string `json:"id"`
	QueryIndex  *int    `json:"query_index"`
	Error       string  `json:"error"`
	Fingerprint string  `json:"fingerprint"`
}

// scan reads the results already in the file and returns the offset just
// after its last complete result line. Blank lines are allowed; any other
// line that is not a result makes the file foreign, except a partial last
// line (no newline) that starts like one of ours.
func (rf *ResultFile) scan() (good int64, err error) {
	if _, err := rf.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(rf.f, 1<<20)
	var off int64
	results := 0
	for n := 1; ; n++ {
		line, rerr := br.ReadBytes('\n')
		if len(line) == 0 {
			if rerr != nil && rerr != io.EOF {
				return 0, fmt.Errorf("read output %s: %w", rf.path, rerr)
			}
			return off, nil
		}
		if rerr != nil && rerr != io.EOF {
			return 0, fmt.Errorf("read output %s: %w", rf.path, rerr)
		}
		complete := rerr == nil
		trimmed := bytes.TrimSpace(line)
		if !complete {
			// The crash's partial line: cut it if the rest of the file is
			// results and it starts the way star writes a result.
			if len(trimmed) == 0 || bytes.HasPrefix(trimmed, []byte(`{"id":`)) {
				return off, nil
			}
			return 0, &NotResultsError{Path: rf.path, Why: fmt.Sprintf("its last line %d is not a result: %q", n, clip(trimmed, 60))}
		}
		if len(trimmed) > 0 {
			var o resultLine
			if json.Unmarshal(trimmed, &o) != nil || o.ID == nil || o.QueryIndex == nil {
				why := fmt.Sprintf("line %d is not a result line with id and query_index: %q", n, clip(trimmed, 60))
				if results == 0 && n == 1 {
					why = fmt.Sprintf("its first line is not a result line with id and query_index: %q", clip(trimmed, 60))
				}
				return 0, &NotResultsError{Path: rf.path, Why: why}
			}
			rf.done[key{*o.ID, *o.QueryIndex}] = prior{fp: o.Fingerprint, failed: o.Error != ""}
			results++
		}
		off += int64(len(line))
	}
}

// clip shortens b for a message.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(bytes.ToValidUTF8(b[:n], []byte("?"))) + "…"
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// Prior reports whether the file holds the result for (id, q), and its
// fingerprint.
func (rf *ResultFile) Prior(id string, q int) (fp string, ok bool) {
	p, ok := rf.done[key{id, q}]
	return p.fp, ok
}

// Done reports whether the result for (id, q) is already written.
func (rf *ResultFile) Done(id string, q int) bool {
	_, ok := rf.done[key{id, q}]
	return ok
}

// Count is the number of results in the file.
func (rf *ResultFile) Count() int { return len(rf.done) }

// Failed is the number of error results in the file.
func (rf *ResultFile) Failed() int {
	n := 0
	for _, p := range rf.done {
		n += boolInt(p.failed)
	}
	return n
}

// Write appends one result line and makes it durable. If the write or the
// flush fails (a full disk), the file is cut back to its last complete
// line and the error returned: the file never holds a partial line of
// this job, and a result counts only once it is on disk.
func (rf *ResultFile) Write(o *Output) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := rf.w.Write(b); err != nil {
		return rf.undo(fmt.Errorf("write result to %s: %w", rf.path, err))
	}
	if rf.f != nil {
		if err := rf.f.Sync(); err != nil {
			return rf.undo(fmt.Errorf("flush result to %s: %w", rf.path, err))
		}
	}
	rf.size += int64(len(b))
	rf.done[key{o.ID, o.QueryIndex}] = prior{fp: o.Fingerprint, failed: o.Error != ""}
	return nil
}

// undo cuts the file back to its complete lines after a failed write.
func (rf *ResultFile) undo(err error) error {
	if rf.f == nil {
		return err
	}
	if terr := rf.f.Truncate(rf.size); terr != nil {
		return fmt.Errorf("%w; cutting the partial line failed too (%v): the next run cuts it", err, terr)
	}
	rf.f.Sync()
	return err
}

// Remove drops the results of keys from the file (to answer them again).
// The file is rewritten beside itself and renamed into place, under the
// lock, so a crash leaves either the old file or the new one.
func (rf *ResultFile) Remove(keys map[key]bool) error {
	if len(keys) == 0 {
		return nil
	}
	if rf.f == nil {
		for k := range keys {
			delete(rf.done, k)
		}
		return nil
	}
	dir := filepath.Dir(rf.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(rf.path)+".redo-*")
	if err != nil {
		return fmt.Errorf("rewrite %s without the changed results: %w", rf.path, err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Hold the new file's lock before it takes the output's name.
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("lock the rewritten %s: %w", rf.path, err)
	}
	if st, err := rf.f.Stat(); err == nil {
		tmp.Chmod(st.Mode().Perm())
	}
	if _, err := rf.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(io.LimitReader(rf.f, rf.size), 1<<20)
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var size int64
	for {
		line, rerr := br.ReadBytes('\n')
		if len(line) > 0 {
			var o resultLine
			drop := false
			if json.Unmarshal(bytes.TrimSpace(line), &o) == nil && o.ID != nil && o.QueryIndex != nil {
				drop = keys[key{*o.ID, *o.QueryIndex}]
			}
			if !drop {
				bw.Write(line)
				size += int64(len(line))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", rf.path, rerr)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("rewrite %s: %w", rf.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("rewrite %s: %w", rf.path, err)
	}
	// From now on results are appended to the new file.
	if err := setAppend(tmp); err != nil {
		return fmt.Errorf("rewrite %s: %w", rf.path, err)
	}
	if err := os.Rename(tmp.Name(), rf.path); err != nil {
		return fmt.Errorf("replace %s: %w", rf.path, err)
	}
	keep = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	rf.f.Close() // releases the old file's lock; tmp holds the new one's
	rf.f, rf.w, rf.size = tmp, tmp, size
	for k := range keys {
		delete(rf.done, k)
	}
	return nil
}

// Close releases the lock and closes the file.
func (rf *ResultFile) Close() error {
	if rf.f == nil {
		return nil
	}
	if rf.lock != "" {
		if b, err := os.ReadFile(rf.lock); err == nil && strings.HasPrefix(string(b), fmt.Sprintf("pid %d ", os.Getpid())) {
			os.Remove(rf.lock)
		}
	}
	return rf.f.Close()
}

// setAppend turns on O_APPEND for f's later writes.
func setAppend(f *os.File) error {
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		return errno
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFL, fl|syscall.O_APPEND); errno != 0 {
		return errno
	}
	return nil
}
