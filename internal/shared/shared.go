// Package shared locates the read-only ../shared data folder (models,
// tokenizers, reference outputs) that tests use, and is the one way tests
// report a missing prerequisite (shared data, a tool): a skip on a
// developer's machine, a failure in CI.
package shared

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// SkipPrefix starts the message of every skip for a missing prerequisite;
// .ci/run looks for skipped tests and fails on any not on its list of
// intentional skips.
const SkipPrefix = "prerequisite missing: "

// Dir returns the shared folder beside the repository root, or "" if absent.
// STAR_SHARED overrides the location.
func Dir() string {
	if d := os.Getenv("STAR_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(d), "shared")
			if st, err := os.Stat(s); err == nil && st.IsDir() {
				return s
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// InCI reports whether the tests run in CI (CI set, and not "false" or
// "0"), where a missing prerequisite is a failure.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends the test for a missing prerequisite described by the
// message: a skip starting with SkipPrefix, or in CI a failure.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := SkipPrefix + fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal(msg + " (CI is set: every prerequisite must be present; see scripts/setup.sh)")
	}
	t.Skip(msg)
}

// Path returns the shared file at rel, ending the test through Missing
// when the shared folder or the file is missing.
func Path(t testing.TB, rel string) string {
	t.Helper()
	d := Dir()
	if d == "" {
		Missing(t, "shared data folder ../shared not found beside the repository (set STAR_SHARED); needed for %s", rel)
	}
	p := filepath.Join(d, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		Missing(t, "shared file %s: %v", p, err)
	}
	return p
}

// ReadJSON decodes the shared JSON file at rel into v.
func ReadJSON(t testing.TB, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("shared file %s: %v", rel, err)
	}
}
