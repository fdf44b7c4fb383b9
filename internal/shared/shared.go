// Package shared locates the read-only ../shared data folder (models,
// tokenizers, reference outputs) that tests use, skipping when it is absent.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

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

// Path returns the shared file at rel, skipping the test when the shared
// folder or the file is missing.
func Path(t testing.TB, rel string) string {
	t.Helper()
	d := Dir()
	if d == "" {
		t.Skipf("shared data folder ../shared not found beside the repository (set STAR_SHARED); skipping %s", rel)
	}
	p := filepath.Join(d, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared file %s missing: %v", p, err)
	}
	return p
}
