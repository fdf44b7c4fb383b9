package cuda_test

import (
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/layers/layerstest"
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
