//go:build cgo

package nccl

/*
#include <string.h>
#include "dl.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

func ncclErr(call string, r C.ncclResult_t) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(r), Msg: C.GoString(C.star_ncclErrorString(r))}
}

// UniqueID is NCCL's rendezvous id: rank 0 makes it and sends it to the
// others (over MPI), as llm.c does.
type UniqueID [128]byte

// NewUniqueID makes a rendezvous id (rank 0).
func NewUniqueID() (UniqueID, error) {
	var id UniqueID
	if err := loadNCCL(); err != nil {
		return id, err
	}
	var c C.ncclUniqueId
	if err := ncclErr("ncclGetUniqueId", C.star_ncclGetUniqueId(&c)); err != nil {
		return id, err
	}
	copy(id[:], C.GoBytes(unsafe.Pointer(&c), C.int(len(id))))
	return id, nil
}

// NCCLVersion is the library's version code (e.g. 22703).
func NCCLVersion() (int, error) {
	if err := loadNCCL(); err != nil {
		return 0, err
	}
	var v C.int
	if err := ncclErr("ncclGetVersion", C.star_ncclGetVersion(&v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

// Comm is an NCCL communicator of ranks, each on its own device.
type Comm struct {
	d            *Device
	c            C.ncclComm_t
	rank, nranks int
}

// NewComm joins rank of nranks on device d with id.
func (d *Device) NewComm(id UniqueID, rank, nranks int) (*Comm, error) {
	if err := loadNCCL(); err != nil {
		return nil, err
	}
	var cid C.ncclUniqueId
	C.memcpy(unsafe.Pointer(&cid), unsafe.Pointer(&id[0]), C.size_t(len(id)))
	c := &Comm{d: d, rank: rank, nranks: nranks}
	if err := ncclErr("ncclCommInitRank", C.star_ncclCommInitRank(d.ctx, &c.c, C.int(nranks), cid, C.int(rank))); err != nil {
		return nil, fmt.Errorf("rank %d of %d on %s: %w", rank, nranks, d.BusID, err)
	}
	return c, nil
}

// Close destroys the communicator.
func (c *Comm) Close() error { return ncclErr("ncclCommDestroy", C.star_ncclCommDestroy(c.c)) }

// AllGatherF32 gathers count float32 from every rank's send into recv
// ([nranks*count], rank order) on every rank, and waits for it.
func (c *Comm) AllGatherF32(send, recv Ptr, count int) error {
	const ncclFloat32 = 7
	return ncclErr("ncclAllGather", C.star_ncclAllGather(c.d.ctx, C.CUdeviceptr(send), C.CUdeviceptr(recv), C.size_t(count), ncclFloat32, c.c))
}
