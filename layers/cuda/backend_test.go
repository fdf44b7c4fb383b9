package cuda_test

import (
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/layers/layerstest"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// The CUDA backend passes the seam's conformance suite against the CPU
// reference: on the stand-in in CI, on a GPU in scripts/gpu-check.sh.
func TestBackendConformance(t *testing.T) {
	device(t) // the stand-in, or a skip naming why not
	layerstest.RunBackend(t, "cuda", func(t *testing.T, m *layers.Model) layers.Backend {
		b, err := cuda.Open(m, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Error(err)
			}
		})
		return b
	})
}

// The device memory rank counts (rank.DeviceWeightBytes,
// rank.DeviceActivationBytes: what `star inspect` reports and the memory
// check refuses by) is what the backend allocates.
func TestDeviceFootprint(t *testing.T) {
	device(t)
	for _, dt := range []weights.DType{weights.F32, weights.BF16} {
		w := layerstest.ModelOf(layerstest.BackendConfig, 7, dt)
		b, err := cuda.Open(layers.NewModel(w, layers.NewCPU(1)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := rank.DeviceWeightBytes(w); b.Weights != want {
			t.Errorf("%v: weights take %d bytes on the device, rank counts %d", dt, b.Weights, want)
		}
		for _, c := range []struct{ capacity, parts, chunk int }{{1, 1, 1}, {16, 3, 8}, {300, 2, 64}} {
			a, err := b.NewActs(c.capacity)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Reserve(c.parts, c.chunk, 0); err != nil {
				t.Fatal(err)
			}
			toks, pos := []int{1}, []int{0}
			if err := b.Run(a, toks, pos, func(l int, at layers.Attn) error { return at.Merge(0) }); err != nil {
				t.Fatal(err)
			}
			if err := b.Logits(make([]float32, w.Config.VocabSize), a, []int{0}); err != nil {
				t.Fatal(err)
			}
			if got, want := a.Bytes(), rank.DeviceActivationBytes(&w.Config, c.capacity, c.parts, c.chunk, rank.Wide16(w)); got != want {
				t.Errorf("%v %+v: activations take %d bytes on the device, rank counts %d", dt, c, got, want)
			}
			a.Free()
		}
		b.Close()
	}
}
