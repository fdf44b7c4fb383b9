//go:build cgo && !nompi

package collective

/*
#cgo pkg-config: ompi-c
#include "mpi_cgo.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	mpi "github.com/sbromberger/gompi"
)

// MPI is a Comm over MPI_COMM_WORLD (OpenMPI). gompi (v0.2.0) provides
// initialisation checks, the clock and Abort; everything else goes through
// our own cgo calls, each of whose return codes is checked and turned into
// an *Error (MPI_COMM_WORLD's error handler is MPI_ERRORS_RETURN).
//
// Threading: InitMPI asks for MPI_THREAD_MULTIPLE and accepts
// MPI_THREAD_SERIALIZED; at SERIALIZED every MPI call is made under a
// mutex. Callers should still keep all calls on one goroutine, locked to
// its OS thread (runtime.LockOSThread) from InitMPI through Finalize: MPI
// wants Finalize on the thread that initialised it, and a blocking call
// holds the mutex at SERIALIZED.
type MPI struct {
	rank, size           int
	localRank, localSize int
	provided             int

	serialize bool       // provided < MPI_THREAD_MULTIPLE: one MPI call at a time
	mu        sync.Mutex // held around MPI calls when serialize
	closed    atomic.Bool

	world *mpi.Communicator // gompi's handle on MPI_COMM_WORLD, for Abort

	// Guarded by reduceMu.
	types  map[int]C.MPI_Datatype // contiguous runs of elem MPI_FLOATs
	op     C.MPI_Op
	haveOp bool

	bytesSent atomic.Int64
	calls     atomic.Int64
}

var _ Comm = (*MPI)(nil)

// initMu serialises InitMPI: MPI is initialised once per process.
var initMu sync.Mutex

// InitMPI initialises MPI (MPI_Init_thread asking for MPI_THREAD_MULTIPLE;
// anything below MPI_THREAD_SERIALIZED is refused), sets MPI_ERRORS_RETURN
// on MPI_COMM_WORLD and returns the world communicator. It may be called
// once per process; call Finalize at the end. See MPI for threading.
func InitMPI() (*MPI, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if mpi.IsOn() {
		return nil, errors.New("collective: MPI is already initialised (InitMPI may be called once per process)")
	}
	var provided C.int
	if err := mpiErr("MPI_Init_thread", C.MPI_Init_thread(nil, nil, C.MPI_THREAD_MULTIPLE, &provided)); err != nil {
		return nil, err
	}
	fail := func(err error) (*MPI, error) {
		C.MPI_Finalize()
		return nil, err
	}
	if err := mpiErr("MPI_Comm_set_errhandler", C.star_errors_return()); err != nil {
		return fail(err)
	}
	if provided < C.MPI_THREAD_SERIALIZED {
		return fail(fmt.Errorf("collective: MPI provides thread level %s, need at least MPI_THREAD_SERIALIZED",
			threadLevelName(int(provided))))
	}
	m := &MPI{
		provided:  int(provided),
		serialize: provided < C.MPI_THREAD_MULTIPLE,
		types:     map[int]C.MPI_Datatype{},
	}
	var r, s C.int
	if err := mpiErr("MPI_Comm_rank", C.MPI_Comm_rank(C.star_world(), &r)); err != nil {
		return fail(err)
	}
	if err := mpiErr("MPI_Comm_size", C.MPI_Comm_size(C.star_world(), &s)); err != nil {
		return fail(err)
	}
	m.rank, m.size = int(r), int(s)
	if lr, ls, ok := envLocal(); ok {
		m.localRank, m.localSize = lr, ls
	} else {
		var lr, ls C.int
		if err := mpiErr("MPI_Comm_split_type", C.star_local_split(&lr, &ls)); err != nil {
			return fail(err)
		}
		m.localRank, m.localSize = int(lr), int(ls)
	}
	m.world = mpi.NewCommunicator(nil)
	return m, nil
}

// Finalize frees the datatypes and op this MPI created and calls
// MPI_Finalize. Later calls on m return ErrClosed; a second Finalize
// returns nil.
func (m *MPI) Finalize() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	reduceMu.Lock()
	for elem, t := range m.types {
		errs = append(errs, mpiErr("MPI_Type_free", C.MPI_Type_free(&t)))
		delete(m.types, elem)
	}
	if m.haveOp {
		errs = append(errs, mpiErr("MPI_Op_free", C.MPI_Op_free(&m.op)))
		m.haveOp = false
	}
	reduceMu.Unlock()
	errs = append(errs, mpiErr("MPI_Finalize", C.MPI_Finalize()))
	return errors.Join(errs...)
}

// LocalRank is this process's rank among the ranks on its node (from
// OMPI_COMM_WORLD_LOCAL_RANK, else MPI_Comm_split_type SHARED).
func (m *MPI) LocalRank() int { return m.localRank }

// LocalSize is the number of ranks on this process's node.
func (m *MPI) LocalSize() int { return m.localSize }

// ThreadLevel names the thread support MPI provided, e.g.
// "MPI_THREAD_MULTIPLE".
func (m *MPI) ThreadLevel() string { return threadLevelName(m.provided) }

// Wtime is MPI_Wtime: seconds since an arbitrary time in the past.
func (m *MPI) Wtime() float64 { return mpi.WorldTime() }

func threadLevelName(l int) string {
	switch C.int(l) {
	case C.MPI_THREAD_SINGLE:
		return "MPI_THREAD_SINGLE"
	case C.MPI_THREAD_FUNNELED:
		return "MPI_THREAD_FUNNELED"
	case C.MPI_THREAD_SERIALIZED:
		return "MPI_THREAD_SERIALIZED"
	case C.MPI_THREAD_MULTIPLE:
		return "MPI_THREAD_MULTIPLE"
	}
	return fmt.Sprintf("thread level %d", l)
}

// mpiErr turns an MPI return code into an *Error (nil for MPI_SUCCESS).
func mpiErr(op string, rc C.int) error {
	if rc == C.MPI_SUCCESS {
		return nil
	}
	e := &Error{Op: op, Code: int(rc), Class: -1}
	var class C.int
	if C.MPI_Error_class(rc, &class) == C.MPI_SUCCESS {
		e.Class = int(class)
	}
	var buf [C.MPI_MAX_ERROR_STRING + 1]C.char
	var n C.int
	if C.MPI_Error_string(rc, &buf[0], &n) == C.MPI_SUCCESS && n > 0 {
		e.Msg = C.GoStringN(&buf[0], n)
	}
	return e
}

// begin starts one call on m: it counts it, refuses after Finalize and, at
// MPI_THREAD_SERIALIZED, takes the MPI lock (end releases it).
func (m *MPI) begin() error {
	m.calls.Add(1)
	if m.closed.Load() {
		return ErrClosed
	}
	if m.serialize {
		m.mu.Lock()
	}
	return nil
}

func (m *MPI) end() {
	if m.serialize {
		m.mu.Unlock()
	}
}

// count converts a length to an MPI count.
func count(n int, what string) (C.int, error) {
	if n > math.MaxInt32 {
		return 0, fmt.Errorf("collective: %s of %d elements exceeds MPI's int count", what, n)
	}
	return C.int(n), nil
}

// peer checks a point-to-point rank or tag for the values MPI would take
// as wildcards (MPI_ANY_SOURCE, MPI_PROC_NULL, MPI_ANY_TAG); too-large
// values are left for MPI to report.
func peer(what string, v int) error {
	if v < 0 {
		return fmt.Errorf("collective: %s %d is negative", what, v)
	}
	if v > math.MaxInt32 {
		return fmt.Errorf("collective: %s %d out of range", what, v)
	}
	return nil
}

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func floatsPtr(f []float32) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(f)) }

// Rank implements Comm.
func (m *MPI) Rank() int { return m.rank }

// Size implements Comm.
func (m *MPI) Size() int { return m.size }

// Stats implements Comm.
func (m *MPI) Stats() Stats {
	return Stats{BytesSent: m.bytesSent.Load(), Calls: m.calls.Load()}
}

// Barrier implements Comm.
func (m *MPI) Barrier() error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	return mpiErr("MPI_Barrier", C.MPI_Barrier(C.star_world()))
}

// Bcast implements Comm. A non-root buffer shorter than root's is reported
// by MPI (MPI_ERR_TRUNCATE); other mismatches are undefined in MPI.
func (m *MPI) Bcast(buf []byte, root int) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	n, err := count(len(buf), "Bcast")
	if err != nil {
		return err
	}
	if err := mpiErr("MPI_Bcast", C.MPI_Bcast(bytesPtr(buf), n, C.star_byte(), C.int(root), C.star_world())); err != nil {
		return err
	}
	if root == m.rank {
		m.bytesSent.Add(int64(len(buf)) * int64(m.size-1))
	}
	return nil
}

// BcastF32 implements Comm.
func (m *MPI) BcastF32(buf []float32, root int) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	n, err := count(len(buf), "BcastF32")
	if err != nil {
		return err
	}
	if err := mpiErr("MPI_Bcast", C.MPI_Bcast(floatsPtr(buf), n, C.star_float(), C.int(root), C.star_world())); err != nil {
		return err
	}
	if root == m.rank {
		m.bytesSent.Add(4 * int64(len(buf)) * int64(m.size-1))
	}
	return nil
}

// GatherF32 implements Comm. A root whose recv has the wrong length still
// takes part (into scratch) so the other ranks do not hang, then returns
// an error.
func (m *MPI) GatherF32(send, recv []float32, root int) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	n, err := count(len(send), "GatherF32")
	if err != nil {
		return err
	}
	var rp unsafe.Pointer
	var bad error
	if root == m.rank {
		want := len(send) * m.size
		if _, err := count(want, "GatherF32 recv"); err != nil {
			return err
		}
		if len(recv) != want {
			bad = fmt.Errorf("collective: GatherF32: recv has %d floats, want %d (size %d x send %d)",
				len(recv), want, m.size, len(send))
			rp = floatsPtr(make([]float32, want))
		} else {
			rp = floatsPtr(recv)
		}
	}
	if err := mpiErr("MPI_Gather", C.MPI_Gather(floatsPtr(send), n, C.star_float(),
		rp, n, C.star_float(), C.int(root), C.star_world())); err != nil {
		return err
	}
	m.bytesSent.Add(4 * int64(len(send)))
	return bad
}

// AllgatherF32 implements Comm. A rank whose recv has the wrong length
// still takes part (into scratch) and then returns an error.
func (m *MPI) AllgatherF32(send, recv []float32) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	n, err := count(len(send), "AllgatherF32")
	if err != nil {
		return err
	}
	want := len(send) * m.size
	if _, err := count(want, "AllgatherF32 recv"); err != nil {
		return err
	}
	var bad error
	out := recv
	if len(recv) != want {
		bad = fmt.Errorf("collective: AllgatherF32: recv has %d floats, want %d (size %d x send %d)",
			len(recv), want, m.size, len(send))
		out = make([]float32, want)
	}
	if err := mpiErr("MPI_Allgather", C.MPI_Allgather(floatsPtr(send), n, C.star_float(),
		floatsPtr(out), n, C.star_float(), C.star_world())); err != nil {
		return err
	}
	m.bytesSent.Add(4 * int64(len(send)))
	return bad
}

// AllgatherBytes implements Comm: it allgathers the lengths, then the
// bytes with MPI_Allgatherv into one buffer that the returned slices share
// (each capped at its own length).
func (m *MPI) AllgatherBytes(send []byte) ([][]byte, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.end()
	n, err := count(len(send), "AllgatherBytes")
	if err != nil {
		return nil, err
	}
	lens := make([]int64, m.size)
	mine := int64(len(send))
	if err := mpiErr("MPI_Allgather", C.MPI_Allgather(unsafe.Pointer(&mine), 1, C.star_int64(),
		unsafe.Pointer(&lens[0]), 1, C.star_int64(), C.star_world())); err != nil {
		return nil, err
	}
	counts := make([]C.int, m.size)
	displs := make([]C.int, m.size)
	var total int64
	for r, l := range lens {
		if l < 0 || total+l > math.MaxInt32 {
			// Every rank sees the same lengths, so every rank stops here.
			return nil, fmt.Errorf("collective: AllgatherBytes: %d bytes in all exceed MPI's int count", total+l)
		}
		counts[r], displs[r] = C.int(l), C.int(total)
		total += l
	}
	buf := make([]byte, total)
	if err := mpiErr("MPI_Allgatherv", C.MPI_Allgatherv(bytesPtr(send), n, C.star_byte(),
		bytesPtr(buf), &counts[0], &displs[0], C.star_byte(), C.star_world())); err != nil {
		return nil, err
	}
	out := make([][]byte, m.size)
	for r := range out {
		lo, hi := int(displs[r]), int(displs[r])+int(counts[r])
		out[r] = buf[lo:hi:hi]
	}
	m.bytesSent.Add(int64(len(send)))
	return out, nil
}

// AllreduceF32 implements Comm with MPI_Allreduce (in place) over a
// contiguous datatype of elem MPI_FLOATs and one non-commutative user op,
// so MPI combines in rank order. Only one reduction runs at a time per
// process. A ReduceFunc that panics makes the call return an error.
func (m *MPI) AllreduceF32(buf []float32, elem int, op ReduceFunc) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	if op == nil {
		return errors.New("collective: AllreduceF32: nil ReduceFunc")
	}
	if elem <= 0 || len(buf)%elem != 0 {
		return fmt.Errorf("collective: AllreduceF32: %d floats is not a whole number of %d-wide elements", len(buf), elem)
	}
	n, err := count(len(buf)/elem, "AllreduceF32")
	if err != nil {
		return err
	}
	reduceMu.Lock()
	defer reduceMu.Unlock()
	dt, err := m.floatType(elem)
	if err != nil {
		return err
	}
	if !m.haveOp {
		if err := mpiErr("MPI_Op_create", C.star_op_create(&m.op)); err != nil {
			return err
		}
		m.haveOp = true
	}
	reduceCur, reduceErr = op, nil
	rc := C.star_allreduce_inplace(floatsPtr(buf), n, dt, m.op)
	reduceCur = nil
	if err := mpiErr("MPI_Allreduce", rc); err != nil {
		return err
	}
	if err := reduceErr; err != nil {
		reduceErr = nil
		return err
	}
	m.bytesSent.Add(4 * int64(len(buf)))
	return nil
}

// floatType returns the committed contiguous type of elem floats (cached;
// called with reduceMu held).
func (m *MPI) floatType(elem int) (C.MPI_Datatype, error) {
	if t, ok := m.types[elem]; ok {
		return t, nil
	}
	n, err := count(elem, "AllreduceF32 element")
	if err != nil {
		return nil, err
	}
	var t C.MPI_Datatype
	if err := mpiErr("MPI_Type_contiguous", C.MPI_Type_contiguous(n, C.star_float(), &t)); err != nil {
		return nil, err
	}
	if err := mpiErr("MPI_Type_commit", C.MPI_Type_commit(&t)); err != nil {
		C.MPI_Type_free(&t)
		return nil, err
	}
	m.types[elem] = t
	return t, nil
}

// SendBytes implements Comm (MPI_Send: may block until matched).
func (m *MPI) SendBytes(buf []byte, to, tag int) error {
	if err := m.begin(); err != nil {
		return err
	}
	defer m.end()
	if err := errors.Join(peer("SendBytes: destination rank", to), peer("SendBytes: tag", tag)); err != nil {
		return err
	}
	n, err := count(len(buf), "SendBytes")
	if err != nil {
		return err
	}
	if err := mpiErr("MPI_Send", C.MPI_Send(bytesPtr(buf), n, C.star_byte(), C.int(to), C.int(tag), C.star_world())); err != nil {
		return err
	}
	m.bytesSent.Add(int64(len(buf)))
	return nil
}

// RecvBytes implements Comm: a matched probe (MPI_Mprobe, so no other
// thread can take the message in between) sizes the buffer, then MPI_Mrecv.
func (m *MPI) RecvBytes(from, tag int) ([]byte, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.end()
	if err := errors.Join(peer("RecvBytes: source rank", from), peer("RecvBytes: tag", tag)); err != nil {
		return nil, err
	}
	var msg C.MPI_Message
	var st C.MPI_Status
	if err := mpiErr("MPI_Mprobe", C.MPI_Mprobe(C.int(from), C.int(tag), C.star_world(), &msg, &st)); err != nil {
		return nil, err
	}
	var n C.int
	if err := mpiErr("MPI_Get_count", C.MPI_Get_count(&st, C.star_byte(), &n)); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("collective: RecvBytes: message from %d tag %d has undefined length", from, tag)
	}
	buf := make([]byte, int(n))
	if err := mpiErr("MPI_Mrecv", C.MPI_Mrecv(bytesPtr(buf), n, C.star_byte(), &msg, &st)); err != nil {
		return nil, err
	}
	return buf, nil
}

// mpiRequest is a pending MPI_Isend / MPI_Irecv. Its buffer stays pinned
// (runtime.Pinner, as MPI keeps the pointer) until Wait.
type mpiRequest struct {
	m    *MPI
	name string // "MPI_Isend" / "MPI_Irecv"
	req  C.MPI_Request
	pin  runtime.Pinner
	recv []float32 // the receive buffer, to check the length that arrived
	from int
	tag  int
	done bool
	err  error
}

// Wait implements Request with MPI_Wait; for a receive it also checks that
// exactly len(buf) floats arrived. Further calls return the same result.
func (r *mpiRequest) Wait() error {
	if r.done {
		return r.err
	}
	r.done = true
	defer r.pin.Unpin()
	if r.m.closed.Load() {
		r.err = ErrClosed
		return r.err
	}
	if r.m.serialize {
		r.m.mu.Lock()
		defer r.m.mu.Unlock()
	}
	var st C.MPI_Status
	if r.err = mpiErr(r.name+"/MPI_Wait", C.MPI_Wait(&r.req, &st)); r.err != nil {
		return r.err
	}
	if r.name == "MPI_Irecv" {
		var n C.int
		if r.err = mpiErr("MPI_Get_count", C.MPI_Get_count(&st, C.star_float(), &n)); r.err != nil {
			return r.err
		}
		if int(n) != len(r.recv) {
			r.err = fmt.Errorf("collective: IrecvF32 from %d tag %d: %d floats arrived, buffer holds %d",
				r.from, r.tag, int(n), len(r.recv))
		}
	}
	return r.err
}

// IsendF32 implements Comm.
func (m *MPI) IsendF32(buf []float32, to, tag int) (Request, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.end()
	if err := errors.Join(peer("IsendF32: destination rank", to), peer("IsendF32: tag", tag)); err != nil {
		return nil, err
	}
	n, err := count(len(buf), "IsendF32")
	if err != nil {
		return nil, err
	}
	r := &mpiRequest{m: m, name: "MPI_Isend", from: m.rank, tag: tag}
	if len(buf) > 0 {
		r.pin.Pin(unsafe.SliceData(buf))
	}
	if err := mpiErr("MPI_Isend", C.MPI_Isend(floatsPtr(buf), n, C.star_float(), C.int(to), C.int(tag),
		C.star_world(), &r.req)); err != nil {
		r.pin.Unpin()
		return nil, err
	}
	m.bytesSent.Add(4 * int64(len(buf)))
	return r, nil
}

// IrecvF32 implements Comm. Wait fails unless exactly len(buf) floats
// arrive (MPI_ERR_TRUNCATE when more were sent).
func (m *MPI) IrecvF32(buf []float32, from, tag int) (Request, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.end()
	if err := errors.Join(peer("IrecvF32: source rank", from), peer("IrecvF32: tag", tag)); err != nil {
		return nil, err
	}
	n, err := count(len(buf), "IrecvF32")
	if err != nil {
		return nil, err
	}
	r := &mpiRequest{m: m, name: "MPI_Irecv", recv: buf, from: from, tag: tag}
	if len(buf) > 0 {
		r.pin.Pin(unsafe.SliceData(buf))
	}
	if err := mpiErr("MPI_Irecv", C.MPI_Irecv(floatsPtr(buf), n, C.star_float(), C.int(from), C.int(tag),
		C.star_world(), &r.req)); err != nil {
		r.pin.Unpin()
		return nil, err
	}
	return r, nil
}

// Abort implements Comm with MPI_Abort(MPI_COMM_WORLD, code) through gompi.
// It ignores the MPI lock (another goroutine may be blocked in a call) and
// returns only after Finalize, when MPI can no longer abort.
func (m *MPI) Abort(code int) {
	if m.closed.Load() {
		return
	}
	m.world.Abort(code)
}
