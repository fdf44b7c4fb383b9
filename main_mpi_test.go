package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/jobs"
)

// The test binary doubles as the star binary: with STAR_AS_MAIN=1 it runs
// main's run() on its arguments instead of the tests, so mpirun can launch
// it as N ranks without a separate build. STAR_TEST_DIE="RANK:STAGE" makes
// that rank exit abruptly at that stage (a killed rank).
func TestMain(m *testing.M) {
	if os.Getenv("STAR_AS_MAIN") == "1" {
		if spec := os.Getenv("STAR_TEST_DIE"); spec != "" {
			var r int
			var stage string
			fmt.Sscanf(strings.Replace(spec, ":", " ", 1), "%d %s", &r, &stage)
			jobs.Hook = func(rank int, s string) {
				if rank == r && s == stage {
					os.Exit(9)
				}
			}
		}
		os.Exit(run(append([]string{"star"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func needMPI(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (install openmpi-bin); skipping MPI tests")
	}
	if testing.Short() {
		t.Skip("MPI tests skipped in -short mode")
	}
}

// mpirun runs the test binary as ranks; spec is either "-np N args..." or
// an MPMD line with ':' separators. It returns exit code, stdout, stderr.
func mpirun(t *testing.T, limit time.Duration, spec ...string) (int, string, string, time.Duration) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{fmt.Sprintf("%d", int(limit.Seconds())), "mpirun", "--oversubscribe", "-x", "STAR_AS_MAIN=1"}
	if v := os.Getenv("STAR_TEST_DIE"); v != "" {
		args = append(args, "-x", "STAR_TEST_DIE="+v)
	}
	for i := 0; i < len(spec); i++ { // insert the binary after each "-np N"
		args = append(args, spec[i])
		if spec[i] == "-np" {
			args = append(args, spec[i+1], exe)
			i++
		}
	}
	cmd := exec.Command("timeout", args...)
	cmd.Env = append(os.Environ(), "STAR_AS_MAIN=1", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
		"OMPI_MCA_rmaps_base_oversubscribe=1", "OMPI_MCA_mpi_yield_when_idle=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	t0 := time.Now()
	err = cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, o.String(), e.String(), time.Since(t0)
}

type runJSON struct {
	ContextTokens int              `json:"context_tokens"`
	QueryTokens   int              `json:"query_tokens"`
	Tokens        []int            `json:"tokens"`
	Text          string           `json:"text"`
	Logprobs      []float64        `json:"logprobs"`
	Ranks         []jobs.RankStats `json:"ranks"`
}

func parseRun(t *testing.T, out string) runJSON {
	t.Helper()
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	return r
}

func sameRun(t *testing.T, what string, a, b runJSON, tol float64) {
	t.Helper()
	if fmt.Sprint(a.Tokens) != fmt.Sprint(b.Tokens) {
		t.Fatalf("%s: tokens differ\n%v\n%v", what, a.Tokens, b.Tokens)
	}
	var worst float64
	for i := range a.Logprobs {
		worst = math.Max(worst, math.Abs(a.Logprobs[i]-b.Logprobs[i]))
	}
	if worst > tol {
		t.Fatalf("%s: logprobs differ by %.3g > %g", what, worst, tol)
	}
	t.Logf("%s: %d tokens equal, max logprob diff %.2g", what, len(a.Tokens), worst)
}

const mpiStory = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball. One day, she saw a cat sitting under a tree. The cat was sad because it was lost. Lily wanted to help the cat find its home.

Lily said to the cat,`

func TestMPIMatchesSingleProcess(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	base := []string{"--model", model, "--prompt", prompt, "--max-tokens", "24", "--json", "--threads", "1"}
	single := func(extra ...string) runJSON {
		code, out, errOut := star(t, append(append([]string{}, base...), extra...)...)
		if code != 0 {
			t.Fatalf("single process: exit %d: %s", code, errOut)
		}
		return parseRun(t, out)
	}
	ref := single("--block-size", "12", "--anchor-size", "6")
	for _, n := range []int{1, 2, 3, 4, 8} {
		t.Run(fmt.Sprintf("np%d", n), func(t *testing.T) {
			args := append([]string{"-np", fmt.Sprint(n)}, append(base, "--block-size", "12", "--anchor-size", "6")...)
			code, out, errOut, el := mpirun(t, 120, args...)
			if code != 0 {
				t.Fatalf("mpirun -np %d: exit %d\n%s", n, code, errOut)
			}
			got := parseRun(t, out)
			sameRun(t, fmt.Sprintf("np %d vs single process (%.1fs)", n, el.Seconds()), ref, got, 1e-4)
			if n > 1 && len(got.Ranks) != n {
				t.Fatalf("%d rank stats, want %d", len(got.Ranks), n)
			}
			blocks := 0
			for _, r := range got.Ranks {
				blocks += r.Blocks
			}
			if n > 1 && blocks != (ref.ContextTokens+11)/12 {
				t.Fatalf("ranks hold %d blocks, want %d", blocks, (ref.ContextTokens+11)/12)
			}
		})
	}
	// One block over the whole context: Star is global attention, and ranks
	// beyond the first hold nothing and change nothing.
	glob := single("--attention", "global")
	for _, n := range []int{2, 4} {
		code, out, errOut, _ := mpirun(t, 120, append([]string{"-np", fmt.Sprint(n)}, append(base, "--block-size", "1000")...)...)
		if code != 0 {
			t.Fatalf("mpirun -np %d one block: exit %d\n%s", n, code, errOut)
		}
		sameRun(t, fmt.Sprintf("np %d one block vs global", n), glob, parseRun(t, out), 1e-4)
	}
}

func TestMPIMergeModesAgree(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	var ref runJSON
	for i, mode := range []string{"gather", "allgather", "allreduce"} {
		code, out, errOut, _ := mpirun(t, 120, "-np", "3", "--model", model, "--prompt", prompt, "--max-tokens", "24", "--json",
			"--threads", "1", "--block-size", "10", "--anchor-size", "4", "--merge", mode)
		if code != 0 {
			t.Fatalf("--merge %s: exit %d\n%s", mode, code, errOut)
		}
		got := parseRun(t, out)
		if i == 0 {
			ref = got
			continue
		}
		sameRun(t, mode+" vs gather", ref, got, 1e-4)
	}
}

// leftovers lists processes still running the test binary as a rank with
// the given marker in their command line.
func leftovers(marker string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) && !bytes.Contains(b, []byte("timeout")) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

func TestMPIRankFailure(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	missing := filepath.Join(t.TempDir(), "no-such-model.bin")
	common := []string{"--prompt", prompt, "--max-tokens", "8", "--threads", "1"}
	t.Run("missing model on one rank", func(t *testing.T) {
		spec := append(append([]string{"-np", "2", "--model", model}, common...), ":", "-np", "1", "--model", missing)
		spec = append(spec, common...)
		code, out, errOut, el := mpirun(t, 60, spec...)
		if code == 0 {
			t.Fatalf("exit 0 with a missing model on rank 2; stdout %q", out)
		}
		if !strings.Contains(errOut, "rank 2") || !strings.Contains(errOut, "no-such-model.bin") {
			t.Fatalf("error does not name rank 2 and the missing file:\n%s", errOut)
		}
		if el > 30*time.Second {
			t.Fatalf("took %v to fail", el)
		}
		if l := leftovers(prompt); len(l) > 0 {
			t.Fatalf("processes left behind: %v", l)
		}
	})
	t.Run("rank killed mid-run", func(t *testing.T) {
		os.Setenv("STAR_TEST_DIE", "2:phase2")
		defer os.Unsetenv("STAR_TEST_DIE")
		code, _, errOut, el := mpirun(t, 60, append([]string{"-np", "4", "--model", model, "--block-size", "10"}, common...)...)
		if code == 0 {
			t.Fatal("exit 0 although rank 2 died")
		}
		if el > 30*time.Second {
			t.Fatalf("took %v to end after a rank died", el)
		}
		t.Logf("exit %d after %.1fs; stderr: %s", code, el.Seconds(), lastLines(errOut, 4))
		time.Sleep(500 * time.Millisecond)
		if l := leftovers(prompt); len(l) > 0 {
			t.Fatalf("processes left behind: %v", l)
		}
	})
	t.Run("model fingerprint mismatch", func(t *testing.T) {
		other := shared.Path(t, "models/gguf/stories260K.gguf")
		spec := append(append([]string{"-np", "1", "--model", model}, common...), ":", "-np", "1", "--model", other, "--context-length", "512")
		spec = append(spec, common...)
		code, _, errOut, _ := mpirun(t, 60, spec...)
		if code == 0 || !strings.Contains(errOut, "rank 1") || !strings.Contains(errOut, "same") {
			t.Fatalf("mismatched models not reported (exit %d):\n%s", code, errOut)
		}
	})
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
