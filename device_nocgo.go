//go:build !cgo

package main

import (
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
