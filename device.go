package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
)

// The --device choice: where a rank's weights, activations and K/V live.

// deviceChoice reads --device.
func deviceChoice(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "auto", "cpu", "cuda":
		return v, nil
	}
	return "", fmt.Errorf("--device %q: use auto, cpu or cuda", s)
}

// openBackend puts model m on this rank's device: choice "cpu" the CPU
// backend; "cuda" GPU localRank modulo the node's GPUs (shared by its
// localSize ranks), or an error that says why not; "auto" the GPU when a
// device and the libraries are found, else the CPU with one line on log
// (nil: none) saying why.
func openBackend(choice string, m *layers.Model, localRank, localSize int, log io.Writer) (layers.Backend, error) {
	if choice == "cpu" {
		return layers.OnHost(m), nil
	}
	b, err := openCUDA(m, localRank, localSize)
	if err == nil {
		return b, nil
	}
	if choice == "cuda" {
		return nil, fmt.Errorf("--device cuda: %w (use --device cpu to compute on CPU)", err)
	}
	if log != nil {
		why, _, _ := strings.Cut(err.Error(), " (tried ") // the places searched: --device cuda lists them
		fmt.Fprintf(log, "star: computing on CPU (--device auto): %s\n", why)
	}
	return layers.OnHost(m), nil
}

// inspectDevice is the GPU that --device puts ranks on, for inspect: nil
// for cpu, and for auto when none is found; an error for cuda without one.
func inspectDevice(s string) (*jobs.DeviceInfo, error) {
	choice, err := deviceChoice(s)
	if err != nil || choice == "cpu" {
		return nil, err
	}
	d, err := cudaInfo()
	if err != nil && choice == "cuda" {
		return nil, fmt.Errorf("--device cuda: %w (use --device cpu to size CPU ranks)", err)
	}
	if err != nil {
		return nil, nil
	}
	return d, nil
}
