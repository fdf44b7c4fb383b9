//go:build !(cgo && amd64 && (linux || darwin || freebsd))

package benchref

import (
	"encoding/binary"
	"runtime/debug"
)

// readKinds: one scan, plain Go.
const readKinds = 1

// scanWords sums the 32-bit words of the whole 128-byte units of b,
// wrapping (plain Go: may understate the bandwidth).
func scanWords(b []byte, kind int) uint32 {
	b = b[:len(b)&^127]
	var s0, s1, s2, s3 uint32
	for i := 0; i < len(b); i += 16 {
		s0 += binary.LittleEndian.Uint32(b[i:])
		s1 += binary.LittleEndian.Uint32(b[i+4:])
		s2 += binary.LittleEndian.Uint32(b[i+8:])
		s3 += binary.LittleEndian.Uint32(b[i+12:])
	}
	return s0 + s1 + s2 + s3
}

// ReadBandwidth measures the memory read bandwidth in bytes/s with the
// given number of threads each streaming its share of a buffer of the
// given size, best of 5.
func ReadBandwidth(threads int, bytes int64) float64 {
	n := int(bytes) &^ 8191
	buf := make([]byte, n)
	defer debug.FreeOSMemory() // the buffer must not stay in the caller's resident set
	for i := range buf {
		buf[i] = 1
	}
	return scanBuffer(threads, buf)
}
