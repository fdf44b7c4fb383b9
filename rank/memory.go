package rank

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/star-attn/star/weights"
)

// QueryReserve is the query and generated tokens' K/V the host reserves
// (and memory estimates count) per document; longer queries and
// generations grow its cache.
const QueryReserve = 512

// ProgramBytes is the resident memory of star itself before any model
// (code, libraries, Go runtime), as measured with a tiny model.
const ProgramBytes = 14 << 20

// KVBytesPerToken is the K/V cache size of one token, all layers, in
// dtype dt (layers.KVDTypes).
func KVBytesPerToken(c *weights.Config, dt weights.DType) int64 {
	return 2 * int64(c.NLayers) * int64(c.KVDim()) * int64(dt.Size())
}

// MemAvailable is the kernel's estimate of memory available for new work
// (MemAvailable in /proc/meminfo), or 0 if unknown.
func MemAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// MemoryRefusal is the one message for work that cannot fit in memory:
// what needs how much (its parts), what each of the node's ranks has, and
// what to do instead.
func MemoryRefusal(need int64, parts string, avail int64, local int, advice string) error {
	return fmt.Errorf("needs %.2f GiB (%s) but %.2f GiB are available to each of the node's %d ranks: %s",
		gib(need), parts, gib(avail), local, advice)
}

// CheckWeightMemory refuses, before they are made or paged in, weights of
// bytes bytes that cannot be held in the node's available memory:
// memory-mapped weights (shared) are held once per node, made in memory
// (dummy weights, not shared) once per rank. what names the weights
// ("weights of model.gguf").
// With available memory unknown (no /proc/meminfo) it refuses nothing.
func CheckWeightMemory(bytes int64, shared bool, local int, what, advice string) error {
	avail := MemAvailable()
	if avail == 0 {
		return nil
	}
	local = max(local, 1)
	need, parts := bytes, what+", made by each rank"
	if shared {
		need = bytes / int64(local)
		parts = fmt.Sprintf("%s, %.2f GiB memory-mapped once per node", what, gib(bytes))
	}
	if need > avail/int64(local) {
		return MemoryRefusal(need, parts, avail/int64(local), local, advice)
	}
	return nil
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// size is b bytes for people: "1.50 GiB", "312.0 KiB".
func size(b int64) string {
	f := float64(b)
	for _, u := range []string{"B", "KiB", "MiB"} {
		if f < 1024 {
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1024
	}
	return fmt.Sprintf("%.2f GiB", f)
}
