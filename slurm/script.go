package slurm

import (
	"errors"
	"fmt"
	"strings"
)

// Launchers a script can start star's ranks with.
const (
	// LauncherSrun starts the ranks as one Slurm job step, `srun
	// --mpi=pmix`: Slurm's PMIx plugin (mpi_pmix.so, Debian package
	// slurm-wlm-basic-plugins) wires up OpenMPI 4.1's ranks.
	LauncherSrun = "srun"
	// LauncherMpirun starts them with OpenMPI's mpirun, which reads the
	// allocation from Slurm's environment and starts its daemons on the
	// other nodes through srun.
	LauncherMpirun = "mpirun"
)

const (
	// DefaultSignalBefore is how many seconds before the time limit Slurm
	// warns the job when ScriptOptions.SignalBefore is 0.
	DefaultSignalBefore = 120
	// WarningSignal is the signal Slurm sends the batch shell as the
	// warning; the shell then sends star SIGTERM.
	WarningSignal = "USR1"
	// ExitStopped is the exit status of `star jobs run` when SIGTERM made it
	// stop at a record boundary, its output flushed: rerun, it resumes.
	ExitStopped = 3
)

// ScriptOptions describes an sbatch script that runs star. Zero values of
// the string fields leave the #SBATCH line out (Slurm's or the cluster's
// default applies); see DefaultScriptOptions for a starting point.
type ScriptOptions struct {
	Nodes         int // --nodes, at least 1
	NTasksPerNode int // --ntasks-per-node: MPI ranks per node, at least 1
	GPUsPerNode   int // --gpus-per-node; 0 leaves the line out
	CPUsPerTask   int // --cpus-per-task, which becomes star's --threads; 0 leaves the line out (Slurm gives 1)

	Time      string // --time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED
	Partition string // --partition: one name or a comma-separated list
	Account   string // --account
	JobName   string // --job-name
	Output    string // --output: file name pattern (%j job id, %x job name)

	Launcher     string // LauncherSrun ("" too) or LauncherMpirun
	SignalBefore int    // seconds before the time limit that star is told to stop; 0: DefaultSignalBefore
	// Requeue: a job that star stopped early (ExitStopped) requeues itself
	// and resumes (#SBATCH --requeue, --open-mode=append). The zero value
	// is false, unlike the CLI's default; start from DefaultScriptOptions.
	Requeue bool

	StarPath string   // the star binary as the compute nodes see it; "": "star" from PATH
	Command  []string // star's arguments, e.g. jobs run --model M --input I --output O
}

// DefaultScriptOptions are the defaults of `star slurm script`: one node,
// one task of one CPU, srun, the warning 120 s before the limit, requeue.
// Command is left for the caller.
func DefaultScriptOptions() ScriptOptions {
	return ScriptOptions{
		Nodes:         1,
		NTasksPerNode: 1,
		CPUsPerTask:   1,
		JobName:       "star",
		Output:        "%x-%j.out",
		Launcher:      LauncherSrun,
		SignalBefore:  DefaultSignalBefore,
		Requeue:       true,
		StarPath:      "star",
	}
}

// Ranks is the number of MPI ranks (Slurm tasks) the script starts.
func (o ScriptOptions) Ranks() int { return o.Nodes * o.NTasksPerNode }

func (o ScriptOptions) launcher() string {
	if o.Launcher == "" {
		return LauncherSrun
	}
	return o.Launcher
}

func (o ScriptOptions) signalBefore() int {
	if o.SignalBefore == 0 {
		return DefaultSignalBefore
	}
	return o.SignalBefore
}

func (o ScriptOptions) starPath() string {
	if o.StarPath == "" {
		return "star"
	}
	return o.StarPath
}

// Validate reports every problem with the options, one per line, before
// anything reaches sbatch. It does not know the cluster: whether the
// partition exists or the account may use it, sbatch tells.
func (o ScriptOptions) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if o.Nodes < 1 {
		add(fmt.Errorf("--nodes %d: need at least 1", o.Nodes))
	}
	if o.NTasksPerNode < 1 {
		add(fmt.Errorf("--ntasks-per-node %d: need at least 1 (each task is one star rank)", o.NTasksPerNode))
	}
	if o.GPUsPerNode < 0 {
		add(fmt.Errorf("--gpus-per-node %d must not be negative", o.GPUsPerNode))
	}
	if o.CPUsPerTask < 0 {
		add(fmt.Errorf("--cpus-per-task %d must not be negative", o.CPUsPerTask))
	}
	if o.Time != "" {
		secs, unlimited, err := ParseTime(o.Time)
		add(err)
		if err == nil && !unlimited && o.SignalBefore >= 0 && o.signalBefore() >= secs {
			add(fmt.Errorf("the warning signal %d s before the end of a %d s (--time %s) job would come at once; lower the signal time or raise --time",
				o.signalBefore(), secs, o.Time))
		}
	}
	if o.Partition != "" {
		add(checkPartition(o.Partition))
	}
	if o.Account != "" {
		add(checkAccount(o.Account))
	}
	if o.JobName != "" {
		add(checkJobName(o.JobName))
	}
	if o.Output != "" {
		add(checkOutput(o.Output))
	}
	switch o.launcher() {
	case LauncherSrun, LauncherMpirun:
	default:
		add(fmt.Errorf("launcher %q: use %s or %s", o.Launcher, LauncherSrun, LauncherMpirun))
	}
	if o.SignalBefore < 0 || o.SignalBefore > maxSignalTime {
		add(fmt.Errorf("signal time %d s: sbatch takes 0 to %d", o.SignalBefore, maxSignalTime))
	}
	if strings.ContainsRune(o.StarPath, 0) {
		add(errors.New("star path contains a NUL byte"))
	}
	if len(o.Command) == 0 {
		add(errors.New("no star command: give star's arguments after --, e.g. jobs run --model M --input I --output O"))
	}
	for _, a := range o.Command {
		if strings.ContainsRune(a, 0) {
			add(fmt.Errorf("star argument %q contains a NUL byte", a))
		}
	}
	return errors.Join(errs...)
}

// Script renders an sbatch script for o, after Validate. The script:
//
//   - asks for the resources with #SBATCH lines named as sbatch names them;
//   - has Slurm warn the batch shell with WarningSignal SignalBefore
//     seconds before the time limit (--signal=B:USR1@N) and passes a
//     SIGTERM on to star's ranks (srun: to every task; mpirun: to the ranks
//     on the first node, rank 0 among them), so that star stops at a record
//     boundary and exits with ExitStopped;
//   - then, with Requeue, runs `scontrol requeue` so that the job runs
//     again under the same id and star resumes from its output file;
//   - passes star --threads "$SLURM_CPUS_PER_TASK" (1 when unset) unless
//     Command already sets --threads.
//
// The warning is USR1, not TERM, because scancel and the time limit send
// TERM to the batch shell too: a script that requeued after any TERM would
// requeue a job its owner cancelled (seen on Slurm 22.05, where scontrol
// requeue of a job being cancelled succeeds).
func Script(o ScriptOptions) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	s := &scriptWriter{o: o, sig: o.signalBefore(), srun: o.launcher() == LauncherSrun}
	s.directives()
	s.trap()
	s.environment()
	s.launch()
	s.ending()
	return s.b.String(), nil
}

// scriptWriter writes an sbatch script, section by section.
type scriptWriter struct {
	b    strings.Builder
	o    ScriptOptions
	sig  int  // seconds before the time limit that star is told to stop
	srun bool // srun launches the ranks (else mpirun)
}

// w writes one line.
func (s *scriptWriter) w(format string, args ...any) { fmt.Fprintf(&s.b, format+"\n", args...) }

// directives writes the shebang, a summary and the #SBATCH directives.
func (s *scriptWriter) directives() {
	o, sig := s.o, s.sig
	s.w("#!/bin/bash")
	s.w("# star on Slurm, written by `star slurm script`:")
	s.w("# %s.", o.summary())
	s.w("# Submit with: sbatch THIS_FILE")
	s.w("#")
	s.w("# Resources. sbatch reads #SBATCH lines up to the first command.")
	if o.JobName != "" {
		s.w("#SBATCH --job-name=%s", o.JobName)
	}
	s.w("#SBATCH --nodes=%d", o.Nodes)
	s.w("#SBATCH --ntasks-per-node=%d", o.NTasksPerNode)
	if o.CPUsPerTask > 0 {
		s.w("#SBATCH --cpus-per-task=%d", o.CPUsPerTask)
	}
	if o.GPUsPerNode > 0 {
		s.w("#SBATCH --gpus-per-node=%d", o.GPUsPerNode)
	}
	if o.Time != "" {
		s.w("#SBATCH --time=%s", o.Time)
	}
	if o.Partition != "" {
		s.w("#SBATCH --partition=%s", o.Partition)
	}
	if o.Account != "" {
		s.w("#SBATCH --account=%s", o.Account)
	}
	if o.Output != "" {
		s.w("#SBATCH --output=%s", o.Output)
	}
	s.w("#")
	s.w("# Stopping in time: %d s before the time limit (up to 60 s earlier:", sig)
	s.w("# Slurm checks that often) Slurm sends SIG%s to this shell only (B:),", WarningSignal)
	s.w("# which passes a SIGTERM on to star; star finishes the record it is on,")
	s.w("# flushes its output and exits with status %d. (Not B:TERM: scancel", ExitStopped)
	s.w("# sends TERM too, and a cancelled job must not requeue itself.)")
	s.w("#SBATCH --signal=B:%s@%d", WarningSignal, sig)
	if o.Requeue {
		s.w("#")
		s.w("# Resuming: a job that star stopped that way requeues itself and runs")
		s.w("# again under the same job id (after Slurm's requeue delay, 2 min by")
		s.w("# default); star resumes from its output file. The log is appended to,")
		s.w("# not truncated, on every run.")
		s.w("#SBATCH --requeue")
		s.w("#SBATCH --open-mode=append")
	} else {
		s.w("#")
		s.w("# No requeue: a job stopped early ends; submit it again to resume.")
		s.w("#SBATCH --no-requeue")
	}
	s.w("")
}

// trap writes the warning trap that tells star to stop.
func (s *scriptWriter) trap() {
	srun := s.srun
	s.w("set -u")
	s.w("")
	s.w(`if [ -z "${SLURM_JOB_ID:-}" ]; then`)
	s.w(`	echo "$0: not inside a Slurm job; submit this file with sbatch" >&2`)
	s.w("	exit 2")
	s.w("fi")
	s.w("")
	s.w("# The warning may come as soon as the job starts: set the trap first.")
	s.w(`step=""    # pid of the launcher`)
	s.w(`warned=""  # set once the warning has come`)
	s.w(`stopped="" # set once star has been told to stop`)
	if srun {
		s.w("# Not kill -TERM srun: srun takes SIGTERM as \"forcing job termination\"")
		s.w("# and kills the tasks at once. scancel --signal sends the SIGTERM to the")
		s.w("# tasks of the job's steps only, not to this shell.")
		s.w(`stop_star() { scancel --signal=TERM "$SLURM_JOB_ID"; }`)
	} else {
		s.w("# Not kill -TERM mpirun: mpirun takes SIGTERM as an abort, passes it on")
		s.w("# only after OMPI_MCA_odls_base_sigkill_timeout (below) and exits 1")
		s.w("# (OpenMPI forwards USR1, never TERM). The ranks on this node, rank 0")
		s.w("# among them, are mpirun's children; they get it, but not the srun that")
		s.w("# runs mpirun's daemons on other nodes (a SIGTERM kills that step).")
		s.w("# Ranks on other nodes learn of the stop from rank 0.")
		s.w("stop_star() {")
		s.w("	local p")
		s.w(`	for p in $(pgrep -P "$step"); do`)
		s.w(`		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = srun ] || kill -TERM "$p" 2>/dev/null`)
		s.w("	done")
		s.w("}")
	}
	s.w("on_warning() {")
	s.w(`	if [ -z "$warned" ]; then`)
	s.w(`		echo "star: SIG%s at $(date): the time limit is near; stopping star" >&2`, WarningSignal)
	s.w("	fi")
	s.w("	warned=1")
	s.w(`	if [ -n "$step" ] && [ -z "$stopped" ]; then`)
	s.w("		stopped=1")
	s.w("		stop_star")
	s.w("	fi")
	s.w("}")
	s.w("trap on_warning %s", WarningSignal)
	s.w("")
}

// environment writes threads per rank and the exit status star stops with.
func (s *scriptWriter) environment() {
	o, sig, srun := s.o, s.sig, s.srun
	s.w("# Threads per rank: the CPUs Slurm gives each task (--cpus-per-task; 1")
	s.w("# when not set). star takes them as --threads; the variables are for")
	s.w("# libraries that read them.")
	s.w(`THREADS="${SLURM_CPUS_PER_TASK:-1}"`)
	s.w(`export OMP_NUM_THREADS="$THREADS" STAR_THREADS="$THREADS"`)
	if srun && o.CPUsPerTask > 0 {
		s.w("# srun of Slurm 22.05 and later does not inherit --cpus-per-task from")
		s.w("# the allocation; without this each rank would get one CPU.")
		s.w(`export SRUN_CPUS_PER_TASK="$THREADS"`)
	}
	s.w("")
	s.w("# star's exit status after stopping early on SIGTERM (resumable).")
	s.w("STOPPED=%d", ExitStopped)
	if !srun {
		s.w("# star's ranks agree on one exit status and pass a barrier before they")
		s.w("# exit, so the rank that exits first sets mpirun's status. mpirun then")
		s.w("# aborts the others (SIGCONT, this many seconds, SIGTERM, as many")
		s.w("# again, SIGKILL); they are past the barrier by then. OpenMPI's default,")
		s.w("# 1 s, is short for a busy node.")
		s.w("export OMPI_MCA_odls_base_sigkill_timeout=%d", mpirunKillTimeout(sig))
	}
	s.w("")
}

// launch writes the job step, in the background.
func (s *scriptWriter) launch() {
	o, srun := s.o, s.srun
	s.w(`echo "star: job $SLURM_JOB_ID, run $(( ${SLURM_RESTART_COUNT:-0} + 1 )), on ${SLURM_JOB_NODELIST:-?}: ${SLURM_NTASKS:-?} ranks x $THREADS threads, $(date)"`)
	s.w("")
	s.w("# The job step runs in the background: bash runs a trap only between")
	s.w("# commands, and wait (unlike a foreground command) is interrupted by it.")
	if !srun {
		s.w("# One rank per slot as Slurm laid them out; no binding, since each rank")
		s.w("# runs $THREADS threads.")
	}
	s.b.WriteString(o.launchLine())
	s.w("step=$!")
	s.w(`if [ -n "$warned" ]; then on_warning; fi # the warning came before the step`)
	s.w("")
}

// ending writes the wait for the step and the requeue decision.
func (s *scriptWriter) ending() {
	o, srun := s.o, s.srun
	s.w("# wait returns early (status > 128) when the trap runs: wait again until")
	s.w("# the step itself has exited.")
	s.w("while :; do")
	s.w(`	wait "$step"`)
	s.w("	rc=$?")
	s.w(`	if [ "$rc" -gt 128 ] && kill -0 "$step" 2>/dev/null; then continue; fi`)
	s.w("	break")
	s.w("done")
	s.w(`echo "star: job step exited with status $rc, $(date)"`)
	s.w("")
	if srun {
		s.w("# srun exits with the highest exit status of the tasks; every task of")
		s.w("# star exits with the same one.")
	} else {
		s.w("# mpirun exits with the status of the first rank that exited non-zero;")
		s.w("# every rank of star exits with the same one.")
	}
	s.w(`if [ -n "$warned" ] && [ "$rc" -eq "$STOPPED" ]; then`)
	if o.Requeue {
		s.w(`	echo "star: stopped early; requeueing job $SLURM_JOB_ID to resume from the output file" >&2`)
		s.w(`	scontrol requeue "$SLURM_JOB_ID" ||`)
		s.w(`		echo "star: scontrol requeue failed; submit this script again to resume" >&2`)
	} else {
		s.w(`	echo "star: stopped early; submit this script again to resume from the output file" >&2`)
	}
	s.w("fi")
	s.w(`exit "$rc"`)
}

func (o ScriptOptions) summary() string {
	s := fmt.Sprintf("%s x %s = %s", plural(o.Nodes, "node"), plural(o.NTasksPerNode, "task"), plural(o.Ranks(), "rank"))
	if o.CPUsPerTask > 0 {
		s += fmt.Sprintf(", %s per rank", plural(o.CPUsPerTask, "CPU"))
	}
	if o.GPUsPerNode > 0 {
		s += fmt.Sprintf(", %s per node", plural(o.GPUsPerNode, "GPU"))
	}
	return s + ", started with " + o.launcher()
}

// mpirunKillTimeout is the seconds OpenMPI's mpirun waits between SIGCONT,
// SIGTERM and SIGKILL when it aborts the remaining ranks: 10, or a quarter
// of the warning time when that is shorter.
func mpirunKillTimeout(signalBefore int) int {
	return max(1, min(10, signalBefore/4))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// launchLine is the launcher command, ending in " &\n", one option of
// star's per line.
func (o ScriptOptions) launchLine() string {
	var head string
	switch o.launcher() {
	case LauncherSrun:
		head = "srun --mpi=pmix"
	case LauncherMpirun:
		head = fmt.Sprintf(`mpirun -np "$SLURM_NTASKS" --map-by ppr:%d:node --bind-to none`, o.NTasksPerNode)
	}
	lines := []string{head, shellQuote(o.starPath())}
	args, threadsAt := o.commandArgs()
	for i, a := range args {
		q := shellQuote(a)
		if i == threadsAt {
			q = a // "$THREADS", expanded by the shell
		}
		if i > 0 && strings.HasPrefix(a, "-") {
			lines = append(lines, q)
		} else {
			lines[len(lines)-1] += " " + q
		}
	}
	return strings.Join(lines, " \\\n\t") + " &\n"
}

// commandArgs is Command with --threads "$THREADS" added (threadsAt is the
// index of "$THREADS"), before a "--" that ends star's options if there is
// one, unless Command sets --threads itself (threadsAt is -1).
func (o ScriptOptions) commandArgs() (args []string, threadsAt int) {
	at := len(o.Command)
	for i, a := range o.Command {
		if a == "--" {
			at = i
			break
		}
		if a == "--threads" || strings.HasPrefix(a, "--threads=") {
			return o.Command, -1
		}
	}
	args = append([]string{}, o.Command[:at]...)
	args = append(args, "--threads", `"$THREADS"`)
	return append(args, o.Command[at:]...), at + 1
}

// shellQuote quotes s as one word for bash (and any POSIX shell): as it is
// when it holds only characters no shell treats specially, else in single
// quotes, where nothing is special; a single quote inside is closed,
// escaped and reopened (the four characters quote, backslash, quote, quote).
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.ContainsRune("_-+=@%:,./", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
