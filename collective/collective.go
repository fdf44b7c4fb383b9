// Package collective moves bytes between ranks: it knows nothing of models.
// The MPI implementation (OpenMPI through gompi plus a small cgo layer)
// arrives with distributed Star Attention; Single is the one-process
// implementation every run can fall back to.
package collective

// Comm is a group of ranks that exchange float32 and byte messages.
type Comm interface {
	Rank() int // this rank, 0 ≤ Rank < Size
	Size() int // number of ranks
	// Bcast copies root's buf into every rank's buf.
	Bcast(buf []byte, root int) error
	// GatherF32 concatenates every rank's send (equal lengths) in rank
	// order into recv on root ([Size*len(send)]; ignored elsewhere).
	GatherF32(send, recv []float32, root int) error
}

// Single is the communicator of a lone process.
type Single struct{}

func (Single) Rank() int                        { return 0 }
func (Single) Size() int                        { return 1 }
func (Single) Bcast(buf []byte, root int) error { return nil }
func (Single) GatherF32(send, recv []float32, root int) error {
	copy(recv, send)
	return nil
}
