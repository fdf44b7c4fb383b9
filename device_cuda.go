//go:build cgo

package main

import (
	"fmt"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/nccl"
)

// openCUDA opens GPU localRank modulo the node's GPUs for model m; the
// ranks of the node (localSize) that land on the same GPU share it.
func openCUDA(m *layers.Model, localRank, localSize int) (layers.Backend, error) {
	n, err := nccl.DeviceCount()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("the CUDA driver sees no GPU")
	}
	ord := localRank % n
	b, err := cuda.Open(m, ord)
	if err != nil {
		return nil, fmt.Errorf("GPU %d: %w", ord, err)
	}
	for r := 0; r < max(localSize, 1); r++ {
		if r%n == ord {
			b.Share++
		}
	}
	return b, nil
}

// cudaInfo describes GPU 0 of this node without putting anything on it.
func cudaInfo() (*jobs.DeviceInfo, error) {
	n, err := nccl.DeviceCount()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("the CUDA driver sees no GPU")
	}
	d, err := nccl.Open(0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	free, total, err := d.MemInfo()
	if err != nil {
		return nil, err
	}
	info := &jobs.DeviceInfo{Name: d.Name, Count: n, TotalBytes: total, FreeBytes: free}
	info.Driver, _ = nccl.DriverVersion()
	// load the others too, to say where they are (or why not)
	for what, load := range map[string]func() error{"nvrtc": nccl.LoadNVRTC, "cublasLt": nccl.LoadLt, "nccl": nccl.LoadNCCL} {
		if err := load(); err != nil {
			if info.Missing == nil {
				info.Missing = map[string]string{}
			}
			info.Missing[what] = err.Error()
		}
	}
	info.Libraries = nccl.Libraries()
	return info, nil
}
