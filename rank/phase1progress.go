package rank

import (
	"fmt"
	"io"
	"time"
)

// phase1Progress prints a long phase 1's progress on rank 0: nothing for
// its first `after`, then a line at most every `every`, with the share
// done, the time spent and a linear estimate of the time left.
type phase1Progress struct {
	w           io.Writer
	rank        int
	after       time.Duration
	every       time.Duration
	start, last time.Time
	now         func() time.Time
}

func newPhase1Progress(w io.Writer, rank int, every time.Duration) *phase1Progress {
	if every <= 0 {
		every = 10 * time.Second
	}
	p := &phase1Progress{w: w, rank: rank, after: every / 2, every: every, now: time.Now}
	p.start = p.now()
	p.last = p.start
	return p
}

// update is called with the work done of total (any unit).
func (p *phase1Progress) update(done, total int64) {
	t := p.now()
	if total <= 0 || done >= total || t.Sub(p.start) < p.after || t.Sub(p.last) < p.every {
		return
	}
	p.last = t
	el := t.Sub(p.start)
	left := "?"
	if done > 0 {
		left = "about " + roundDur(time.Duration(float64(el)*float64(total-done)/float64(done)))
	}
	fmt.Fprintf(p.w, "star: phase 1: %.0f%% on rank %d, %s elapsed, %s left\n", 100*float64(done)/float64(total), p.rank, roundDur(el), left)
}

func roundDur(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
