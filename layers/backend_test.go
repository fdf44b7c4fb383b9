package layers_test

import (
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/layerstest"
)

// The CPU backend (its best kernels on this machine) passes the seam's
// conformance suite against the pure-Go reference.
func TestBackendConformance(t *testing.T) {
	layerstest.RunBackend(t, "cpu", func(t *testing.T, m *layers.Model) layers.Backend {
		return layers.OnHost(layers.NewModel(m.W, layers.NewCPU(2)))
	})
}
