// Command star runs long-context Llama inference with Star Attention.
//
//	star --prompt doc.txt --query "What is the secret word?"
//	star score --prompt doc.txt --continuation-file answer.txt --json
//	star inspect --model model.gguf
//	star tokenize --model model.gguf --text "Hello"
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/slurm"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// MPI is called from the main goroutine only; keep it on the thread
	// that initialised MPI.
	runtime.LockOSThread()
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "star: internal error: %v (please report it with the command line)\n", r)
			if os.Getenv("STAR_DEBUG") != "" {
				fmt.Fprintf(stderr, "%s", debug.Stack())
			}
			code = 2
		}
	}()
	app := newApp(stdout, stderr)
	if err := app.Run(args); err != nil {
		if err != errSilent && err.Error() != "" {
			fmt.Fprintf(stderr, "star: %v\n", err)
		}
		return exitCode(err)
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	runFlags := concat(modelFlags(), mpiFlags(), promptFlags(), generationFlags(""), []cli.Flag{kvDTypeFlag(false)})
	return &cli.App{
		Name:      "star",
		Usage:     "long-context Llama inference with Star Attention",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     runFlags,
		Action:    func(c *cli.Context) error { return checked(c, func() error { return cmdRun(c, stdout, stderr) }) },
		Commands: []*cli.Command{
			{
				Name:  "score",
				Usage: "teacher-force a continuation after the query; print its log-probabilities and mean NLL",
				Flags: append(append(append(modelFlags(), mpiFlags()...), promptFlags()...), kvDTypeFlag(false),
					&cli.StringFlag{Name: "continuation-file", Usage: "`FILE` holding the continuation to score"},
					&cli.StringFlag{Name: "continuation", Usage: "continuation `TEXT` to score"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdScore(c, stdout, stderr) }) },
			},
			{
				Name:  "jobs",
				Usage: "offline batch processing of long documents",
				Subcommands: []*cli.Command{{
					Name:   "run",
					Usage:  "answer every query of every record in --input, appending results to --output (rerun to resume)",
					Flags:  concat(modelFlags(), mpiFlags(), batchFlags(), generationFlags(" (a record's default)"), []cli.Flag{kvDTypeFlag(false)}),
					Action: func(c *cli.Context) error { return checked(c, func() error { return cmdJobsRun(c, stdout, stderr) }) },
				}},
			},
			{
				Name:  "slurm",
				Usage: "Slurm helpers",
				Subcommands: []*cli.Command{{
					Name:      "script",
					Usage:     "print an sbatch script that runs star (arguments after -- are star's)",
					ArgsUsage: "-- STAR-ARGS...",
					Flags: []cli.Flag{
						&cli.IntFlag{Name: "nodes", Value: 1, Usage: "sbatch --nodes"},
						&cli.IntFlag{Name: "ntasks-per-node", Value: 1, Usage: "sbatch --ntasks-per-node: MPI ranks per node"},
						&cli.IntFlag{Name: "gpus-per-node", Usage: "sbatch --gpus-per-node (0: none)"},
						&cli.IntFlag{Name: "cpus-per-task", Value: 1, Usage: "sbatch --cpus-per-task: star's --threads per rank"},
						&cli.StringFlag{Name: "time", Usage: "sbatch --time (MM, HH:MM:SS, D-HH:MM, ...)"},
						&cli.StringFlag{Name: "partition", Usage: "sbatch --partition"},
						&cli.StringFlag{Name: "account", Usage: "sbatch --account"},
						&cli.StringFlag{Name: "job-name", Value: "star", Usage: "sbatch --job-name"},
						&cli.StringFlag{Name: "output", Value: "%x-%j.out", Usage: "sbatch --output"},
						&cli.StringFlag{Name: "launcher", Value: slurm.LauncherSrun, Usage: "srun (srun --mpi=pmix) or mpirun inside the allocation"},
						&cli.IntFlag{Name: "signal-before", Value: slurm.DefaultSignalBefore, Usage: "seconds before the time limit that star is told to stop (and the job requeues)"},
						&cli.BoolFlag{Name: "no-requeue", Usage: "do not requeue a job stopped at its time limit"},
						&cli.StringFlag{Name: "star", Usage: "star binary as the compute nodes see it (default: this binary's absolute path)"},
						&cli.IntFlag{Name: "context-tokens", Usage: "check the rank count against a context of this many tokens"},
						&cli.IntFlag{Name: "block-size", Usage: "with --context-tokens: the block size star will use"},
					},
					Action: func(c *cli.Context) error { return cmdSlurmScript(c, stdout) },
				}},
			},
			{
				Name:  "bench",
				Usage: "measure phase 1, time to first token and decode speed per context length and attention mode (run under mpirun for several ranks)",
				Flags: append(append(modelFlags(), mpiFlags()...),
					&cli.StringFlag{Name: "context", Value: "4096", Usage: "context lengths, comma-separated (e.g. 4096,32768)"},
					&cli.StringFlag{Name: "attention", Value: "star", Usage: "attention modes, comma-separated: star, ring, global"},
					&cli.IntFlag{Name: "block-size", Usage: "Star block size (default: context / ranks)"},
					&cli.StringFlag{Name: "anchor-size", Usage: "Star anchor sizes, comma-separated: one star row each, e.g. 4096,1024 (default: the block size)"},
					&cli.IntFlag{Name: "decode-tokens", Value: 16, Usage: "decode steps timed"},
					&cli.IntFlag{Name: "query-tokens", Value: 16, Usage: "query length"},
					&cli.IntFlag{Name: "score-tokens", Value: 16, Usage: "continuation tokens teacher-forced after the query for accuracy: mean NLL, and its ratio to the exact mode (global, else ring) of the same context (0: skip)"},
					&cli.StringFlag{Name: "merge", Value: string(rank.MergeGather), Usage: "gather, allgather or allreduce"},
					kvDTypeFlag(true),
					&cli.StringFlag{Name: "decode-context", Usage: "context lengths, comma-separated, whose decode is timed without phase 1: each rank's K/V caches hold random finite values for its share (instead of --context; rows carry no NLL)"},
					&cli.BoolFlag{Name: "json", Usage: "one JSON object per line per configuration"},
				),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdBench(c, stdout, stderr) }) },
			},
			evalCommand(stdout, stderr),
			{
				Name:  "inspect",
				Usage: "show a model's architecture, size, tokenizer and the memory a run needs",
				Flags: append(modelFlags(),
					&cli.IntFlag{Name: "context", Usage: "context tokens to size the KV cache for (default: the model's context length)"},
					&cli.IntFlag{Name: "ranks", Value: 1, Usage: "ranks the context is spread over"},
					&cli.IntFlag{Name: "block-size", Usage: "block size (default: the context divided over the ranks)"},
					&cli.IntFlag{Name: "anchor-size", Value: -1, Usage: "anchor size (default: the block size)"},
					kvDTypeFlag(false),
					&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdInspect(c, stdout) }) },
			},
			{
				Name:  "tokenize",
				Usage: "print the token ids of a text (or, with --decode, the text of ids)",
				Flags: append(modelFlags(),
					&cli.StringFlag{Name: "text", Usage: "`TEXT` to tokenize (with --decode: ids separated by spaces or commas)"},
					&cli.StringFlag{Name: "file", Usage: "read the text from `FILE`"},
					&cli.BoolFlag{Name: "bos", Usage: "prepend BOS"},
					&cli.BoolFlag{Name: "decode", Usage: "turn ids back into text"},
					&cli.BoolFlag{Name: "json", Usage: "print a JSON array of ids (or a JSON string with --decode)"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdTokenize(c, stdout) }) },
			},
		},
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return fmt.Errorf("%v (see star --help)", err)
		},
	}
}

// checked runs a command after checking its numeric flags.
func checked(c *cli.Context, cmd func() error) error {
	if err := checkFlags(c); err != nil {
		return err
	}
	return cmd()
}

// concat joins flag groups.
func concat(groups ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// Exit codes.
const (
	exitError1        = 1 // an error: bad input, a failed run
	exitFailedRecords = 2 // jobs run finished, some records or queries failed
	exitInterrupted   = 3 // jobs run stopped by SIGTERM/SIGINT; rerun to resume
	exitOutputBusy    = 4 // jobs run: another job is writing the output
	exitInputChanged  = 5 // jobs run: the input changed under results already written
)

// exitCode is the process status for err.
func exitCode(err error) int {
	var x *exitError
	var busy *jobs.BusyError
	var changed *jobs.ChangedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &x):
		return x.code
	case errors.Is(err, jobs.ErrInterrupted):
		return exitInterrupted
	case errors.As(err, &busy):
		return exitOutputBusy
	case errors.As(err, &changed):
		return exitInputChanged
	}
	return exitError1
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// errSilent exits non-zero without printing (another rank reported it).
var errSilent = errors.New("")
