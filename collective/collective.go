// Package collective moves bytes between ranks: it knows nothing of models.
//
// Comm is the interface the rest of star uses. MPI implements it over
// OpenMPI (github.com/sbromberger/gompi plus a small cgo layer of our own for
// what gompi lacks, with every return code checked); Local implements it
// with goroutines in one process, for unit tests; Single is a lone process.
package collective

import "errors"

// ReduceFunc combines two equally long runs of elements, each elem float32
// wide: inout[i] = in[i] ⊕ inout[i], where in comes from lower ranks. It
// must be associative; it need not be commutative (reductions apply it in
// rank order).
type ReduceFunc func(in, inout []float32, elem int)

// Stats counts what this rank has sent. BytesSent is the payload this rank
// hands to the transport: for Bcast/BcastF32 len*(Size-1) at the root and 0
// elsewhere; for GatherF32, AllgatherF32 and AllgatherBytes its send; for
// AllreduceF32 its buffer; for SendBytes and IsendF32 the message; 0 for
// receives and Barrier. Failed calls add no bytes. Calls counts every call
// of a Comm method other than Rank, Size, Abort and Stats (Request.Wait is
// not a call), failed ones included.
type Stats struct {
	BytesSent int64 // payload bytes this rank handed to the transport
	Calls     int64 // collective and point-to-point calls
}

// Request is a pending non-blocking operation.
type Request interface {
	Wait() error
}

// Comm is a group of ranks exchanging float32 and byte messages. Every
// collective must be called by all ranks in the same order.
type Comm interface {
	Rank() int // this rank, 0 <= Rank < Size
	Size() int // number of ranks
	Barrier() error
	// Bcast copies root's buf into every rank's buf (same length everywhere).
	Bcast(buf []byte, root int) error
	// BcastF32 is Bcast for float32.
	BcastF32(buf []float32, root int) error
	// GatherF32 concatenates every rank's send (equal lengths) in rank
	// order into recv on root ([Size*len(send)]; ignored elsewhere).
	GatherF32(send, recv []float32, root int) error
	// AllgatherF32 is GatherF32 with the result on every rank.
	AllgatherF32(send, recv []float32) error
	// AllgatherBytes gathers variable-length messages on every rank,
	// indexed by rank.
	AllgatherBytes(send []byte) ([][]byte, error)
	// AllreduceF32 reduces buf (a whole number of elem-wide elements)
	// over all ranks with op, in rank order; every rank gets the result.
	AllreduceF32(buf []float32, elem int, op ReduceFunc) error
	// SendBytes / RecvBytes: point-to-point messages of any length.
	SendBytes(buf []byte, to, tag int) error
	RecvBytes(from, tag int) ([]byte, error)
	// Isend / Irecv for float32: non-blocking; buf must not be touched
	// until Wait returns.
	IsendF32(buf []float32, to, tag int) (Request, error)
	IrecvF32(buf []float32, from, tag int) (Request, error)
	// Abort ends every rank of the job with code (best effort; returns only
	// where the transport cannot abort).
	Abort(code int)
	// Stats reports what this rank has sent so far.
	Stats() Stats
}

// ErrClosed is returned by a Local comm used after its group is closed.
var ErrClosed = errors.New("collective: communicator closed")
