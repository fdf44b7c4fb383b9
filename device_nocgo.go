//go:build !cgo

package main

import (
	"io"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/nccl"
)

// openCUDA fails: a build without cgo has no GPU support.
func openCUDA(m *layers.Model, localRank, localSize int) (layers.Backend, error) {
	return nil, nccl.ErrUnavailable
}

// cudaInfo fails: a build without cgo has no GPU support.
func cudaInfo() (*jobs.DeviceInfo, error) { return nil, nccl.ErrUnavailable }

// ncclExchange: no GPU, no NCCL; ranks merge through MPI.
func ncclExchange(comm collective.Comm, b layers.Backend, host string, log io.Writer) (layers.Exchanger, error) {
	return nil, nil
}
