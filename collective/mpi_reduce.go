//go:build cgo && !nompi

package collective

// This file holds the //export that the C trampoline of the user MPI_Op
// calls; with //export the preamble may only declare, so the C lives in
// mpi_cgo.c.

/*
#include "mpi_cgo.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
	"sync"
	"unsafe"
)

// One MPI_Op serves every ReduceFunc: reduceMu makes sure only one
// reduction runs at a time in this process, and reduceCur is the ReduceFunc
// that the op's trampoline dispatches to while it runs. These are package
// state, not fields of MPI, because an MPI user op is called with no
// context of ours (MPI_User_function has no user pointer), and MPI is one
// per process anyway; everything else lives in MPI.
var (
	reduceMu  sync.Mutex
	reduceCur ReduceFunc
	reduceErr error // first failure inside the current reduction
)

//export starReduceGo
func starReduceGo(in, inout unsafe.Pointer, n, elemBytes C.int) {
	if reduceErr != nil {
		return
	}
	op := reduceCur
	if op == nil {
		reduceErr = fmt.Errorf("collective: MPI reduction callback with no ReduceFunc registered")
		return
	}
	if elemBytes <= 0 || elemBytes%4 != 0 {
		reduceErr = fmt.Errorf("collective: MPI reduction callback with element of %d bytes", int(elemBytes))
		return
	}
	elem := int(elemBytes) / 4
	total := int(n) * elem
	if total <= 0 {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			reduceErr = fmt.Errorf("collective: ReduceFunc panicked: %v\n%s", p, debug.Stack())
		}
	}()
	op(unsafe.Slice((*float32)(in), total), unsafe.Slice((*float32)(inout), total), elem)
}
