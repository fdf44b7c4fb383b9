package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/slurm"
)

// cmdSlurmScript prints an sbatch script that runs star.
func cmdSlurmScript(c *cli.Context, stdout io.Writer) error {
	o := slurm.DefaultScriptOptions()
	o.Nodes, o.NTasksPerNode, o.GPUsPerNode, o.CPUsPerTask = c.Int("nodes"), c.Int("ntasks-per-node"), c.Int("gpus-per-node"), c.Int("cpus-per-task")
	o.Time, o.Partition, o.Account, o.JobName, o.Output = c.String("time"), c.String("partition"), c.String("account"), c.String("job-name"), c.String("output")
	o.Launcher, o.SignalBefore, o.Requeue = c.String("launcher"), c.Int("signal-before"), !c.Bool("no-requeue")
	o.StarPath = c.String("star")
	if o.StarPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find this binary's path: pass --star PATH")
		}
		o.StarPath = exe
	}
	o.Command = c.Args().Slice()
	if len(o.Command) == 0 {
		return errors.New("no star command: give it after --, e.g. star slurm script --ntasks-per-node 4 -- jobs run --model M --input in.jsonl --output out.jsonl")
	}
	if n := c.Int("context-tokens"); n > 0 {
		if err := slurm.CheckRanks(o.Ranks(), n, c.Int("block-size")); err != nil {
			return err
		}
	}
	script, err := slurm.Script(o)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, script)
	return err
}
