//go:build cgo

// Package nccl is star's binding to NVIDIA's GPU libraries: the CUDA
// driver, NVRTC, cuBLASLt and NCCL, declared by hand (no CUDA header at
// build time) and loaded with dlopen at run time, so one binary runs with
// or without a GPU. Every return code is checked and turned into an error
// naming the call and the library's own error string. It knows devices,
// not models.
package nccl

/*
#include <stdlib.h>
#include "dl.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// MinDriver is the oldest CUDA driver API version star accepts (12.0).
const MinDriver = 12000

// Error is a failed call into a CUDA library.
type Error struct {
	Call string // the entry point, e.g. "cuMemAlloc_v2"
	Code int    // its return code
	Name string // the library's name for the code, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Msg  string // the library's description
}

func (e *Error) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("%s: %s (%s, %d)", e.Call, e.Msg, e.Name, e.Code)
	}
	return fmt.Sprintf("%s: %s (%d)", e.Call, e.Msg, e.Code)
}

// OutOfMemory reports whether err is a device allocation that failed for
// want of memory.
func OutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == 2 // CUDA_ERROR_OUT_OF_MEMORY
}

func cuErr(call string, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(r), Name: C.GoString(C.star_cuErrorName(r)), Msg: C.GoString(C.star_cuErrorString(r))}
}

var driverVersion int

// initDriver calls cuInit and checks the driver's version.
func initDriver() error {
	if err := cuErr("cuInit", C.star_cuInit()); err != nil {
		return fmt.Errorf("no usable CUDA driver: %w", err)
	}
	var v C.int
	if err := cuErr("cuDriverGetVersion", C.star_cuDriverGetVersion(&v)); err != nil {
		return err
	}
	driverVersion = int(v)
	if driverVersion < MinDriver {
		return fmt.Errorf("the CUDA driver %s supports CUDA %d.%d; star needs %d.%d or later: update the NVIDIA driver",
			cudaLib.path, driverVersion/1000, driverVersion%1000/10, MinDriver/1000, MinDriver%1000/10)
	}
	return nil
}

// DriverVersion is the CUDA version the driver supports (e.g. 13000).
func DriverVersion() (int, error) {
	if err := loadCUDA(); err != nil {
		return 0, err
	}
	return driverVersion, nil
}

// DeviceCount is the number of CUDA devices (an error if there is no
// usable driver).
func DeviceCount() (int, error) {
	if err := loadCUDA(); err != nil {
		return 0, err
	}
	var n C.int
	if err := cuErr("cuDeviceGetCount", C.star_cuDeviceGetCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// Device is one GPU with its primary context made current in every call.
type Device struct {
	Ordinal     int
	Name        string
	Major       int // compute capability
	Minor       int
	TotalMemory int64 // bytes
	BusID       string

	dev C.CUdevice
	ctx C.CUcontext
	mu  sync.Mutex // guards closed
	off bool
}

// CUDA device attributes used.
const (
	attrCCMajor = 75
	attrCCMinor = 76
	attrPCIBus  = 33
	attrPCIDev  = 34
	attrPCIDom  = 50
)

// Open retains device ordinal's primary context.
func Open(ordinal int) (*Device, error) {
	if err := loadCUDA(); err != nil {
		return nil, err
	}
	d := &Device{Ordinal: ordinal}
	if err := cuErr("cuDeviceGet", C.star_cuDeviceGet(&d.dev, C.int(ordinal))); err != nil {
		return nil, fmt.Errorf("device %d: %w", ordinal, err)
	}
	var name [256]C.char
	if err := cuErr("cuDeviceGetName", C.star_cuDeviceGetName(&name[0], C.int(len(name)), d.dev)); err != nil {
		return nil, err
	}
	d.Name = C.GoString(&name[0])
	attr := func(a int) (int, error) {
		var v C.int
		err := cuErr("cuDeviceGetAttribute", C.star_cuDeviceGetAttribute(&v, C.int(a), d.dev))
		return int(v), err
	}
	var err error
	if d.Major, err = attr(attrCCMajor); err != nil {
		return nil, err
	}
	if d.Minor, err = attr(attrCCMinor); err != nil {
		return nil, err
	}
	dom, _ := attr(attrPCIDom)
	bus, _ := attr(attrPCIBus)
	dv, _ := attr(attrPCIDev)
	d.BusID = fmt.Sprintf("%04x:%02x:%02x", dom, bus, dv)
	var total C.size_t
	if err := cuErr("cuDeviceTotalMem_v2", C.star_cuDeviceTotalMem(&total, d.dev)); err != nil {
		return nil, err
	}
	d.TotalMemory = int64(total)
	if err := cuErr("cuDevicePrimaryCtxRetain", C.star_cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return nil, fmt.Errorf("device %d (%s): %w", ordinal, d.Name, err)
	}
	return d, nil
}

// Close releases the primary context.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return nil
	}
	d.off = true
	return cuErr("cuDevicePrimaryCtxRelease_v2", C.star_cuDevicePrimaryCtxRelease(d.dev))
}

// Arch is the device's architecture for NVRTC, e.g. "sm_90".
func (d *Device) Arch() string { return fmt.Sprintf("sm_%d%d", d.Major, d.Minor) }

// MemInfo reports free and total device memory in bytes.
func (d *Device) MemInfo() (free, total int64, err error) {
	var f, t C.size_t
	if err := cuErr("cuMemGetInfo_v2", C.star_cuMemGetInfo(d.ctx, &f, &t)); err != nil {
		return 0, 0, err
	}
	return int64(f), int64(t), nil
}

// Sync waits for the device's work to finish.
func (d *Device) Sync() error { return cuErr("cuCtxSynchronize", C.star_cuCtxSynchronize(d.ctx)) }

// Ptr is a device address.
type Ptr uint64

// Alloc allocates n bytes of device memory.
func (d *Device) Alloc(n int64) (Ptr, error) {
	if n <= 0 {
		n = 1
	}
	var p C.CUdeviceptr
	if err := cuErr("cuMemAlloc_v2", C.star_cuMemAlloc(d.ctx, &p, C.size_t(n))); err != nil {
		return 0, fmt.Errorf("allocate %d bytes on %s: %w", n, d.Name, err)
	}
	return Ptr(p), nil
}

// Free releases device memory from Alloc.
func (d *Device) Free(p Ptr) error {
	if p == 0 {
		return nil
	}
	return cuErr("cuMemFree_v2", C.star_cuMemFree(d.ctx, C.CUdeviceptr(p)))
}

// Upload copies src to device address dst.
func (d *Device) Upload(dst Ptr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return cuErr("cuMemcpyHtoD_v2", C.star_cuMemcpyHtoD(d.ctx, C.CUdeviceptr(dst), unsafe.Pointer(&src[0]), C.size_t(len(src))))
}

// Download copies len(dst) bytes from device address src.
func (d *Device) Download(dst []byte, src Ptr) error {
	if len(dst) == 0 {
		return nil
	}
	return cuErr("cuMemcpyDtoH_v2", C.star_cuMemcpyDtoH(d.ctx, unsafe.Pointer(&dst[0]), C.CUdeviceptr(src), C.size_t(len(dst))))
}

// Copy copies n bytes between device addresses.
func (d *Device) Copy(dst, src Ptr, n int64) error {
	if n == 0 {
		return nil
	}
	return cuErr("cuMemcpyDtoD_v2", C.star_cuMemcpyDtoD(d.ctx, C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n)))
}

// Zero sets n bytes at dst to zero.
func (d *Device) Zero(dst Ptr, n int64) error {
	if n == 0 {
		return nil
	}
	return cuErr("cuMemsetD8_v2", C.star_cuMemsetD8(d.ctx, C.CUdeviceptr(dst), 0, C.size_t(n)))
}

// Module is loaded device code (a cubin or PTX image).
type Module struct {
	d *Device
	m C.CUmodule
}

// Load loads a cubin or PTX image.
func (d *Device) Load(image []byte) (*Module, error) {
	img := C.CBytes(append(image, 0)) // PTX is read as a C string
	defer C.free(img)
	mod := &Module{d: d}
	if err := cuErr("cuModuleLoadData", C.star_cuModuleLoadData(d.ctx, &mod.m, img)); err != nil {
		return nil, err
	}
	return mod, nil
}

// Unload releases the module.
func (m *Module) Unload() error { return cuErr("cuModuleUnload", C.star_cuModuleUnload(m.d.ctx, m.m)) }

// Kernel is one function of a module.
type Kernel struct {
	d    *Device
	f    C.CUfunction
	Name string
}

// Kernel looks up an extern "C" kernel by name.
func (m *Module) Kernel(name string) (*Kernel, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	k := &Kernel{d: m.d, Name: name}
	if err := cuErr("cuModuleGetFunction", C.star_cuModuleGetFunction(m.d.ctx, &k.f, m.m, cname)); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	return k, nil
}

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z int }

// Launch runs the kernel on grid x block threads with the arguments given
// (each a Ptr, int32, int64, uint32 or float32, as the kernel declares
// them). It does not wait for the kernel to finish.
func (k *Kernel) Launch(grid, block Dim3, args ...any) error {
	var buf []byte
	sizes := make([]C.int, len(args))
	for i, a := range args {
		var b [8]byte
		n := 0
		switch v := a.(type) {
		case Ptr:
			*(*uint64)(unsafe.Pointer(&b[0])), n = uint64(v), 8
		case int64:
			*(*int64)(unsafe.Pointer(&b[0])), n = v, 8
		case int32:
			*(*int32)(unsafe.Pointer(&b[0])), n = v, 4
		case uint32:
			*(*uint32)(unsafe.Pointer(&b[0])), n = v, 4
		case float32:
			*(*float32)(unsafe.Pointer(&b[0])), n = v, 4
		default:
			return fmt.Errorf("kernel %s: argument %d has type %T (use nccl.Ptr, int32, int64, uint32 or float32)", k.Name, i, a)
		}
		buf = append(buf, b[:n]...)
		sizes[i] = C.int(n)
	}
	if grid.Y == 0 {
		grid.Y = 1
	}
	if grid.Z == 0 {
		grid.Z = 1
	}
	if block.Y == 0 {
		block.Y = 1
	}
	if block.Z == 0 {
		block.Z = 1
	}
	cargs := C.CBytes(append(buf, 0))
	defer C.free(cargs)
	var sp *C.int
	if len(sizes) > 0 {
		sp = &sizes[0]
	}
	r := C.star_cuLaunchKernel(k.d.ctx, k.f, C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z), 0, cargs, sp, C.int(len(args)))
	runtime.KeepAlive(sizes)
	if err := cuErr("cuLaunchKernel", r); err != nil {
		return fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	return nil
}
