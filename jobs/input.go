package jobs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

// source is a batch job's input: a regular file (read a first time to
// survey it, then again for the run), or a stream read once (stdin, a
// pipe, a FIFO).
type source struct {
	name    string
	r       io.Reader
	f       *os.File // nil for stdin
	st      os.FileInfo
	regular bool
}

// openSource opens the records at path ("-": stdin). Devices and folders
// are refused: a read of /dev/zero would never end.
func openSource(path string) (*source, error) {
	if path == "-" {
		src := &source{name: "stdin", r: os.Stdin}
		if st, err := os.Stdin.Stat(); err == nil {
			src.st = st
		}
		return src, nil
	}
	// O_NONBLOCK: opening a FIFO must not wait for a writer here; reads
	// are made blocking again below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	switch m := st.Mode(); {
	case m.IsRegular():
	case m&os.ModeNamedPipe != 0:
		return &source{name: path, r: &fifoReader{f: f}, f: f, st: st}, nil
	default:
		f.Close()
		return nil, fmt.Errorf("input %s is %s: give a records file, a FIFO, or - for stdin", path, fileKind(m))
	}
	if err := setBlocking(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	return &source{name: path, r: f, f: f, st: st, regular: true}, nil
}

// rewind starts the file over (regular files only).
func (s *source) rewind() error {
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

// Close closes the input file.
func (s *source) Close() {
	if s.f != nil {
		s.f.Close()
	}
}

// notSame refuses an output that is the input itself (through any link).
func (s *source) notSame(output string) error {
	if output == "-" || s.st == nil {
		return nil
	}
	if st, err := os.Stat(output); err == nil && os.SameFile(st, s.st) {
		return fmt.Errorf("--output %s is the input file %s: results would overwrite the records; give another --output", output, s.name)
	}
	return nil
}

// fifoReader reads a FIFO opened without waiting for a writer. Before any
// writer has come, a read would return end of file at once; so the first
// read first waits (poll) until a writer has sent data or come and gone.
// The wait happens on the reader goroutine, where a signal can leave it
// behind.
type fifoReader struct {
	f      *os.File
	waited bool
}

func (r *fifoReader) Read(p []byte) (int, error) {
	if !r.waited {
		// Poll a duplicate: a Close of f while the poll waits must not
		// wait for it.
		rc, err := r.f.SyscallConn()
		if err != nil {
			return 0, err
		}
		dup := -1
		var perr error
		if err := rc.Control(func(fd uintptr) { dup, perr = syscall.Dup(int(fd)) }); err != nil {
			return 0, err
		}
		if perr == nil {
			pfd := struct {
				fd             int32
				events, revent int16
			}{fd: int32(dup), events: 0x1} // POLLIN
			for {
				_, _, errno := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, ^uintptr(0)) // no timeout
				if errno != syscall.EINTR {
					if errno != 0 {
						perr = errno
					}
					break
				}
			}
			syscall.Close(dup)
		}
		if perr != nil {
			return 0, fmt.Errorf("wait for a writer: %w", perr)
		}
		r.waited = true
	}
	return r.f.Read(p)
}

// setBlocking clears O_NONBLOCK on f.
func setBlocking(f *os.File) error {
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		return errno
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFL, fl&^syscall.O_NONBLOCK); errno != 0 {
		return errno
	}
	return nil
}

// contextFolders sets where context_file paths resolve (the input file's
// folder; the working folder for stdin) and the folder they must lie in
// (ContextRoot, by default the same), with symbolic links resolved.
func (b *batch) contextFolders(in *source) error {
	base := "."
	if b.o.Input != "-" {
		base = filepath.Dir(b.o.Input)
	}
	var err error
	if b.base, err = filepath.Abs(base); err != nil {
		return err
	}
	root := b.o.ContextRoot
	if root == "" {
		root = b.base
	}
	if root, err = filepath.Abs(root); err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return fmt.Errorf("--context-root: %w", err)
	}
	b.root = root
	return nil
}

// document returns rec's document: the inline context or the context
// file's bytes. A document that could not fit the model's context at any
// tokenization is refused before it is tokenized.
func (b *batch) document(rec *Record) ([]byte, error) {
	if rec.ContextFile == "" {
		if err := b.tooLong(rec.where()+": the document", int64(len(rec.Context)), false); err != nil {
			return nil, err
		}
		return []byte(rec.Context), nil
	}
	path, err := b.contextPath(rec.ContextFile)
	if err == nil {
		var doc []byte
		if doc, err = readContextFile(path, b.maxDoc, b.tooLong); err == nil {
			return doc, nil
		}
	}
	return nil, fmt.Errorf("%s: cannot read context_file: %v", rec.where(), err)
}

// tooLong refuses a document of n bytes (at least n with more) that
// cannot fit the model's context with BOS and a query token.
func (b *batch) tooLong(what string, n int64, more bool) error {
	seq := b.e.M.Cfg.SeqLen
	return TooLong(b.e.Tok, what, n, more, seq-2, seq)
}

// contextPath resolves a context_file path and checks that it lies in the
// context root.
func (b *batch) contextPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(b.base, p)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(b.root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s lies outside %s: context files must lie under the input file's folder or --context-root", p, b.root)
	}
	return real, nil
}

// readContextFile reads a regular file of at most limit bytes (tooLong
// words the refusal of a longer one). FIFOs, devices and folders are
// refused: reading them may never end.
func readContextFile(path string, limit int64, tooLong func(what string, n int64, more bool) error) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", path, fileKind(st.Mode()))
	}
	if st.Size() > limit {
		return nil, tooLong(path, st.Size(), false)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit { // it grew while read
		return nil, tooLong(path, int64(len(b)), true)
	}
	return b, nil
}
