//go:build cgo && !nompi

package collective

/*
#include <stdlib.h>
#include "mpi_cgo.h"
*/
import "C"

import "unsafe"

// mpiBeat runs heartbeat rounds as MPI_Iallreduce (MIN of one int: 1 when
// the rank wants to close) on a duplicate of MPI_COMM_WORLD, so rounds
// never match the ranks' own messages. Its buffers and request live in C
// memory: MPI holds them while a round is pending.
type mpiBeat struct {
	comm C.MPI_Comm
	mem  unsafe.Pointer // send int, recv int, request
	send *C.int
	recv *C.int
	req  *C.MPI_Request
}

// heartbeat implements heartbeater. Rounds run on the watchdog's own
// thread beside the ranks' calls, which needs MPI_THREAD_MULTIPLE.
func (m *MPI) heartbeat() (heartbeat, error) {
	if m.serialize {
		return nil, ErrNoHeartbeat
	}
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.end()
	b := &mpiBeat{}
	b.mem = C.calloc(1, C.size_t(2*unsafe.Sizeof(C.int(0))+unsafe.Sizeof(C.MPI_Request(nil))))
	if b.mem == nil {
		return nil, &Error{Op: "calloc", Class: -1, Msg: "out of memory"}
	}
	b.send = (*C.int)(b.mem)
	b.recv = (*C.int)(unsafe.Add(b.mem, unsafe.Sizeof(C.int(0))))
	b.req = (*C.MPI_Request)(unsafe.Add(b.mem, 2*unsafe.Sizeof(C.int(0))))
	if err := mpiErr("MPI_Comm_dup", C.star_comm_dup(&b.comm)); err != nil {
		C.free(b.mem)
		return nil, err
	}
	return b, nil
}

func (b *mpiBeat) post(closing bool) error {
	*b.send = 0
	if closing {
		*b.send = 1
	}
	return mpiErr("MPI_Iallreduce", C.star_iallreduce_min_int(b.send, b.recv, b.comm, b.req))
}

func (b *mpiBeat) test() (done, allClosing bool, err error) {
	var flag C.int
	if err := mpiErr("MPI_Test", C.star_test(b.req, &flag)); err != nil {
		return false, false, err
	}
	return flag != 0, flag != 0 && *b.recv == 1, nil
}

func (b *mpiBeat) free() error {
	err := mpiErr("MPI_Comm_free", C.star_comm_free(&b.comm))
	C.free(b.mem)
	return err
}
