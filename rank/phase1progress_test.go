package rank

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPhase1ProgressThrottles(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	p := newPhase1Progress(&buf, 0, 10*time.Second)
	p.now = func() time.Time { return now }
	p.start, p.last = now, now
	for _, step := range []struct {
		at         time.Duration
		done, tot  int64
		wantPrints int
	}{
		{1 * time.Second, 10, 100, 0},  // too early
		{6 * time.Second, 20, 100, 0},  // before the first interval
		{10 * time.Second, 25, 100, 1}, // first line
		{15 * time.Second, 40, 100, 1}, // within the interval
		{21 * time.Second, 50, 100, 2},
		{40 * time.Second, 100, 100, 2}, // done: the caller reports the end
	} {
		now = time.Unix(0, 0).Add(step.at)
		p.update(step.done, step.tot)
		if got := strings.Count(buf.String(), "\n"); got != step.wantPrints {
			t.Fatalf("at %v: %d lines, want %d:\n%s", step.at, got, step.wantPrints, buf.String())
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != "star: phase 1: 25% on rank 0, 10s elapsed, about 30s left" {
		t.Fatalf("line %q", lines[0])
	}
	if !strings.Contains(lines[1], "50%") || !strings.Contains(lines[1], "about 21s left") {
		t.Fatalf("line %q", lines[1])
	}
}
