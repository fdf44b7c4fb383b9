package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/slurm"
)

// world is this process's place in the run: one process, or a rank of an
// MPI job started by mpirun or srun.
type world struct {
	comm  collective.Comm // nil in one process
	mpi   *collective.MPI
	wd    *collective.Watchdog // nil: no watch (one process, --rank-timeout 0)
	rank  int
	local int // ranks on this node
}

// localRank is this rank's index among the ranks of its node (0 in one
// process).
func (w *world) localRank() int {
	if w.mpi == nil {
		return 0
	}
	return w.mpi.LocalRank()
}

// joinWorld initialises MPI when an MPI launcher started this process, and
// starts the watchdog that ends the job when a rank stops answering for
// --rank-timeout.
func joinWorld(c *cli.Context, stderr io.Writer) (*world, error) {
	w := &world{local: 1}
	if !collective.Launched() {
		return w, nil
	}
	timeout := c.Duration("rank-timeout")
	if timeout < 0 {
		return nil, fmt.Errorf("--rank-timeout %v must not be negative (0 turns the watchdog off)", timeout)
	}
	m, err := collective.InitMPI()
	if err != nil {
		return nil, fmt.Errorf("MPI initialisation: %w", err)
	}
	w.mpi, w.comm, w.rank, w.local = m, m, m.Rank(), max(m.LocalSize(), 1)
	if timeout > 0 && m.Size() > 1 {
		host := hostLabel()
		wd, err := collective.NewWatchdog(m, timeout, func(h collective.Hang) {
			fmt.Fprintf(stderr, "star: rank %d on %s: %v; aborting the job (--rank-timeout %v)\n", h.Rank, host, h, timeout)
			m.Abort(1)
		})
		switch {
		case errors.Is(err, collective.ErrNoHeartbeat):
			if w.rank == 0 {
				fmt.Fprintf(stderr, "star: MPI gives %s, not MPI_THREAD_MULTIPLE: the rank watchdog (--rank-timeout) is off\n", m.ThreadLevel())
			}
		case err != nil:
			m.Finalize()
			return nil, fmt.Errorf("rank watchdog: %w", err)
		default:
			w.wd, w.comm = wd, collective.Watch(m, wd)
			wd.SetPhase("start-up (loading the model)")
		}
	}
	return w, nil
}

// hostLabel names this host in messages (and the Slurm task, under Slurm).
func hostLabel() string {
	host, _ := os.Hostname()
	if env, ok, serr := slurm.Detect(); ok && serr == nil {
		host += " (" + env.Label() + ")"
	}
	return host
}

func (w *world) close() {
	if w.wd != nil {
		w.wd.Close()
	}
	if w.mpi != nil {
		w.mpi.Finalize()
	}
}

// finish ends a command the same way on every rank of a distributed run.
// An error only this rank knows of (one that failed alone mid-run) is
// printed with its rank and ends the whole job, since the other ranks
// would otherwise wait for this one forever. Otherwise every rank is
// here: rank 0 prints the error the ranks agreed on, then all ranks agree
// on its exit status (rank 0's), pass a barrier and return it, so that
// mpirun or srun, whichever rank exits first, reports that status and
// never kills a rank that is still ending.
func (w *world) finish(err error, stderr io.Writer) error {
	if w.comm == nil || w.comm.Size() == 1 {
		return err
	}
	var x *exitError // a job's outcome, decided after every rank ended it
	if err != nil && err != errSilent && !rank.Agreed(err) && !errors.As(err, &x) {
		fmt.Fprintf(stderr, "star: rank %d: %v (aborting all ranks)\n", w.rank, err)
		w.comm.Abort(1)
		return errSilent
	}
	code := exitCode(err)
	if w.rank == 0 && err != nil && err.Error() != "" {
		fmt.Fprintf(stderr, "star: %v\n", err)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(code))
	if serr := w.comm.Bcast(b[:], 0); serr != nil {
		fmt.Fprintf(stderr, "star: rank %d: agreeing on the exit status: %v (aborting all ranks)\n", w.rank, serr)
		w.comm.Abort(1)
		return errSilent
	}
	if serr := w.comm.Barrier(); serr != nil {
		fmt.Fprintf(stderr, "star: rank %d: final barrier: %v (aborting all ranks)\n", w.rank, serr)
		w.comm.Abort(1)
		return errSilent
	}
	if code = int(binary.LittleEndian.Uint32(b[:])); code == 0 {
		return nil
	}
	return &exitError{code: code} // already printed by rank 0
}
