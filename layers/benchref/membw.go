package benchref

import (
	"sync"
	"time"
)

// bestRead splits n elements of elemBytes over threads goroutines (parts
// aligned to 64 elements), has each run read(lo, hi) over its part, and
// returns the best of five rates in bytes/s. read returns what it summed,
// kept so the reads cannot be optimised away.
func bestRead(threads, n, elemBytes int, read func(lo, hi int) float64) float64 {
	best := 0.0
	for rep := 0; rep < 5; rep++ {
		var wg sync.WaitGroup
		sums := make([]float64, threads)
		t0 := time.Now()
		for t := 0; t < threads; t++ {
			lo, hi := (t*n/threads)&^63, ((t+1)*n/threads)&^63
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[t] = read(lo, hi)
			}()
		}
		wg.Wait()
		if bw := float64(n*elemBytes) / time.Since(t0).Seconds(); bw > best {
			best = bw
		}
		sink += sums[0]
	}
	return best
}

var sink float64
