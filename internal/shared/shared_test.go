package shared

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingChild is the child side of TestMissing: it runs only when
// that test starts this binary with STAR_SHARED_CHILD set.
func TestMissingChild(t *testing.T) {
	if os.Getenv("STAR_SHARED_CHILD") == "" {
		t.Skip("child of TestMissing only")
	}
	Path(t, "no/such/file")
	t.Log("reached after a missing file")
}

// A missing shared file skips with the recognisable prefix on a
// developer's machine and fails in CI; a present file is returned.
func TestMissing(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		ci   string
		want string // the test's result line
	}{
		{"", "--- SKIP: TestMissingChild"},
		{"false", "--- SKIP: TestMissingChild"},
		{"true", "--- FAIL: TestMissingChild"},
		{"1", "--- FAIL: TestMissingChild"},
	} {
		t.Run("CI="+c.ci, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run", "^TestMissingChild$", "-test.v")
			cmd.Env = append(os.Environ(), "STAR_SHARED_CHILD=1", "STAR_SHARED="+dir, "CI="+c.ci)
			out, _ := cmd.CombinedOutput()
			s := string(out)
			if !strings.Contains(s, c.want) || !strings.Contains(s, SkipPrefix) || strings.Contains(s, "reached after") {
				t.Fatalf("CI=%q: want %q with %q and the test ended; output:\n%s", c.ci, c.want, SkipPrefix, s)
			}
		})
	}
	// STAR_SHARED is honoured and a present file is returned.
	if err := os.WriteFile(filepath.Join(dir, "f.json"), []byte(`{"a": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STAR_SHARED", dir)
	if got := Path(t, "f.json"); got != filepath.Join(dir, "f.json") {
		t.Fatalf("Path = %q, want %q", got, filepath.Join(dir, "f.json"))
	}
	var v struct{ A int }
	if ReadJSON(t, "f.json", &v); v.A != 3 {
		t.Fatalf("ReadJSON gave %+v, want A = 3", v)
	}
}
