//go:build cgo

package nccl

/*
#include "dl.h"
*/
import "C"

import "fmt"

// DType is a CUDA data type (cudaDataType_t) of a matrix.
type DType int

// The matrix element types star uses.
const (
	F32  DType = 0  // CUDA_R_32F
	F16  DType = 2  // CUDA_R_16F
	BF16 DType = 14 // CUDA_R_16BF
)

func ltErr(call string, r C.cublasStatus_t) error {
	if r == 0 {
		return nil
	}
	names := map[int]string{1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
		8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
		14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED"}
	n := names[int(r)]
	if n == "" {
		n = "CUBLAS_STATUS_UNKNOWN"
	}
	return &Error{Call: call, Code: int(r), Name: n, Msg: "cuBLASLt failed"}
}

// BLAS is a cuBLASLt handle on a device.
type BLAS struct {
	d *Device
	h C.cublasLtHandle_t
}

// NewBLAS opens cuBLASLt on d.
func (d *Device) NewBLAS() (*BLAS, error) {
	if err := loadLt(); err != nil {
		return nil, err
	}
	b := &BLAS{d: d}
	if err := ltErr("cublasLtCreate", C.star_ltCreate(&b.h)); err != nil {
		return nil, err
	}
	return b, nil
}

// Close destroys the handle.
func (b *BLAS) Close() error { return ltErr("cublasLtDestroy", C.star_ltDestroy(b.h)) }

// LinearRows computes out[n, rows] = x[n, cols] · wᵀ for a row-major
// weight matrix w [rows, cols] of type wt (F32 activations in x, F32 out,
// F32 accumulation), all row-major on the device. (In cuBLASLt's
// column-major terms: outᵀ = wᵀᵀ · xᵀ, i.e. op(A) = Aᵀ with A = w.)
func (b *BLAS) LinearRows(out, x, w Ptr, n, rows, cols int, wt DType) error {
	if n == 0 || rows == 0 {
		return nil
	}
	if wt != F32 {
		return fmt.Errorf("cuBLASLt: weights of type %d with F32 activations: convert the activations first (use Linear16)", wt)
	}
	return ltErr("cublasLtMatmul", C.star_ltMatmul(b.d.ctx, b.h, 1, 0, C.long(rows), C.long(n), C.long(cols),
		C.CUdeviceptr(w), C.int(wt), C.long(cols), C.CUdeviceptr(x), C.int(F32), C.long(cols),
		C.CUdeviceptr(out), C.int(F32), C.long(rows), 1, 0))
}

// Linear16 is LinearRows with 16-bit activations x of the weights' type
// wt (F16 or BF16): the tensor-core path, F32 accumulation and output.
func (b *BLAS) Linear16(out, x, w Ptr, n, rows, cols int, wt DType) error {
	if n == 0 || rows == 0 {
		return nil
	}
	return ltErr("cublasLtMatmul", C.star_ltMatmul(b.d.ctx, b.h, 1, 0, C.long(rows), C.long(n), C.long(cols),
		C.CUdeviceptr(w), C.int(wt), C.long(cols), C.CUdeviceptr(x), C.int(wt), C.long(cols),
		C.CUdeviceptr(out), C.int(F32), C.long(rows), 1, 0))
}
