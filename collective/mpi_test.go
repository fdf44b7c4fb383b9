//go:build cgo && !nompi

package collective_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/collective/collectivetest"
	"github.com/star-attn/star/internal/shared"
)

// These tests start this test binary under mpirun. The parent side
// (TestMPIConformance, TestMPIErrorPaths, TestMPIAbort) runs in plain
// `go test`; the child side (TestMPIChild) runs in every rank, with
// STAR_MPI_CHILD naming what to do.

const childEnv = "STAR_MPI_CHILD"

// mpirunChild runs `timeout <limit> mpirun -np n <this binary> -test.run
// ^TestMPIChild$ -test.v` with STAR_MPI_CHILD=mode, and returns its
// combined output, exit code and duration.
func mpirunChild(t *testing.T, n int, mode string, limit time.Duration) (string, int, time.Duration) {
	t.Helper()
	if os.Getenv(childEnv) != "" || collective.Launched() {
		t.Skip("inside an MPI job: only the parent starts mpirun")
	}
	if _, err := exec.LookPath("mpirun"); err != nil {
		shared.Missing(t, "mpirun not on PATH: install openmpi-bin (scripts/setup.sh) to run the MPI tests")
	}
	if _, err := exec.LookPath("timeout"); err != nil {
		shared.Missing(t, "timeout (coreutils) not on PATH")
	}
	secs := fmt.Sprint(int(limit.Seconds()))
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	// The ranks' own test timeout fires first, so a hang dumps goroutines.
	childLimit := fmt.Sprintf("%ds", int(limit.Seconds()*3/4))
	cmd := exec.CommandContext(ctx, "timeout", secs, "mpirun", "-np", fmt.Sprint(n),
		os.Args[0], "-test.run", "^TestMPIChild$", "-test.v", "-test.count=1", "-test.timeout", childLimit)
	cmd.Env = append(os.Environ(),
		childEnv+"="+mode,
		"OMPI_ALLOW_RUN_AS_ROOT=1",
		"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
		"OMPI_MCA_rmaps_base_oversubscribe=1",
		"OMPI_MCA_mpi_yield_when_idle=1",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("mpirun -np %d: %v\n%s", n, err, out)
		}
		code = ee.ExitCode()
	}
	return string(out), code, took
}

// requireChildrenPassed fails unless mpirun exited 0 and every rank's
// TestMPIChild passed (rather than, say, skipped).
func requireChildrenPassed(t *testing.T, n int, out string, code int, took time.Duration) {
	t.Helper()
	passed := strings.Count(out, "--- PASS: TestMPIChild")
	if code != 0 || passed != n {
		t.Fatalf("mpirun -np %d: exit %d after %v, %d of %d ranks passed; output:\n%s", n, code, took.Round(time.Millisecond), passed, n, out)
	}
	t.Logf("mpirun -np %d: %d ranks passed in %v", n, n, took.Round(time.Millisecond))
}

// TestMPIConformance runs the conformance table under real mpirun for 1,
// 2, 3, 4 and 8 (oversubscribed) ranks.
func TestMPIConformance(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 8} {
		t.Run(fmt.Sprintf("np=%d", n), func(t *testing.T) {
			out, code, took := mpirunChild(t, n, "conformance", 120*time.Second)
			requireChildrenPassed(t, n, out, code, took)
		})
	}
}

// TestMPIErrorPaths: errors that MPI reports on one rank come back as
// errors there, and the job carries on.
func TestMPIErrorPaths(t *testing.T) {
	out, code, took := mpirunChild(t, 2, "errors", 60*time.Second)
	requireChildrenPassed(t, 2, out, code, took)
}

// TestMPIAbort: Abort on one rank ends every rank of the job, even those
// blocked in a receive that will never match (before the 60 s watchdog,
// which only bounds a hang).
func TestMPIAbort(t *testing.T) {
	const n = 3
	out, code, took := mpirunChild(t, n, "abort", 60*time.Second)
	switch {
	case code == 0:
		t.Fatalf("mpirun exited 0 although rank 1 aborted; output:\n%s", out)
	case code == 124 || code == 137:
		t.Fatalf("mpirun timed out (exit %d): Abort did not end the blocked ranks; output:\n%s", code, out)
	case !strings.Contains(out, "rank 1 aborting"):
		t.Fatalf("rank 1 never reached Abort; output:\n%s", out)
	}
	t.Logf("mpirun -np %d exited %d after %v", n, code, took.Round(time.Millisecond))
}

// TestMPIChild is the per-rank side; it skips unless STAR_MPI_CHILD is set.
func TestMPIChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip(childEnv + " not set: this test runs inside mpirun, started by TestMPIConformance")
	}
	runtime.LockOSThread() // MPI wants Finalize on the thread that initialised it
	defer runtime.UnlockOSThread()
	if !collective.Launched() {
		t.Fatal("Launched() is false under mpirun")
	}
	m, err := collective.InitMPI()
	if err != nil {
		t.Fatal(err)
	}
	fail := func(err error) {
		// Tell, then end the job: the other ranks may be waiting on us.
		fmt.Fprintf(os.Stderr, "rank %d FAILED: %v\n", m.Rank(), err)
		t.Error(err)
		m.Abort(1)
	}
	t.Logf("rank %d/%d, local %d/%d, %s", m.Rank(), m.Size(), m.LocalRank(), m.LocalSize(), m.ThreadLevel())
	if m.LocalSize() < 1 || m.LocalRank() < 0 || m.LocalRank() >= m.LocalSize() {
		fail(fmt.Errorf("local rank %d of %d", m.LocalRank(), m.LocalSize()))
	}
	if _, err := collective.InitMPI(); err == nil {
		fail(errors.New("second InitMPI succeeded"))
	}
	switch mode {
	case "conformance":
		if err := collectivetest.Run(m, collectivetest.Options{MPIErrors: true, Logf: t.Logf}); err != nil {
			fail(err)
		}
	case "errors":
		if err := mpiErrorPaths(m); err != nil {
			fail(err)
		}
	case "abort":
		if err := m.Barrier(); err != nil {
			fail(err)
		}
		if m.Rank() == 1 {
			time.Sleep(300 * time.Millisecond) // let the others block first
			fmt.Fprintln(os.Stderr, "rank 1 aborting")
			m.Abort(3)
			fail(errors.New("Abort returned"))
		}
		_, err := m.RecvBytes(1, 77) // never sent
		fail(fmt.Errorf("RecvBytes returned (%v) instead of the job ending", err))
	default:
		fail(fmt.Errorf("unknown %s=%q", childEnv, mode))
	}
	if err := m.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := m.Barrier(); !errors.Is(err, collective.ErrClosed) {
		t.Errorf("Barrier after Finalize: %v, want ErrClosed", err)
	}
}

// mpiErrorPaths (2 ranks): a Bcast whose buffer on rank 1 is shorter than
// root's fails there with MPI_ERR_TRUNCATE (with more ranks OpenMPI may
// hang a rank downstream of the failed one, so 2 it is); an IrecvF32 that
// gets more floats than it holds fails in Wait with MPI_ERR_TRUNCATE, one
// that gets fewer with our length check; the job stays usable.
func mpiErrorPaths(m *collective.MPI) error {
	if m.Size() != 2 {
		return fmt.Errorf("errors mode needs 2 ranks, have %d", m.Size())
	}
	n := 16
	if m.Rank() == 1 {
		n = 8
	}
	err := m.Bcast(make([]byte, n), 0)
	var me *collective.Error
	switch {
	case m.Rank() == 1 && (!errors.As(err, &me) || me.Op != "MPI_Bcast" || !strings.Contains(err.Error(), "MPI_ERR_TRUNCATE")):
		return fmt.Errorf("short Bcast buffer: got %v, want an MPI_Bcast MPI_ERR_TRUNCATE error", err)
	case m.Rank() == 0 && err != nil:
		return fmt.Errorf("root of the mismatched Bcast: %v", err)
	}
	if err := m.Barrier(); err != nil {
		return fmt.Errorf("barrier after the failed Bcast: %w", err)
	}
	// Rank 0 sends 6 floats with tag 9 and 2 with tag 10; rank 1 makes
	// room for 4 each time.
	sizes := map[int]int{9: 6, 10: 2}
	for _, tag := range []int{9, 10} {
		if m.Rank() == 0 {
			r, err := m.IsendF32(make([]float32, sizes[tag]), 1, tag)
			if err == nil {
				err = r.Wait()
			}
			if err != nil {
				return fmt.Errorf("IsendF32 tag %d: %w", tag, err)
			}
			continue
		}
		r, err := m.IrecvF32(make([]float32, 4), 0, tag)
		if err != nil {
			return fmt.Errorf("IrecvF32 tag %d: %w", tag, err)
		}
		err = r.Wait()
		switch {
		case err == nil:
			return fmt.Errorf("IrecvF32 of %d floats into 4: no error", sizes[tag])
		case tag == 9 && !strings.Contains(err.Error(), "MPI_ERR_TRUNCATE"):
			return fmt.Errorf("IrecvF32 of 6 floats into 4: %v, want MPI_ERR_TRUNCATE", err)
		case tag == 10 && !strings.Contains(err.Error(), "2 floats arrived"):
			return fmt.Errorf("IrecvF32 of 2 floats into 4: %v, want a length error", err)
		}
		if err2 := r.Wait(); err2 != err {
			return fmt.Errorf("second Wait: %v, want the first's %v", err2, err)
		}
	}
	if err := m.Barrier(); err != nil {
		return fmt.Errorf("final barrier: %w", err)
	}
	return nil
}
