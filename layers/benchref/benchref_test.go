package benchref

import (
	"encoding/binary"
	"math"
	"sync"
	"testing"
	"unsafe"

	"github.com/star-attn/star/internal/shared"
)

func TestSgemmNT(t *testing.T) {
	if !Available() {
		shared.Missing(t, "libopenblas is not installed (libopenblas-dev; scripts/setup.sh installs it): nothing to compare")
	}
	const m, n, k = 3, 5, 7
	a, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	for i := range a {
		a[i] = float32(i%5) - 2
	}
	for i := range b {
		b[i] = float32(i%3) - 1
	}
	SgemmNT(c, a, b, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for x := 0; x < k; x++ {
				s += float64(a[i*k+x]) * float64(b[j*k+x])
			}
			if math.Abs(s-float64(c[i*n+j])) > 1e-5 {
				t.Fatalf("c[%d,%d] = %g, want %g", i, j, c[i*n+j], s)
			}
		}
	}
	if g := GFLOPS(64, 64, 64, 1); !(g > 0) {
		t.Fatalf("GFLOPS = %g", g)
	}
}

// The bandwidth measurement reads the whole buffer, split over the
// threads in disjoint 64-element-aligned parts, five times; its result is
// a rate (positive, finite). How fast is not asserted: speed belongs to
// benchmarks, and a shared machine can be arbitrarily slow.
func TestReadBandwidth(t *testing.T) {
	for _, c := range []struct{ threads, n int }{{1, 1 << 12}, {3, 1 << 12}, {4, 64 * 4 * 5}} {
		var mu sync.Mutex
		covered := make([]int, c.n)
		calls := 0
		bw := bestRead(c.threads, c.n, 4, func(lo, hi int) float64 {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if lo%64 != 0 {
				t.Errorf("%d threads: part starts at %d, not 64-aligned", c.threads, lo)
			}
			for i := lo; i < hi; i++ {
				covered[i]++
			}
			return float64(hi - lo)
		})
		if calls != 5*c.threads {
			t.Errorf("%d threads: %d reads, want %d (5 rounds)", c.threads, calls, 5*c.threads)
		}
		for i, k := range covered {
			if k != 5 {
				t.Fatalf("%d threads, %d elements: element %d read %d times, want 5", c.threads, c.n, i, k)
			}
		}
		if !(bw > 0) || math.IsInf(bw, 0) {
			t.Errorf("%d threads: rate %g, want a positive finite number", c.threads, bw)
		}
	}
	if bw := ReadBandwidth(2, 4<<20); !(bw > 0) || math.IsInf(bw, 0) {
		t.Fatalf("ReadBandwidth = %g B/s, want a positive finite rate", bw)
	}
}

// sampleRegions keeps whole 128-byte units, everything when under the
// cap, else evenly spread windows within the regions adding up to about
// the cap; splitRegions hands every byte to exactly one thread, in order,
// cut at multiples of 128, about evenly.
func TestSampleAndSplitRegions(t *testing.T) {
	mem := make([]byte, 1<<20)
	for i := range mem {
		mem[i] = byte(i*7 + i>>9)
	}
	regions := [][]byte{mem[:1000], mem[4096 : 4096+64], mem[8192 : 8192+300000], mem[400000:1000000]}
	whole := sampleRegions(regions, 1<<30, 4096)
	var total int
	for i, b := range whole {
		if len(b)%128 != 0 || &b[0] != &regions[[]int{0, 2, 3}[i]][0] {
			t.Fatalf("region %d: %d bytes at the wrong place; want whole 128-byte units of the input (the 64-byte one dropped)", i, len(b))
		}
		total += len(b)
	}
	if want := 896 + 299904 + 600000&^127; len(whole) != 3 || total != want {
		t.Fatalf("uncapped: %d regions, %d bytes; want 3, %d", len(whole), total, want)
	}
	if small := sampleRegions(regions, 64<<10, 100); len(small) != len(whole) {
		t.Fatalf("a window under 128 bytes: %d regions, want the %d whole ones (no sampling)", len(small), len(whole))
	}
	sampled := sampleRegions(regions, 64<<10, 4096)
	sum := 0
	for _, b := range sampled {
		off := int(uintptr(unsafePointer(b)) - uintptr(unsafePointer(mem)))
		if len(b) == 0 || len(b) > 4096 || off%128 != 0 {
			t.Fatalf("window at %d of %d bytes: want 1..4096 bytes at a 128-byte offset", off, len(b))
		}
		if !(off >= 0 && off+len(b) <= 1000 || off >= 8192 && off+len(b) <= 8192+300000 || off >= 400000 && off+len(b) <= 1000000) {
			t.Fatalf("window [%d, %d) leaves its region", off, off+len(b))
		}
		sum += len(b)
	}
	if len(sampled) != 16 || sum < 48<<10 || sum > 64<<10 {
		t.Fatalf("capped at 64 KiB: %d windows, %d bytes; want 16 windows, 48-64 KiB", len(sampled), sum)
	}
	for _, n := range []int{1, 2, 3, 7} {
		parts := splitRegions(whole, n)
		if len(parts) != n {
			t.Fatalf("%d threads: %d shares", n, len(parts))
		}
		var got []byte
		for ti, p := range parts {
			share := 0
			for _, b := range p {
				if len(b)%128 != 0 {
					t.Fatalf("%d threads: share %d has a piece of %d bytes", n, ti, len(b))
				}
				got = append(got, b...)
				share += len(b)
			}
			if d := share - total/n; d < -256 || d > 256 {
				t.Errorf("%d threads: share %d is %d bytes, want about %d", n, ti, share, total/n)
			}
		}
		var want []byte
		for _, b := range whole {
			want = append(want, b...)
		}
		if string(got) != string(want) {
			t.Fatalf("%d threads: the shares are not the regions in order", n)
		}
	}
	if bw := ReadBandwidthOf(2, regions, 1<<30); !(bw > 0) || math.IsInf(bw, 0) {
		t.Fatalf("ReadBandwidthOf = %g B/s, want a positive finite rate", bw)
	}
	if bw := ReadBandwidthOf(2, [][]byte{mem[:100]}, 1<<30); bw != 0 {
		t.Fatalf("ReadBandwidthOf of less than 128 bytes = %g, want 0 (nothing read)", bw)
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// Every scan of ReadBandwidth reads every word of the whole 128-byte
// units once, prefetching or not: its sum (wrapping) is theirs.
func TestScansReadEverything(t *testing.T) {
	for _, n := range []int{128, 4096, 4096 + 128, 4096 + 200} {
		buf := make([]byte, n)
		var want uint32
		for i := 0; i < n; i += 4 {
			binary.LittleEndian.PutUint32(buf[i:], uint32(i*2654435761))
			if i < n&^127 {
				want += binary.LittleEndian.Uint32(buf[i:])
			}
		}
		for kind := 0; kind < readKinds; kind++ {
			if got := scanWords(buf, kind); got != want {
				t.Errorf("scan %d of %d bytes: sum %#x, want %#x", kind, n, got, want)
			}
		}
	}
}
