// Package slurm knows Slurm: the environment of a task launched by srun or
// sbatch (Detect), and the sbatch scripts that run star (Script, with
// Validate, ParseTime and CheckRanks to refuse bad requests before they are
// submitted). It knows nothing of models. cluster/ holds a one-node test
// cluster and what was measured on it.
package slurm

import (
	"fmt"
	"os"
	"strconv"
)

// Env is what Slurm tells a task about itself.
type Env struct {
	JobID   string // SLURM_JOB_ID
	ProcID  int    // SLURM_PROCID: global task rank
	NTasks  int    // SLURM_NTASKS
	LocalID int    // SLURM_LOCALID: task index on this node (picks the device)
	Node    string // SLURMD_NODENAME
}

// Detect reads the Slurm environment; ok is false outside a Slurm job.
func Detect() (Env, bool, error) {
	return detect(os.Getenv)
}

func detect(get func(string) string) (Env, bool, error) {
	e := Env{JobID: get("SLURM_JOB_ID"), Node: get("SLURMD_NODENAME")}
	if e.JobID == "" {
		return e, false, nil
	}
	for _, f := range []struct {
		name string
		dst  *int
		def  int
	}{{"SLURM_PROCID", &e.ProcID, 0}, {"SLURM_NTASKS", &e.NTasks, 1}, {"SLURM_LOCALID", &e.LocalID, 0}} {
		v := get(f.name)
		if v == "" {
			*f.dst = f.def
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return e, true, fmt.Errorf("slurm: %s=%q is not a non-negative integer", f.name, v)
		}
		*f.dst = n
	}
	if e.ProcID >= e.NTasks {
		return e, true, fmt.Errorf("slurm: SLURM_PROCID %d is not below SLURM_NTASKS %d", e.ProcID, e.NTasks)
	}
	return e, true, nil
}

// Label names the task in logs, e.g. "job 42 task 3/8 on node1".
func (e Env) Label() string {
	return fmt.Sprintf("job %s task %d/%d on %s", e.JobID, e.ProcID, e.NTasks, e.Node)
}
