// Command gen writes an sbatch script with slurm.Script, for the test
// cluster (slurm/cluster/test.sh) until `star slurm script` does the same:
//
//	go run ./slurm/cluster/gen --ntasks-per-node 4 --time 2 --star /path/star -- jobs run ...
//
// Flags are named as the ScriptOptions fields they set; star's arguments
// follow "--". The script goes to stdout; an invalid option exits 2.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/star-attn/star/slurm"
)

func main() {
	o := slurm.DefaultScriptOptions()
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "nodes")
	fs.IntVar(&o.NTasksPerNode, "ntasks-per-node", o.NTasksPerNode, "ranks per node")
	fs.IntVar(&o.GPUsPerNode, "gpus-per-node", o.GPUsPerNode, "GPUs per node (0: none asked)")
	fs.IntVar(&o.CPUsPerTask, "cpus-per-task", o.CPUsPerTask, "CPUs per rank (0: no line)")
	fs.StringVar(&o.Time, "time", o.Time, "time limit")
	fs.StringVar(&o.Partition, "partition", o.Partition, "partition")
	fs.StringVar(&o.Account, "account", o.Account, "account")
	fs.StringVar(&o.JobName, "job-name", o.JobName, "job name")
	fs.StringVar(&o.Output, "output", o.Output, "output file pattern")
	fs.StringVar(&o.Launcher, "launcher", o.Launcher, "srun or mpirun")
	fs.IntVar(&o.SignalBefore, "signal-before", o.SignalBefore, "seconds before the time limit that SIGTERM comes")
	fs.BoolVar(&o.Requeue, "requeue", o.Requeue, "requeue a job star stopped early")
	fs.StringVar(&o.StarPath, "star", o.StarPath, "star binary")
	fs.Parse(os.Args[1:])
	o.Command = fs.Args()
	s, err := slurm.Script(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(2)
	}
	fmt.Print(s)
}
