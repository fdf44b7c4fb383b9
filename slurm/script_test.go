package slurm

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

var update = flag.Bool("update", false, "rewrite the golden scripts in testdata/ and examples/")

func jobsRun(extra ...string) []string {
	return append([]string{"jobs", "run", "--model", "/models/Llama-3.1-8B-Instruct", "--input", "prompts.jsonl", "--output", "results.jsonl"}, extra...)
}

// goldens are the scripts checked byte for byte: examples/ holds the ones
// meant for people to read, testdata/ more option combinations.
var goldens = []struct {
	file string
	opts func() ScriptOptions
}{
	{"examples/batch-4tasks.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.NTasksPerNode, o.CPUsPerTask, o.Time = 4, 2, "04:00:00"
		o.StarPath = "/opt/star/bin/star"
		o.Command = jobsRun()
		return o
	}},
	{"examples/single-node-mpirun.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.NTasksPerNode, o.CPUsPerTask, o.Time, o.Launcher = 4, 4, "12:00:00", LauncherMpirun
		o.StarPath = "/opt/star/bin/star"
		o.Command = jobsRun("--block-size", "8192")
		return o
	}},
	{"examples/multi-node-gpu.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.Nodes, o.NTasksPerNode, o.GPUsPerNode, o.CPUsPerTask = 2, 4, 4, 16
		o.Time, o.Partition, o.Account, o.JobName = "1-00:00:00", "gpu", "proj42", "star-llama8b"
		o.SignalBefore = 600
		o.StarPath = "/opt/star/bin/star"
		o.Command = jobsRun()
		return o
	}},
	{"testdata/defaults.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.Command = []string{"--prompt", "book.txt", "--max-tokens", "64"}
		return o
	}},
	{"testdata/minimal-zero-values.sbatch", func() ScriptOptions {
		// The zero value plus what Validate requires: no optional lines,
		// srun, 120 s, no requeue, star from PATH.
		return ScriptOptions{Nodes: 1, NTasksPerNode: 2, Command: []string{"jobs", "run"}}
	}},
	{"testdata/mpirun-no-requeue.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.Nodes, o.NTasksPerNode, o.CPUsPerTask = 3, 2, 0
		o.Launcher, o.Requeue, o.SignalBefore = LauncherMpirun, false, 300
		o.Time, o.Partition, o.JobName, o.Output = "2-12", "batch,long", "", ""
		o.Command = jobsRun()
		return o
	}},
	{"testdata/weird-args.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.StarPath = "/home/me/my star/bin/star"
		o.Output = "/scratch/logs/%x.%j.out"
		o.Command = []string{"jobs", "run", "--model", "/models/it's here", "--input", "$HOME/in put.jsonl",
			"--output", "a\nb", "--query", `say "hi" & echo $(id) ; rm -rf ~ * \`, "--", "-not-a-flag", ""}
		return o
	}},
	{"testdata/threads-given.sbatch", func() ScriptOptions {
		o := DefaultScriptOptions()
		o.CPUsPerTask, o.Time = 8, "90"
		o.Command = jobsRun("--threads=6")
		return o
	}},
}

func TestGoldenScripts(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			got, err := Script(g.opts())
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(g.file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(g.file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(g.file)
			if err != nil {
				t.Fatalf("%v (go test ./slurm -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from Script's output (go test ./slurm -update rewrites it):\n%s", g.file, firstDiff(string(want), got))
			}
		})
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b || i >= len(w) || i >= len(g) {
			return "line " + strconv.Itoa(i+1) + ":\n  file:   " + a + "\n  Script: " + b
		}
	}
	return ""
}

// Every golden script is valid bash and keeps sbatch's #SBATCH block
// together: sbatch stops reading #SBATCH lines at the first command.
func TestScriptsParse(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		shared.Missing(t, "bash not on PATH")
	}
	for _, g := range goldens {
		s, err := Script(g.opts())
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bash, "-n")
		cmd.Stdin = strings.NewReader(s)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s", g.file, err, out)
		}
		seenCommand := false
		for _, line := range strings.Split(s, "\n") {
			trim := strings.TrimSpace(line)
			if strings.HasPrefix(line, "#SBATCH") && seenCommand {
				t.Errorf("%s: %q comes after a command; sbatch would ignore it", g.file, line)
			}
			if trim != "" && !strings.HasPrefix(trim, "#") {
				seenCommand = true
			}
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":             "''",
		"plain":        "plain",
		"/a/b-c_d.e":   "/a/b-c_d.e",
		"--x=1,2:%j@h": "--x=1,2:%j@h",
		"a b":          "'a b'",
		"it's":         `'it'\''s'`,
		"$HOME":        "'$HOME'",
		"~":            "'~'",
		"*":            "'*'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// weirdArgs survive shellQuote and bash unchanged.
var weirdArgs = []string{
	"", " ", "a b", "it's", `"double"`, `back\slash`, "$HOME", "${X:-y}", "$(id)", "`id`",
	"a;b", "a&&b", "a|b", "a>b", "<a", "*", "?", "[ab]", "~", "~/x", "#comment", "!", "!!",
	"a\nb", "tab\there", "'", "''", `'\''`, "{a,b}", "-n", "--", "--threads", "é ü 日本", "\x01\x7f",
	"trailing\\", "=", "a=b", "%j",
}

func TestShellQuoteRoundTrip(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		shared.Missing(t, "bash not on PATH")
	}
	var line strings.Builder
	line.WriteString("printf '%s\\0'")
	for _, a := range weirdArgs {
		line.WriteString(" " + shellQuote(a))
	}
	out, err := exec.Command(bash, "-c", line.String()).Output()
	if err != nil {
		t.Fatalf("bash -c %q: %v", line.String(), err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(weirdArgs) {
		t.Fatalf("bash saw %d args, want %d: %q", len(got), len(weirdArgs), got)
	}
	for i := range got {
		if got[i] != weirdArgs[i] {
			t.Errorf("arg %d: bash saw %q, want %q (quoted %s)", i, got[i], weirdArgs[i], shellQuote(weirdArgs[i]))
		}
	}
}

func TestCommandArgs(t *testing.T) {
	cases := []struct {
		cmd  []string
		want string
	}{
		{[]string{"jobs", "run"}, `jobs run --threads "$THREADS"`},
		{[]string{"jobs", "run", "--threads", "4"}, `jobs run --threads 4`},
		{[]string{"jobs", "run", "--threads=4"}, `jobs run --threads=4`},
		{[]string{"tokenize", "--", "--threads"}, `tokenize --threads "$THREADS" -- --threads`},
		{[]string{`"$THREADS"`}, `"$THREADS" --threads "$THREADS"`},
	}
	for _, c := range cases {
		args, at := ScriptOptions{Command: c.cmd}.commandArgs()
		if got := strings.Join(args, " "); got != c.want {
			t.Errorf("%q: got %s, want %s", c.cmd, got, c.want)
		}
		if at >= 0 && args[at] != `"$THREADS"` {
			t.Errorf("%q: threadsAt %d points at %q", c.cmd, at, args[at])
		}
	}
	// A literal "$THREADS" in the command is quoted, not expanded.
	o := ScriptOptions{Nodes: 1, NTasksPerNode: 1, Command: []string{`"$THREADS"`}}
	if l := o.launchLine(); !strings.Contains(l, `'"$THREADS"' \`) {
		t.Errorf("literal argument not quoted:\n%s", l)
	}
}

func TestValidate(t *testing.T) {
	ok := func() ScriptOptions {
		o := DefaultScriptOptions()
		o.Command = []string{"jobs", "run"}
		return o
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		name string
		edit func(*ScriptOptions)
		want string // in the error
	}{
		{"zero nodes", func(o *ScriptOptions) { o.Nodes = 0 }, "--nodes 0"},
		{"negative nodes", func(o *ScriptOptions) { o.Nodes = -2 }, "--nodes -2"},
		{"zero tasks", func(o *ScriptOptions) { o.NTasksPerNode = 0 }, "--ntasks-per-node 0"},
		{"negative gpus", func(o *ScriptOptions) { o.GPUsPerNode = -1 }, "--gpus-per-node"},
		{"negative cpus", func(o *ScriptOptions) { o.CPUsPerTask = -1 }, "--cpus-per-task"},
		{"bad time", func(o *ScriptOptions) { o.Time = "1h" }, `--time "1h"`},
		{"time too short for the signal", func(o *ScriptOptions) { o.Time = "2" }, "would come at once"},
		{"space in partition", func(o *ScriptOptions) { o.Partition = "de bug" }, "whitespace"},
		{"empty partition in list", func(o *ScriptOptions) { o.Partition = "a,,b" }, "empty name"},
		{"hash in account", func(o *ScriptOptions) { o.Account = "a#b" }, "'#'"},
		{"comma in account", func(o *ScriptOptions) { o.Account = "a,b" }, "one account"},
		{"comma in job name", func(o *ScriptOptions) { o.JobName = "a,b" }, "comma-separated"},
		{"quote in job name", func(o *ScriptOptions) { o.JobName = `a"b` }, "quotes"},
		{"newline in job name", func(o *ScriptOptions) { o.JobName = "a\nb" }, "whitespace"},
		{"control char", func(o *ScriptOptions) { o.JobName = "a\x01b" }, "control"},
		{"long job name", func(o *ScriptOptions) { o.JobName = strings.Repeat("x", 1025) }, "at most 1024"},
		{"output dir", func(o *ScriptOptions) { o.Output = "logs/" }, "directory"},
		{"space in output", func(o *ScriptOptions) { o.Output = "my logs/%j.out" }, "whitespace"},
		{"unknown launcher", func(o *ScriptOptions) { o.Launcher = "mpiexec" }, `launcher "mpiexec"`},
		{"negative signal", func(o *ScriptOptions) { o.SignalBefore = -1 }, "signal time -1"},
		{"huge signal", func(o *ScriptOptions) { o.SignalBefore = 70000 }, "0 to 65535"},
		{"no command", func(o *ScriptOptions) { o.Command = nil }, "no star command"},
		{"NUL in arg", func(o *ScriptOptions) { o.Command = []string{"a\x00b"} }, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok()
			c.edit(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, c.want)
			}
			if _, serr := Script(o); serr == nil {
				t.Fatal("Script rendered invalid options")
			}
		})
	}
	// All problems are reported at once.
	o := ok()
	o.Nodes, o.Launcher, o.Command = 0, "x", nil
	if err := o.Validate(); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three errors, got %v", err)
	}
	// Fine: signal well inside the limit, unlimited time, a partition list.
	o = ok()
	o.Time, o.SignalBefore, o.Partition, o.JobName = "3", 60, "a,b", "x.y-z_1"
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
	o.Time = "UNLIMITED"
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseTime(t *testing.T) {
	good := map[string]int{
		"1":           60,
		"90":          90 * 60,
		"5:30":        5*60 + 30,
		"100:00":      100 * 60,
		"1:00:00":     3600,
		"48:00:00":    48 * 3600,
		"1-0":         86400,
		"2-12":        2*86400 + 12*3600,
		"1-2:03":      86400 + 2*3600 + 3*60,
		"1-02:03:04":  86400 + 2*3600 + 3*60 + 4,
		"0-00:00:30":  30,
		"00:01:00":    60,
		"10-23:59:59": 10*86400 + 23*3600 + 59*60 + 59,
	}
	for s, want := range good {
		got, unl, err := ParseTime(s)
		if err != nil || unl || got != want {
			t.Errorf("ParseTime(%q) = %d, %v, %v; want %d", s, got, unl, err, want)
		}
	}
	for _, s := range []string{"UNLIMITED", "unlimited", "Infinite", "0", "0:00", "0-0"} {
		if _, unl, err := ParseTime(s); err != nil || !unl {
			t.Errorf("ParseTime(%q) = unlimited %v, %v; want unlimited", s, unl, err)
		}
	}
	for _, s := range []string{"", "1h", "90s", "-5", "1-", "-", "1:2:3:4", "1-2:3:4:5", "1--2", "a", "1:", ":1",
		"1:60:00", "1-24", "1-2:60", "5:60", "1.5", " 1", "1 ", "+1", "1-1-1", "１", "-1", "1234567890"} {
		if _, _, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q) accepted", s)
		}
	}
}

// layoutRanksWithBlocks counts the ranks that get a block, following
// rank.NewLayout's assignment (nb/P each, one more for r < nb%P) and
// jobs.Settings.Layout's default block size.
func layoutRanksWithBlocks(n, blockSize, ranks int) int {
	b := blockSize
	if b <= 0 {
		b = (n + ranks - 1) / ranks
	}
	nb := (n + b - 1) / b
	with := 0
	for r := 0; r < ranks; r++ {
		cnt := nb / ranks
		if r < nb%ranks {
			cnt++
		}
		if cnt > 0 {
			with++
		}
	}
	return with
}

func TestCheckRanks(t *testing.T) {
	for n := 1; n <= 70; n++ {
		for _, b := range []int{0, 1, 2, 3, 7, 16, 64, 100} {
			if b > 0 && MaxUsefulRanks(n, b) != (n+b-1)/b {
				t.Fatalf("MaxUsefulRanks(%d, %d) = %d", n, b, MaxUsefulRanks(n, b))
			}
			for p := 1; p <= 24; p++ {
				err := CheckRanks(p, n, b)
				all := layoutRanksWithBlocks(n, b, p) == p
				if (err == nil) != all {
					t.Fatalf("CheckRanks(%d ranks, %d tokens, block %d) = %v; every rank has a block: %v", p, n, b, err, all)
				}
				if b > 0 && (err == nil) != (p <= MaxUsefulRanks(n, b)) {
					t.Fatalf("CheckRanks and MaxUsefulRanks disagree at %d, %d, %d", p, n, b)
				}
			}
		}
	}
	if MaxUsefulRanks(0, 16) != 0 || MaxUsefulRanks(100, 0) != 100 {
		t.Error("MaxUsefulRanks edge cases")
	}
	err := CheckRanks(8, 100, 16)
	if err == nil || !strings.Contains(err.Error(), "only 7 blocks") || !strings.Contains(err.Error(), "--block-size 12") {
		t.Errorf("CheckRanks(8, 100, 16) = %v", err)
	}
	err = CheckRanks(6, 10, 0)
	if err == nil || !strings.Contains(err.Error(), "default block size") {
		t.Errorf("CheckRanks(6, 10, 0) = %v", err)
	}
	for _, c := range [][3]int{{0, 10, 1}, {1, 0, 1}} {
		if CheckRanks(c[0], c[1], c[2]) == nil {
			t.Errorf("CheckRanks%v accepted", c)
		}
	}
}

// The golden scripts are snapshots; this checks what they must mean, from
// the options alone: the #SBATCH directives (each once, nothing else), the
// launcher and the exact arguments star gets (as bash parses the launch
// line), the warning signal and the trap set before the step starts, how
// star is told to stop, and when the job requeues itself.
func TestScriptSemantics(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		shared.Missing(t, "bash not on PATH")
	}
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			o := g.opts()
			s, err := Script(o)
			if err != nil {
				t.Fatal(err)
			}
			sig := o.SignalBefore
			if sig == 0 {
				sig = 120
			}
			// directives
			want := map[string]bool{
				"--nodes=" + strconv.Itoa(o.Nodes):                   true,
				"--ntasks-per-node=" + strconv.Itoa(o.NTasksPerNode): true,
				"--signal=B:USR1@" + strconv.Itoa(sig):               true,
			}
			opt := func(cond bool, d string) {
				if cond {
					want[d] = true
				}
			}
			opt(o.CPUsPerTask > 0, "--cpus-per-task="+strconv.Itoa(o.CPUsPerTask))
			opt(o.GPUsPerNode > 0, "--gpus-per-node="+strconv.Itoa(o.GPUsPerNode))
			opt(o.Time != "", "--time="+o.Time)
			opt(o.Partition != "", "--partition="+o.Partition)
			opt(o.Account != "", "--account="+o.Account)
			opt(o.JobName != "", "--job-name="+o.JobName)
			opt(o.Output != "", "--output="+o.Output)
			opt(o.Requeue, "--requeue")
			opt(o.Requeue, "--open-mode=append")
			opt(!o.Requeue, "--no-requeue")
			got := map[string]int{}
			for _, line := range strings.Split(s, "\n") {
				if d, ok := strings.CutPrefix(line, "#SBATCH "); ok {
					got[d]++
				}
			}
			for d := range want {
				if got[d] != 1 {
					t.Errorf("#SBATCH %s appears %d times, want once", d, got[d])
				}
			}
			for d := range got {
				if !want[d] {
					t.Errorf("unexpected #SBATCH %s", d)
				}
			}

			// the launch line, as bash parses it
			lines := strings.Split(s, "\n")
			start, end := -1, -1
			for i, l := range lines {
				if start < 0 && (strings.HasPrefix(l, "srun ") || strings.HasPrefix(l, "mpirun ")) {
					start = i
				}
				if start >= 0 && strings.HasSuffix(l, " &") {
					end = i
					break
				}
			}
			if start < 0 || end < 0 {
				t.Fatalf("no launch line ending in ' &' (the step must run in the background for the trap)")
			}
			launch := strings.TrimSuffix(strings.Join(lines[start:end+1], "\n"), " &")
			out, err := exec.Command(bash, "-c", "THREADS=7; printf '%s\\0' "+launch).Output()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, launch)
			}
			argv := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			star := o.StarPath
			if star == "" {
				star = "star"
			}
			wantArgv := []string{"srun", "--mpi=pmix", star}
			if o.Launcher == LauncherMpirun {
				wantArgv = []string{"mpirun", "-np", "$SLURM_NTASKS", "--map-by", "ppr:" + strconv.Itoa(o.NTasksPerNode) + ":node", "--bind-to", "none", star}
			}
			hasThreads, dash := false, len(o.Command)
			for i, a := range o.Command {
				if a == "--" {
					dash = i
					break
				}
				hasThreads = hasThreads || a == "--threads" || strings.HasPrefix(a, "--threads=")
			}
			if hasThreads {
				wantArgv = append(wantArgv, o.Command...)
			} else { // --threads from Slurm's CPUs, before a "--"
				wantArgv = append(append(append(wantArgv, o.Command[:dash]...), "--threads", "7"), o.Command[dash:]...)
			}
			if o.Launcher == LauncherMpirun {
				wantArgv[2] = "" // "$SLURM_NTASKS" is unset in bash -c
			}
			if strings.Join(argv, "\x00") != strings.Join(wantArgv, "\x00") {
				t.Errorf("launch line gives\n  %q\nwant\n  %q", argv, wantArgv)
			}

			// signal and requeue logic, in the commands (comments mention
			// what the script does not do)
			var code strings.Builder
			for _, l := range lines {
				if !strings.HasPrefix(strings.TrimSpace(l), "#") {
					code.WriteString(l + "\n")
				}
			}
			cs := code.String()
			idx := func(sub string) int { return strings.Index(cs, sub) }
			if i := idx("trap on_warning USR1\n"); i < 0 || i > idx(lines[start]) {
				t.Error("the USR1 trap is not set before the step starts")
			}
			if o.Launcher == LauncherMpirun {
				if idx(`kill -TERM "$p"`) < 0 || idx("pgrep -P \"$step\"") < 0 || idx("scancel") >= 0 {
					t.Error("mpirun: star's ranks on this node must get SIGTERM from the shell (not through scancel)")
				}
				kill := max(1, min(10, sig/4))
				if idx("export OMPI_MCA_odls_base_sigkill_timeout="+strconv.Itoa(kill)+"\n") < 0 {
					t.Errorf("mpirun: want OMPI_MCA_odls_base_sigkill_timeout=%d (a quarter of %d s, 1 to 10)", kill, sig)
				}
				if idx("143") >= 0 {
					t.Error("mpirun: only star's own status 3 counts as stopped (every rank exits with it), not 143")
				}
			} else if idx(`scancel --signal=TERM "$SLURM_JOB_ID"`) < 0 || idx("kill -TERM") >= 0 {
				t.Error("srun: star must be told to stop with scancel --signal=TERM, never by signalling srun")
			}
			if idx("STOPPED=3\n") < 0 || idx(`if [ -n "$warned" ] && [ "$rc" -eq "$STOPPED" ]; then`) < 0 {
				t.Error("the requeue decision must need the warning and star's exit status 3")
			}
			if requeue := idx(`scontrol requeue "$SLURM_JOB_ID"`) >= 0; requeue != o.Requeue {
				t.Errorf("scontrol requeue in the script: %v, want %v", requeue, o.Requeue)
			}
			if !strings.HasSuffix(strings.TrimSpace(cs), "\nexit \"$rc\"") {
				t.Error("the script does not end with the step's exit status")
			}
		})
	}
}
