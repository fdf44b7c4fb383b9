// Package nccl will hold the cgo CUDA/NCCL bindings that put a rank's
// blocks and anchor on a GPU. It knows devices, not models. This build has
// no CUDA support: Available reports false and every rank computes on CPU.
package nccl

import "errors"

// ErrUnavailable is returned when CUDA/NCCL support is not compiled in.
var ErrUnavailable = errors.New("this star binary was built without CUDA/NCCL support; ranks compute on CPU")

// Available reports whether GPU support is compiled in and a device is present.
func Available() bool { return false }

// DeviceCount is the number of usable GPUs.
func DeviceCount() (int, error) { return 0, ErrUnavailable }
