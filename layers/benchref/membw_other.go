//go:build !(cgo && amd64 && (linux || darwin || freebsd))

package benchref

import "runtime/debug"

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
	return bestRead(threads, n, 8, func(lo, hi int) float64 {
		s := buf[lo:hi]
		var a, b, c, d uint64
		for i := 0; i+4 <= len(s); i += 4 {
			a += s[i]
			b += s[i+1]
			c += s[i+2]
			d += s[i+3]
		}
		return float64(a + b + c + d)
	})
}
