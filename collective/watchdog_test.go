package collective

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Watchdogs on every rank of a Local group; run(rank, comm) is each rank's
// work. It returns the hangs reported, by rank.
func watchLocal(t *testing.T, n int, timeout time.Duration, skip map[int]bool, run func(r int, c Comm, w *Watchdog)) map[int]Hang {
	t.Helper()
	comms := NewLocal(n)
	var mu sync.Mutex
	hangs := map[int]Hang{}
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			var w *Watchdog
			if !skip[r] {
				var err error
				w, err = NewWatchdog(comms[r], timeout, func(h Hang) {
					mu.Lock()
					hangs[r] = h
					mu.Unlock()
					comms[r].Abort(1) // ends the job, as main does
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
			run(r, Watch(comms[r], w), w)
			if w != nil && len(skip) == 0 {
				if err := w.Close(); err != nil {
					t.Errorf("rank %d: Close: %v", r, err)
				}
			}
		}(r)
	}
	wg.Wait()
	return hangs
}

// Ranks that compute for several timeouts between collectives are alive:
// their watchdogs keep answering, and nothing is reported.
func TestWatchdogQuietWhileRanksCompute(t *testing.T) {
	// Generous: a heartbeat goroutine starved for 2 s would be reported.
	const timeout = 2 * time.Second
	hangs := watchLocal(t, 3, timeout, nil, func(r int, c Comm, w *Watchdog) {
		w.SetPhase("phase 1")
		if r == 2 {
			time.Sleep(5 * timeout / 2) // a long phase 1 while the others wait
		}
		buf := make([]byte, 4)
		if err := c.Bcast(buf, 2); err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	})
	if len(hangs) != 0 {
		t.Fatalf("hangs reported while a rank computed: %v", hangs)
	}
}

// A rank that stops entirely (no watchdog runs: kill -STOP) leaves the
// others' heartbeat rounds incomplete: each reports the call it waits in
// and its phase, and the job ends.
func TestWatchdogReportsAStoppedRank(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var errs [3]error
	hangs := watchLocal(t, 3, timeout, map[int]bool{2: true}, func(r int, c Comm, w *Watchdog) {
		if r == 2 {
			return // stopped: never posts a round, never sends
		}
		w.SetPhase("phase 2 (token 7)")
		buf := make([]byte, 4)
		errs[r] = c.Bcast(buf, 2)
	})
	if len(hangs) == 0 {
		t.Fatal("no hang reported although rank 2 never answered")
	}
	for r, h := range hangs {
		if h.Step != "Bcast from rank 2" || h.Phase != "phase 2 (token 7)" || h.Waited < timeout {
			t.Fatalf("rank %d reported %+v", r, h)
		}
		if s := h.String(); !strings.Contains(s, "Bcast from rank 2") || !strings.Contains(s, "phase 2 (token 7)") {
			t.Fatalf("report %q lacks the step or the phase", s)
		}
	}
	for r := 0; r < 2; r++ {
		if !errors.Is(errs[r], ErrClosed) {
			t.Fatalf("rank %d: the blocked Bcast returned %v, want ErrClosed after the abort", r, errs[r])
		}
	}
}

// Close is collective: every rank's watch ends, none early.
func TestWatchdogClose(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		hangs := watchLocal(t, n, time.Second, nil, func(r int, c Comm, w *Watchdog) {
			time.Sleep(time.Duration(r) * 20 * time.Millisecond) // ranks close at different times
		})
		if len(hangs) != 0 {
			t.Fatalf("n=%d: %v", n, hangs)
		}
	}
}
