//go:build cgo

package nccl

/*
#include <stdlib.h>
#include "dl.h"
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// A library is found in this order: the folder named by STAR_CUDA_LIBDIR
// (only there, when it is set: tests point it at a stand-in), the standard
// sonames (the loader's search path), then the nvidia/*/lib folders of
// Python's site-packages, where pip puts CUDA's libraries.

// libSpec names a library and the sonames it goes by, newest first.
type libSpec struct {
	what  string   // "CUDA driver", ...
	names []string // sonames, tried in order
	pre   []string // globs of libraries to load first from the same folder (RTLD_GLOBAL)
}

var (
	specCUDA  = libSpec{what: "CUDA driver", names: []string{"libcuda.so.1", "libcuda.so"}}
	specNVRTC = libSpec{what: "NVRTC", names: []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"},
		pre: []string{"libnvrtc-builtins.so.*"}}
	specLt   = libSpec{what: "cuBLASLt", names: []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}}
	specNCCL = libSpec{what: "NCCL", names: []string{"libnccl.so.2", "libnccl.so"}}
)

// lib is an opened library.
type lib struct {
	path string
	h    unsafe.Pointer
}

// candidates lists where to look for spec, in order.
func candidates(spec libSpec) []string {
	if dir := os.Getenv("STAR_CUDA_LIBDIR"); dir != "" {
		var out []string
		for _, n := range spec.names {
			out = append(out, filepath.Join(dir, n))
		}
		return out
	}
	out := append([]string(nil), spec.names...) // the loader's search path
	for _, dir := range sitePackageLibDirs() {
		for _, n := range spec.names {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// sitePackageLibDirs are the nvidia/*/lib folders of the Python
// installations this machine seems to have.
func sitePackageLibDirs() []string {
	var roots []string
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := os.Getenv(v); p != "" {
			roots = append(roots, p+"/lib/python3*/site-packages")
		}
	}
	for _, p := range filepath.SplitList(os.Getenv("PYTHONPATH")) {
		if p != "" {
			roots = append(roots, p)
		}
	}
	home, _ := os.UserHomeDir()
	roots = append(roots,
		"/usr/local/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages",
		"/usr/local/lib/python3*/site-packages", "/opt/conda/lib/python3*/site-packages",
		home+"/.local/lib/python3*/site-packages", "/root/.pyenv/versions/*/lib/python3*/site-packages")
	seen := map[string]bool{}
	var out []string
	for _, r := range roots {
		dirs, _ := filepath.Glob(filepath.Join(r, "nvidia", "*", "lib"))
		sort.Strings(dirs)
		for _, d := range dirs {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// open loads the first candidate of spec that opens; the error lists
// every place tried.
func open(spec libSpec) (*lib, error) {
	var tried []string
	for _, path := range candidates(spec) {
		if strings.Contains(path, "/") {
			if _, err := os.Stat(path); err != nil {
				tried = append(tried, path+": not there")
				continue
			}
			for _, g := range spec.pre {
				pre, _ := filepath.Glob(filepath.Join(filepath.Dir(path), g))
				for _, p := range pre {
					dlopen(p, true) // best effort: the library loads it itself otherwise
				}
			}
		}
		h, err := dlopen(path, false)
		if err == nil {
			return &lib{path: path, h: h}, nil
		}
		tried = append(tried, err.Error())
	}
	where := "the loader's search path and Python's site-packages nvidia/*/lib"
	if dir := os.Getenv("STAR_CUDA_LIBDIR"); dir != "" {
		where = "STAR_CUDA_LIBDIR=" + dir
	}
	return nil, fmt.Errorf("no %s found in %s (tried %s)", spec.what, where, strings.Join(tried, "; "))
}

func dlopen(path string, global bool) (unsafe.Pointer, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	g := C.int(0)
	if global {
		g = 1
	}
	h := C.star_dlopen(cpath, g, &buf[0], C.int(len(buf)))
	if h == nil {
		return nil, fmt.Errorf("%s", C.GoString(&buf[0]))
	}
	return h, nil
}

// bind fills a library's table; a missing entry point is named.
func (l *lib) bind(spec libSpec, load func(unsafe.Pointer) C.int, name func(C.int) *C.char) error {
	if i := load(l.h); i >= 0 {
		return fmt.Errorf("%s %s lacks %s: it is too old or not the real library", spec.what, l.path, C.GoString(name(i)))
	}
	return nil
}

// The libraries are loaded once per process, each on first use.
var (
	cudaOnce, nvrtcOnce, ltOnce, ncclOnce             sync.Once
	cudaLib, nvrtcLib, ltLib, ncclLib                 *lib
	cudaLoadErr, nvrtcLoadErr, ltLoadErr, ncclLoadErr error
)

func loadCUDA() error {
	cudaOnce.Do(func() {
		if cudaLib, cudaLoadErr = open(specCUDA); cudaLoadErr == nil {
			cudaLoadErr = cudaLib.bind(specCUDA, func(h unsafe.Pointer) C.int { return C.star_cu_load(h) }, func(i C.int) *C.char { return C.star_cu_name(i) })
		}
		if cudaLoadErr == nil {
			cudaLoadErr = initDriver()
		}
	})
	return cudaLoadErr
}

func loadNVRTC() error {
	nvrtcOnce.Do(func() {
		if nvrtcLib, nvrtcLoadErr = open(specNVRTC); nvrtcLoadErr == nil {
			nvrtcLoadErr = nvrtcLib.bind(specNVRTC, func(h unsafe.Pointer) C.int { return C.star_nvrtc_load(h) }, func(i C.int) *C.char { return C.star_nvrtc_name(i) })
		}
	})
	return nvrtcLoadErr
}

func loadLt() error {
	ltOnce.Do(func() {
		if ltLib, ltLoadErr = open(specLt); ltLoadErr == nil {
			ltLoadErr = ltLib.bind(specLt, func(h unsafe.Pointer) C.int { return C.star_lt_load(h) }, func(i C.int) *C.char { return C.star_lt_name(i) })
		}
	})
	return ltLoadErr
}

func loadNCCL() error {
	ncclOnce.Do(func() {
		if ncclLib, ncclLoadErr = open(specNCCL); ncclLoadErr == nil {
			ncclLoadErr = ncclLib.bind(specNCCL, func(h unsafe.Pointer) C.int { return C.star_nccl_load(h) }, func(i C.int) *C.char { return C.star_nccl_name(i) })
		}
	})
	return ncclLoadErr
}

// LoadNVRTC, LoadLt and LoadNCCL load NVRTC, cuBLASLt and NCCL now (they
// load on first use otherwise): an error says what was searched.
func LoadNVRTC() error { return loadNVRTC() }
func LoadLt() error    { return loadLt() }
func LoadNCCL() error  { return loadNCCL() }

// Libraries reports the path of each library loaded so far.
func Libraries() map[string]string {
	out := map[string]string{}
	for _, l := range []struct {
		what string
		l    *lib
	}{{"cuda", cudaLib}, {"nvrtc", nvrtcLib}, {"cublasLt", ltLib}, {"nccl", ncclLib}} {
		if l.l != nil {
			out[l.what] = l.l.path
		}
	}
	return out
}
