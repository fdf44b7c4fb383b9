//go:build unix

package slurm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/star-attn/star/internal/shared"
)

// The rendered scripts' shell logic, without Slurm: fake srun, mpirun,
// scancel and scontrol on PATH, a fake star that waits for SIGTERM and
// exits 3. Checks the arguments star gets, that the warning signal reaches
// star as SIGTERM, and when the job requeues itself.
func TestScriptBehaviour(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		shared.Missing(t, "bash not on PATH")
	}
	if _, err := exec.LookPath("pgrep"); err != nil {
		shared.Missing(t, "pgrep not on PATH (procps; scripts/setup.sh installs it)")
	}
	for _, launcher := range []string{LauncherSrun, LauncherMpirun} {
		for _, c := range []struct {
			name        string
			warn        bool // send the warning signal
			exit        int  // star's exit status without a TERM
			wantRC      int
			wantRequeue bool
		}{
			{"warned", true, 0, ExitStopped, true},
			{"finished", false, 0, 0, false},
			{"failed", false, 1, 1, false},
			{"stopped without warning", false, ExitStopped, ExitStopped, false},
		} {
			t.Run(launcher+"/"+c.name, func(t *testing.T) {
				runFake(t, bash, launcher, c.warn, c.exit, c.wantRC, c.wantRequeue)
			})
		}
	}
}

func runFake(t *testing.T, bash, launcher string, warn bool, exit, wantRC int, wantRequeue bool) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// srun and mpirun run the command as a child, as the real ones do
	// (srun's task pid is kept for the fake scancel).
	write("srun", `while [[ $1 == -* ]]; do shift; done
"$@" & echo $! > "$FAKE/task.pid"; wait $!`)
	write("mpirun", `while [[ $1 == -* ]]; do [[ $1 == -np || $1 == --map-by || $1 == --bind-to ]] && shift; shift; done
"$@" & wait $!`)
	write("scancel", `echo "scancel $*" >> "$FAKE/calls"; kill -TERM "$(cat "$FAKE/task.pid")"`)
	write("scontrol", `echo "scontrol $*" >> "$FAKE/calls"`)
	star := filepath.Join(dir, "my star")
	if err := os.WriteFile(star, []byte(`#!/bin/bash
printf '%s\0' "$@" > "$FAKE/args"
trap 'exit 3' TERM
for i in $(seq 2400); do sleep 0.05; [ -e "$FAKE/finish" ] && exit "$(cat "$FAKE/finish")"; done
exit 99 # two minutes without a signal or a finish: a hang
`), 0o755); err != nil {
		t.Fatal(err)
	}
	o := DefaultScriptOptions()
	o.Launcher, o.StarPath, o.CPUsPerTask = launcher, star, 3
	o.Command = append([]string{"jobs", "run"}, weirdArgs...)
	s, err := Script(o)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "job.sbatch")
	if err := os.WriteFile(script, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE="+dir,
		"SLURM_JOB_ID=42", "SLURM_CPUS_PER_TASK=3", "SLURM_NTASKS=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for star to start (it writes its arguments); the limit only
	// bounds a hang.
	started := false
	for deadline := time.Now().Add(2 * time.Minute); !started && time.Now().Before(deadline); {
		if _, err := os.Stat(filepath.Join(dir, "args")); err == nil {
			started = true
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !started {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("star did not start:\n%s", out.String())
	}
	if warn {
		cmd.Process.Signal(syscall.SIGUSR1)
	} else {
		os.WriteFile(filepath.Join(dir, "finish"), []byte(strconv.Itoa(exit)), 0o644)
	}
	err = cmd.Wait()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if rc != wantRC {
		t.Fatalf("exit status %d, want %d; output:\n%s", rc, wantRC, out.String())
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	got := strings.Split(strings.TrimSuffix(string(args), "\x00"), "\x00")
	want := append(append([]string{"jobs", "run"}, weirdArgs[:30]...), "--threads", "3")
	want = append(want, weirdArgs[30:]...) // weirdArgs[30] is "--": --threads goes before it
	if weirdArgs[30] != "--" {
		t.Fatal("weirdArgs changed: fix the index of \"--\"")
	}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("star got %q\nwant       %q", got, want)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if requeued := strings.Contains(string(calls), "scontrol requeue 42"); requeued != wantRequeue {
		t.Errorf("requeued %v, want %v; calls:\n%s\noutput:\n%s", requeued, wantRequeue, calls, out.String())
	}
}
