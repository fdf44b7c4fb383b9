//go:build !cgo || nompi

package collective

import "errors"

// errNoMPI is what every MPI entry point returns in a build without MPI
// (CGO_ENABLED=0 or the nompi build tag).
var errNoMPI = errors.New("collective: built without MPI (needs cgo and OpenMPI; built with nompi or CGO_ENABLED=0)")

// MPI is unavailable in this build: InitMPI always fails. The type and its
// methods exist so that callers compile unchanged.
type MPI struct{}

var _ Comm = (*MPI)(nil)

// InitMPI fails: this build has no MPI.
func InitMPI() (*MPI, error) { return nil, errNoMPI }

func (m *MPI) Finalize() error     { return errNoMPI }
func (m *MPI) LocalRank() int      { return 0 }
func (m *MPI) LocalSize() int      { return 1 }
func (m *MPI) ThreadLevel() string { return "none" }
func (m *MPI) Wtime() float64      { return 0 }

func (m *MPI) Rank() int                               { return 0 }
func (m *MPI) Size() int                               { return 1 }
func (m *MPI) Barrier() error                          { return errNoMPI }
func (m *MPI) Bcast([]byte, int) error                 { return errNoMPI }
func (m *MPI) BcastF32([]float32, int) error           { return errNoMPI }
func (m *MPI) GatherF32(_, _ []float32, _ int) error   { return errNoMPI }
func (m *MPI) AllgatherF32(_, _ []float32) error       { return errNoMPI }
func (m *MPI) AllgatherBytes([]byte) ([][]byte, error) { return nil, errNoMPI }
func (m *MPI) SendBytes([]byte, int, int) error        { return errNoMPI }
func (m *MPI) RecvBytes(int, int) ([]byte, error)      { return nil, errNoMPI }
func (m *MPI) Abort(int)                               {}
func (m *MPI) Stats() Stats                            { return Stats{} }
func (m *MPI) AllreduceF32([]float32, int, ReduceFunc) error {
	return errNoMPI
}
func (m *MPI) IsendF32([]float32, int, int) (Request, error) { return nil, errNoMPI }
func (m *MPI) IrecvF32([]float32, int, int) (Request, error) { return nil, errNoMPI }
