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
	return bestOf(5, threads, int64(n*elemBytes), func(t int) float64 {
		return read((t*n/threads)&^63, ((t+1)*n/threads)&^63)
	})
}

// bestOf runs read(t) on threads goroutines at once, reps times, and
// returns the best rate in bytes/s for the given bytes read in all. read
// returns what it summed, kept so the reads cannot be optimised away.
func bestOf(reps, threads int, bytes int64, read func(t int) float64) float64 {
	best := 0.0
	for rep := 0; rep < reps; rep++ {
		var wg sync.WaitGroup
		sums := make([]float64, threads)
		t0 := time.Now()
		for t := 0; t < threads; t++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[t] = read(t)
			}()
		}
		wg.Wait()
		best = max(best, float64(bytes)/time.Since(t0).Seconds())
		sink += sums[0]
	}
	return best
}

// scanBuffer is the best of bestRead by each of the readKinds scans over
// buf (its whole 128-byte units) with threads threads.
func scanBuffer(threads int, buf []byte) float64 {
	best := 0.0
	for kind := 0; kind < readKinds; kind++ {
		best = max(best, bestRead(threads, len(buf)/128, 128, func(lo, hi int) float64 { return float64(scanWords(buf[lo*128:hi*128], kind)) }))
	}
	return best
}

var sink float64

// ReadBandwidthOf measures the rate in bytes/s at which threads threads
// read the given memory (a model's weights where they lie: page-cache
// pages of a mapped file read at their own rate, which on some machines
// is well below a fresh buffer's): each thread scans its share of the
// regions' whole 128-byte units, in order; the best of 3 reads by each of
// readKinds scans. Regions of more than maxBytes in all are sampled:
// windows of 4 MiB spread evenly over them, maxBytes in all. 0 if there
// is nothing to read.
func ReadBandwidthOf(threads int, regions [][]byte, maxBytes int64) float64 {
	parts := splitRegions(sampleRegions(regions, maxBytes, 4<<20), max(threads, 1))
	var total int64
	for _, p := range parts {
		for _, b := range p {
			total += int64(len(b))
		}
	}
	if total == 0 {
		return 0
	}
	best := 0.0
	for kind := 0; kind < readKinds; kind++ {
		best = max(best, bestOf(3, len(parts), total, func(t int) float64 {
			var sum uint32
			for _, b := range parts[t] {
				sum += scanWords(b, kind)
			}
			return float64(sum)
		}))
	}
	return best
}

// sampleRegions is regions cut to whole 128-byte units, and, if they hold
// more than maxBytes, maxBytes/window windows of window bytes (less at a
// region's end) starting at evenly spaced offsets of their concatenation.
func sampleRegions(regions [][]byte, maxBytes, window int64) [][]byte {
	var whole [][]byte
	var total int64
	for _, b := range regions {
		if n := len(b) &^ 127; n > 0 {
			whole = append(whole, b[:n])
			total += int64(n)
		}
	}
	window &^= 127
	if total <= maxBytes || window <= 0 {
		return whole
	}
	count := max(maxBytes/window, 1)
	stride := total / count
	var out [][]byte
	ri, base := 0, int64(0) // whole[ri] starts at offset base of the concatenation
	for i := int64(0); i < count; i++ {
		at := i * stride
		for base+int64(len(whole[ri])) <= at {
			base += int64(len(whole[ri]))
			ri++
		}
		off := (at - base) &^ 127
		end := min(off+window, int64(len(whole[ri])))
		out = append(out, whole[ri][off:end])
	}
	return out
}

// splitRegions gives each of n threads a contiguous share of the
// regions' concatenation, cut at multiples of 128 bytes: about total/n
// bytes each, every byte in exactly one share.
func splitRegions(regions [][]byte, n int) [][][]byte {
	var total int64
	for _, b := range regions {
		total += int64(len(b))
	}
	parts := make([][][]byte, n)
	t, next := 0, int64(0) // share t ends where the concatenation reaches next
	bound := func(t int) int64 { return (total * int64(t+1) / int64(n)) &^ 127 }
	next = bound(0)
	var at int64
	for _, b := range regions {
		for len(b) > 0 {
			for t < n-1 && at >= next {
				t++
				next = bound(t)
			}
			take := int64(len(b))
			if t < n-1 {
				take = min(take, next-at)
			}
			parts[t] = append(parts[t], b[:take])
			b = b[take:]
			at += take
		}
	}
	return parts
}
