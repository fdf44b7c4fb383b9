package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fault suite: bad input and faults a careful user or an adversary
// would try. Each case names the command, the exit code and a fragment of
// the one-line message it must give, and checks the data afterwards:
// files it must not touch are compared byte for byte, and a case may add
// its own check (results exactly once, and so on).
//
// Cases live in tables beside the code they guard (faults_*_test.go) and
// all run through runFaults.

// mpiLimit bounds one mpirun of the suite (a hang, not a speed check).
const mpiLimit = 3 * time.Minute

// fault is one case of the suite.
type fault struct {
	name string
	// np > 0 runs the command under mpirun with np ranks; 0 runs it in
	// this process.
	np int
	// prep makes the case's files in d and returns star's arguments.
	prep func(t *testing.T, d *faultDir) []string
	code int    // expected exit code
	want string // fragment of stderr ("" : no message check)
	// check, if set, looks at the data afterwards.
	check func(t *testing.T, d *faultDir, stdout, stderr string)
}

// faultDir is one case's scratch folder, with the files it must leave
// untouched.
type faultDir struct {
	dir       string
	untouched map[string][32]byte // path -> sha256 of its content at prep time
}

// path returns name inside the case's folder.
func (d *faultDir) path(name string) string { return filepath.Join(d.dir, name) }

// write creates name with text and returns its path.
func (d *faultDir) write(t *testing.T, name, text string) string {
	t.Helper()
	p := d.path(name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// keep records p's content: the case fails if the command changes it.
func (d *faultDir) keep(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	d.untouched[p] = sha256.Sum256(b)
	return p
}

// runFaults runs every case as its own subtest.
func runFaults(t *testing.T, cases []fault) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.np > 0 {
				needMPI(t)
			}
			d := &faultDir{dir: t.TempDir(), untouched: map[string][32]byte{}}
			args := c.prep(t, d)
			var code int
			var out, errOut string
			if c.np > 0 {
				code, out, errOut, _ = mpirun(t, mpiLimit, append([]string{"-np", fmt.Sprint(c.np)}, args...)...)
			} else {
				code, out, errOut = star(t, args...)
			}
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, c.code, lastLines(errOut, 6))
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic:") {
				t.Fatalf("stack trace on stderr:\n%s", errOut)
			}
			if c.want != "" && !strings.Contains(errOut, c.want) {
				t.Fatalf("stderr does not say %q:\n%s", c.want, lastLines(errOut, 6))
			}
			for p, sum := range d.untouched {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatalf("%s was removed or made unreadable: %v", p, err)
				}
				if sha256.Sum256(b) != sum {
					t.Fatalf("%s was changed (now %d bytes: %q)", p, len(b), clip(b, 120))
				}
			}
			if c.check != nil {
				c.check(t, d, out, errOut)
			}
		})
	}
}

// clip shortens b for a message.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
