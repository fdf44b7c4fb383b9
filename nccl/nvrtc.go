//go:build cgo

package nccl

/*
#include <stdlib.h>
#include "dl.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

func nvrtcErr(call string, r C.nvrtcResult) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(r), Msg: C.GoString(C.star_nvrtcErrorString(r))}
}

// NVRTCVersion is the NVRTC library's version, e.g. "13.0".
func NVRTCVersion() (string, error) {
	if err := loadNVRTC(); err != nil {
		return "", err
	}
	var a, b C.int
	if err := nvrtcErr("nvrtcVersion", C.star_nvrtcVersion(&a, &b)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d", a, b), nil
}

// Compile compiles CUDA C source with NVRTC for arch (e.g. "sm_90"): a
// cubin for that architecture when NVRTC can make one, else PTX for it
// (the driver compiles PTX when it loads it). A compile error returns
// NVRTC's log.
func Compile(src, name, arch string, opts ...string) (image []byte, kind string, err error) {
	if err := loadNVRTC(); err != nil {
		return nil, "", err
	}
	csrc, cname := C.CString(src), C.CString(name)
	defer C.free(unsafe.Pointer(csrc))
	defer C.free(unsafe.Pointer(cname))
	var p C.nvrtcProgram
	if err := nvrtcErr("nvrtcCreateProgram", C.star_nvrtcCreateProgram(&p, csrc, cname)); err != nil {
		return nil, "", err
	}
	defer C.star_nvrtcDestroyProgram(&p)
	cubin := C.star_nvrtc_has_cubin() != 0
	for _, k := range []string{"cubin", "ptx"} {
		if k == "cubin" && !cubin {
			continue
		}
		target := "--gpu-architecture=" + arch
		if k == "ptx" {
			target = "--gpu-architecture=compute_" + strings.TrimPrefix(arch, "sm_")
		}
		all := append([]string{target, "--std=c++17", "-default-device"}, opts...)
		cs := make([]*C.char, len(all))
		for i, o := range all {
			cs[i] = C.CString(o)
			defer C.free(unsafe.Pointer(cs[i]))
		}
		if err := nvrtcErr("nvrtcCompileProgram", C.star_nvrtcCompileProgram(p, C.int(len(cs)), &cs[0])); err != nil {
			var log *C.char
			var n C.size_t
			if C.star_nvrtcGetProgramLog(p, &log, &n) == 0 && log != nil {
				defer C.free(unsafe.Pointer(log))
				return nil, "", fmt.Errorf("compile %s for %s: %w\n%s", name, arch, err, strings.TrimSpace(C.GoString(log)))
			}
			return nil, "", fmt.Errorf("compile %s for %s: %w", name, arch, err)
		}
		var out *C.char
		var n C.size_t
		get := func() C.nvrtcResult { return C.star_nvrtcGetCUBIN(p, &out, &n) }
		call := "nvrtcGetCUBIN"
		if k == "ptx" {
			get, call = func() C.nvrtcResult { return C.star_nvrtcGetPTX(p, &out, &n) }, "nvrtcGetPTX"
		}
		if err := nvrtcErr(call, get()); err != nil {
			if k == "cubin" {
				continue // an NVRTC too old for this architecture's cubin: PTX
			}
			return nil, "", err
		}
		b := C.GoBytes(unsafe.Pointer(out), C.int(n))
		C.free(unsafe.Pointer(out))
		return b, k, nil
	}
	return nil, "", fmt.Errorf("compile %s: NVRTC gave no image", name)
}
