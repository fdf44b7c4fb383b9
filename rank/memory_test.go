package rank

import (
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// storiesEngine is an engine on the shared tiny model (stories260K).
func storiesEngine(t *testing.T) *Engine {
	t.Helper()
	w, err := weights.Load(shared.Path(t, "models/stories260K/stories260K.bin"), weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return NewEngine(w, layers.NewCPU(1))
}

// A document that cannot fit is refused before anything is allocated,
// with the numbers.
func TestMemoryRefusal(t *testing.T) {
	e := storiesEngine(t)
	e.M.Cfg.SeqLen = 1 << 40
	huge, err := NewLayout(1<<36, 1<<36, 0, 1) // 2^36 tokens x 1.25 KiB of K/V
	if err != nil {
		t.Fatal(err)
	}
	err = e.checkMemory(&Plan{Layout: huge, Capacity: 512})
	if err == nil || !strings.Contains(err.Error(), "GiB") || !strings.Contains(err.Error(), "available") {
		t.Fatalf("err = %v, want a refusal with the numbers", err)
	}
	small, _ := NewLayout(100, 50, 10, 1)
	if err := e.checkMemory(&Plan{Layout: small, Capacity: 512}); err != nil {
		t.Fatalf("small document refused: %v", err)
	}
	// global attention: the whole context on rank 0
	err = e.checkMemory(&Plan{Attention: Global, N: 1 << 36, Capacity: 512})
	if err == nil || !strings.Contains(err.Error(), "GiB") {
		t.Fatalf("global: err = %v, want a refusal with the numbers", err)
	}
	if err := e.checkMemory(&Plan{Attention: Global, N: 100, Capacity: 100}); err != nil {
		t.Fatalf("small global document refused: %v", err)
	}
}

// The memory check counts the query reserve, not the forward capacity,
// for the host's query cache (a 16k block must not be charged twice).
func TestMemoryEstimateQueryReserve(t *testing.T) {
	e := storiesEngine(t)
	lay, err := NewLayout(400, 400, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := Footprint(e.M, 0, lay, 0, QueryReserve, Capacity(lay, 400), 400, weights.F32)
	// stories260K: K and V of 4 heads of 8 floats in each of 5 layers are
	// 2 x 5 x 32 x 4 = 1280 bytes per token
	if want := int64(1280 * (400 + QueryReserve)); m.KVBytes != want {
		t.Fatalf("KV bytes %d, want %d (400 context + %d reserved tokens, 1280 bytes each)", m.KVBytes, want, QueryReserve)
	}
	for _, c := range []struct {
		dt   weights.DType
		want int64
	}{{weights.F32, 1280}, {weights.F16, 640}, {weights.BF16, 640}} {
		if got := KVBytesPerToken(&e.M.Cfg, c.dt); got != c.want {
			t.Fatalf("KVBytesPerToken(%v) = %d, want %d", c.dt, got, c.want)
		}
	}
}
