//go:build !cgo

// Package nccl is star's binding to NVIDIA's GPU libraries; this build has
// no cgo, so it has none of them and every rank computes on CPU.
package nccl

import "errors"

// ErrUnavailable is returned by every entry point of a build without cgo.
var ErrUnavailable = errors.New("this star binary was built without cgo: no GPU support; ranks compute on CPU")

// DeviceCount fails: this build has no GPU support.
func DeviceCount() (int, error) { return 0, ErrUnavailable }
