//go:build !(cgo && amd64 && (linux || darwin || freebsd))

package benchref

import (
	"runtime/debug"
	"sync"
	"time"
)

var sink uint64

// ReadBandwidth measures the memory read bandwidth in bytes/s with the
// given number of threads each streaming its share of a buffer of the
// given size, best of 5 (plain Go: may understate it).
func ReadBandwidth(threads int, bytes int64) float64 {
	n := int(bytes / 8)
	buf := make([]uint64, n)
	defer debug.FreeOSMemory() // the buffer must not stay in the caller's resident set
	for i := range buf {
		buf[i] = 1
	}
	best := 0.0
	for rep := 0; rep < 5; rep++ {
		var wg sync.WaitGroup
		sums := make([]uint64, threads)
		t0 := time.Now()
		for t := 0; t < threads; t++ {
			s := buf[t*n/threads : (t+1)*n/threads]
			wg.Add(1)
			go func(t int) {
				defer wg.Done()
				var a, b, c, d uint64
				for i := 0; i+4 <= len(s); i += 4 {
					a += s[i]
					b += s[i+1]
					c += s[i+2]
					d += s[i+3]
				}
				sums[t] = a + b + c + d
			}(t)
		}
		wg.Wait()
		if bw := float64(n*8) / time.Since(t0).Seconds(); bw > best {
			best = bw
		}
		sink += sums[0]
	}
	return best
}
