//go:build cgo

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/nccl"
	"github.com/star-attn/star/rank"
)

// gpus is the number of GPUs the CUDA driver sees, an error if none.
func gpus() (int, error) {
	n, err := nccl.DeviceCount()
	if err == nil && n == 0 {
		err = fmt.Errorf("the CUDA driver sees no GPU")
	}
	return n, err
}

// openCUDA opens GPU localRank modulo the node's GPUs for model m; the
// ranks of the node (localSize) that land on the same GPU share it.
func openCUDA(m *layers.Model, localRank, localSize int) (layers.Backend, error) {
	n, err := gpus()
	if err != nil {
		return nil, err
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
	n, err := gpus()
	if err != nil {
		return nil, err
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

// ncclExchange is the NCCL exchanger of phase 2's partials when every
// rank of comm computes on a GPU of its own (distinct host and bus id)
// and finds NCCL; else nil: the ranks merge through MPI from the host
// (rank 0 says why on log when they are all on GPUs). Every rank takes
// part; a failure before the communicator is made is agreed.
func ncclExchange(comm collective.Comm, b layers.Backend, host string, log io.Writer) (layers.Exchanger, error) {
	cb, _ := b.(*cuda.Backend)
	mine, why := "", ""
	if cb != nil {
		mine = host + " " + cb.Device().BusID
		if _, err := nccl.NCCLVersion(); err != nil {
			mine, why = "", err.Error()
		}
	} else {
		why = "cpu"
	}
	all, err := comm.AllgatherBytes([]byte(mine + "\x00" + why))
	if err != nil {
		return nil, fmt.Errorf("device ids: %w", err)
	}
	seen, reason := map[string]int{}, ""
	onGPUs := true
	for r, a := range all {
		dev, w, _ := strings.Cut(string(a), "\x00")
		switch {
		case w == "cpu":
			onGPUs, reason = false, "cpu"
		case dev == "":
			reason = fmt.Sprintf("rank %d has no NCCL (%s)", r, w)
		case seen[dev] > 0:
			reason = fmt.Sprintf("ranks %d and %d share GPU %s (NCCL wants one per rank)", seen[dev]-1, r, dev)
		}
		seen[dev] = r + 1
		if reason != "" {
			break
		}
	}
	if reason != "" {
		if onGPUs && log != nil {
			fmt.Fprintf(log, "star: phase 2 merges through MPI from the host: %s\n", reason)
		}
		return nil, nil
	}
	var id nccl.UniqueID
	if comm.Rank() == 0 {
		id, err = nccl.NewUniqueID()
	}
	if err := rank.Agree(comm, err, host); err != nil {
		return nil, err
	}
	if err := comm.Bcast(id[:], 0); err != nil {
		return nil, fmt.Errorf("NCCL id: %w", err)
	}
	return cb.NewNCCL(id, comm.Rank(), comm.Size())
}
