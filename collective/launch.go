package collective

import (
	"os"
	"strconv"
)

// launcherEnv are environment variables that MPI launchers (OpenMPI's
// mpirun, PMIx, Hydra/PMI, srun with PMI) set in every process they start.
var launcherEnv = []string{
	"OMPI_COMM_WORLD_SIZE",
	"PMIX_RANK",
	"PMI_RANK",
	"PMI_SIZE",
	"MPI_LOCALNRANKS",
}

// Launched reports whether this process was started by an MPI launcher, so
// that a plain run of star never initialises MPI. It only reads the
// environment and never touches MPI.
func Launched() bool {
	for _, k := range launcherEnv {
		if _, ok := os.LookupEnv(k); ok {
			return true
		}
	}
	return false
}

// envLocal returns the node-local rank and size that OpenMPI's launcher
// publishes, if both are present and sane.
func envLocal() (rank, size int, ok bool) {
	r, err1 := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_LOCAL_RANK"))
	s, err2 := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
	if err1 != nil || err2 != nil || s < 1 || r < 0 || r >= s {
		return 0, 0, false
	}
	return r, s, true
}
