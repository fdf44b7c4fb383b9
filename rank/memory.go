package rank

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Memory is the estimate for one rank.
type Memory struct {
	Rank            int   `json:"rank"`
	Context         int   `json:"context_tokens"`
	BlockSize       int   `json:"block_size"`
	Blocks          int   `json:"blocks"`             // blocks this rank holds
	BlockTokens     int   `json:"block_tokens"`       // their tokens
	WeightBytes     int64 `json:"weights_bytes"`      // memory-mapped, shared by the ranks of a node
	KVBytes         int64 `json:"kv_cache_bytes"`     // K/V of its blocks (+ query and generated tokens on rank 0)
	AnchorBytes     int64 `json:"anchor_bytes"`       // anchor K/V while encoding
	ActivationBytes int64 `json:"activation_bytes"`   // per-forward scratch
	ProgramBytes    int64 `json:"program_bytes"`      // the program, its libraries and the Go runtime
	TotalBytes      int64 `json:"total_bytes"`        // all of the above
	KVBytesPerToken int64 `json:"kv_bytes_per_token"` // K and V, all layers, float32
}

// QueryReserve is the query and generated tokens' K/V the host reserves
// (and memory estimates count) per document; longer queries and
// generations grow its cache.
const QueryReserve = 512

// ProgramBytes is the resident memory of star itself before any model
// (code, libraries, Go runtime), as measured with a tiny model.
const ProgramBytes = 14 << 20

// KVBytesPerToken is the float32 K/V cache size of one token, all layers.
func KVBytesPerToken(c *weights.Config) int64 {
	return int64(2 * c.NLayers * c.KVDim() * 4)
}

// RankMemory estimates what rank r needs to hold its part of layout lay
// (rank 0 also the query and generated tokens: extra) with model m.
func RankMemory(m *layers.Model, weightBytes int64, lay Layout, r, extra, chunk int) Memory {
	c := &m.Cfg
	per := KVBytesPerToken(c)
	mem := Memory{Rank: r, Context: lay.N, BlockSize: lay.BlockSize, WeightBytes: weightBytes, KVBytesPerToken: per}
	longest := 0
	for _, b := range lay.Of(r) {
		mem.Blocks++
		mem.BlockTokens += b.Len
		longest = max(longest, b.Len)
	}
	mem.KVBytes = per * int64(mem.BlockTokens)
	if r == 0 {
		mem.KVBytes += per * int64(extra)
	}
	if lay.EncodesAnchor(r) { // else none, or a view of B_0's first rows
		mem.AnchorBytes = per * int64(lay.AnchorSize)
	}
	capTok := max(longest, chunk)
	kvd := int64(c.KVDim())
	H, D := int64(c.NHeads), int64(c.HeadDim)
	mem.ActivationBytes = m.StateBytes(capTok) + m.ScratchBytes(capTok) +
		4*int64(capTok)*H + // phase 1's log-sum-exps
		4*int64(mem.Blocks+1)*int64(chunk)*H*(D+1) + // phase 2's partial attentions for a query chunk
		4*int64(c.VocabSize)*2 // logits
	if lay.NeedsAnchor(r) {
		mem.ActivationBytes += 2 * 4 * kvd * int64(lay.AnchorSize+longest) // anchor ; block keys and values of one layer
	}
	mem.ProgramBytes = ProgramBytes
	mem.TotalBytes = mem.WeightBytes + mem.KVBytes + mem.AnchorBytes + mem.ActivationBytes + mem.ProgramBytes
	return mem
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
