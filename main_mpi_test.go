package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/rank"
)

// The test binary doubles as the star binary: with STAR_AS_MAIN=1 it runs
// main's run() on its arguments instead of the tests, so mpirun can launch
// it as N ranks without a separate build. Hooks (testHook, rank.Engine.Hook) let a test
// steer such a run:
//
//	STAR_TEST_DIE="RANK:STAGE[:N]"   that rank exits abruptly (like kill -9)
//	                                 the N-th time (default 1st) it reaches STAGE
//	STAR_TEST_HOLD="RANK:STAGE:N:FILE" that rank, the N-th time it reaches
//	                                 STAGE, creates FILE and waits until
//	                                 `star jobs run` has noted a stop signal
//	                                 (stage "signal"): the run is certainly
//	                                 still going when the test's signal comes
func TestMain(m *testing.M) {
	if os.Getenv("STAR_AS_MAIN") == "1" {
		var hooks []func(rank int, stage string)
		if spec := os.Getenv("STAR_TEST_DIE"); spec != "" {
			f := strings.Split(spec, ":")
			r, _ := strconv.Atoi(f[0])
			nth := 1
			if len(f) > 2 {
				nth, _ = strconv.Atoi(f[2])
			}
			seen := 0
			hooks = append(hooks, func(rank int, s string) {
				if rank == r && s == f[1] {
					if seen++; seen == nth {
						syscall.Kill(os.Getpid(), syscall.SIGKILL)
					}
				}
			})
		}
		if spec := os.Getenv("STAR_TEST_HOLD"); spec != "" {
			f := strings.SplitN(spec, ":", 4)
			if len(f) != 4 {
				fmt.Fprintf(os.Stderr, "STAR_TEST_HOLD=%q: want RANK:STAGE:N:FILE\n", spec)
				os.Exit(2)
			}
			r, _ := strconv.Atoi(f[0])
			nth, _ := strconv.Atoi(f[2])
			seen := 0
			signalled := make(chan struct{})
			var once sync.Once
			hooks = append(hooks, func(rank int, s string) {
				switch {
				case s == "signal":
					once.Do(func() { close(signalled) })
				case rank == r && s == f[1]:
					if seen++; seen == nth {
						if err := os.WriteFile(f[3], []byte("held\n"), 0o644); err != nil {
							fmt.Fprintf(os.Stderr, "STAR_TEST_HOLD: %v\n", err)
							os.Exit(2)
						}
						<-signalled
					}
				}
			})
		}
		if spec := os.Getenv("STAR_TEST_STOP"); spec != "" {
			// "RANK:STAGE": stop (SIGSTOP, as kill -STOP does) the first
			// time this rank reaches STAGE: a hung rank.
			f := strings.Split(spec, ":")
			r, _ := strconv.Atoi(f[0])
			hooks = append(hooks, func(rank int, s string) {
				if rank == r && s == f[1] {
					syscall.Kill(os.Getpid(), syscall.SIGSTOP)
				}
			})
		}
		if len(hooks) > 0 {
			testHook = func(rank int, s string) {
				for _, h := range hooks {
					h(rank, s)
				}
			}
		}
		os.Exit(run(append([]string{"star"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	code := m.Run()
	if standinDir != "" {
		os.RemoveAll(standinDir)
	}
	os.Exit(code)
}

func needMPI(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		shared.Missing(t, "mpirun not found (install openmpi-bin; scripts/setup.sh does)")
	}
	if testing.Short() {
		t.Skip("MPI tests skipped in -short mode")
	}
}

// mpirun runs the test binary as ranks under a watchdog: spec is either
// "-np N args..." or an MPMD line with ':' separators. limit only bounds a
// hang (use mpiLimit): a run the watchdog has to stop fails the test. It
// returns the exit code, stdout, stderr and the time taken (for logs:
// tests assert behaviour, not speed).
func mpirun(t *testing.T, limit time.Duration, spec ...string) (int, string, string, time.Duration) {
	t.Helper()
	code, out, errOut, el, hung := mpirunWatched(t, limit, spec...)
	if hung {
		t.Fatalf("mpirun %s: still running after %v, stopped by the watchdog (exit %d): a hang\nstderr: %s", strings.Join(spec, " "), limit, code, lastLines(errOut, 6))
	}
	return code, out, errOut, el
}

// mpirunWatched is mpirun that reports a run the watchdog stopped (hung)
// instead of failing the test.
func mpirunWatched(t *testing.T, limit time.Duration, spec ...string) (code int, stdout, stderr string, el time.Duration, hung bool) {
	t.Helper()
	if limit < time.Second {
		t.Fatalf("mpirun limit %v: want a duration of seconds or more (e.g. mpiLimit)", limit)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--verbose", "-k", "10s", fmt.Sprintf("%ds", int(limit.Seconds())), "mpirun", "--oversubscribe", "-x", "STAR_AS_MAIN=1"}
	for _, v := range []string{"STAR_TEST_DIE", "STAR_TEST_HOLD", "STAR_TEST_STOP", "STAR_CUDA_LIBDIR", "STAR_DEVICE", "STAR_STANDIN_DEVICES"} {
		if os.Getenv(v) != "" {
			args = append(args, "-x", v)
		}
	}
	for i := 0; i < len(spec); i++ { // insert the binary after each "-np N"
		args = append(args, spec[i])
		if spec[i] == "-np" {
			args = append(args, spec[i+1], exe)
			i++
		}
	}
	cmd := exec.Command("timeout", args...)
	cmd.Env = append(append(os.Environ(), mpiEnv...), "LC_ALL=C")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	t0 := time.Now()
	err = cmd.Run()
	el = time.Since(t0)
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	// timeout --verbose says when it signals mpirun (exit codes cannot
	// tell: mpirun passes on a killed rank's 137)
	hung = strings.Contains(e.String(), "timeout: sending signal")
	return code, o.String(), e.String(), el, hung
}

// mpiEnv is the environment of every mpirun the tests start.
var mpiEnv = []string{"STAR_AS_MAIN=1", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
	"OMPI_MCA_rmaps_base_oversubscribe=1", "OMPI_MCA_mpi_yield_when_idle=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none"}

type runJSON struct {
	ContextTokens int              `json:"context_tokens"`
	QueryTokens   int              `json:"query_tokens"`
	Tokens        []int            `json:"tokens"`
	Text          string           `json:"text"`
	Logprobs      []float64        `json:"logprobs"`
	Ranks         []rank.RankStats `json:"ranks"`
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
			code, out, errOut, el := mpirun(t, mpiLimit, args...)
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
		code, out, errOut, _ := mpirun(t, mpiLimit, append([]string{"-np", fmt.Sprint(n)}, append(base, "--block-size", "1000")...)...)
		if code != 0 {
			t.Fatalf("mpirun -np %d one block: exit %d\n%s", n, code, errOut)
		}
		sameRun(t, fmt.Sprintf("np %d one block vs global", n), glob, parseRun(t, out), 1e-4)
	}
	// Ring attention is exact: any rank count gives global attention's answer.
	for _, n := range []int{2, 3, 4} {
		code, out, errOut, _ := mpirun(t, mpiLimit, append([]string{"-np", fmt.Sprint(n)}, append(base, "--attention", "ring")...)...)
		if code != 0 {
			t.Fatalf("mpirun -np %d ring: exit %d\n%s", n, code, errOut)
		}
		sameRun(t, fmt.Sprintf("np %d ring vs global", n), glob, parseRun(t, out), 1e-4)
	}
}

// --kv-dtype bf16 over MPI: 2 ranks give the single process's answer
// with the same K/V dtype (Star with blocks, and ring), and every rank
// keeps rank 0's dtype, also one started with another --kv-dtype: rank
// 1's caches hold its blocks at 2 bytes an element. Not to float32's
// 1e-4: the ranks merge partials in another order than one process, and
// a last-bit difference in a new token's key can round it to the
// neighbouring bfloat16 (see jobs.TestStarOneBlockEqualsGlobal16Bit).
func TestMPIKVDType(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	base := []string{"--model", model, "--prompt", prompt, "--max-tokens", "24", "--json", "--threads", "1"}
	const perToken = 2 * 5 * 32 * 2 // stories260K: K and V, 5 layers of 4 kv heads of 8, bf16
	for _, c := range []struct {
		name   string
		layout []string
	}{{"star", []string{"--block-size", "12", "--anchor-size", "6"}}, {"ring", []string{"--attention", "ring"}}} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append(append([]string{}, base...), c.layout...), "--kv-dtype", "bf16")
			code, out, errOut := star(t, args...)
			if code != 0 {
				t.Fatalf("single process: exit %d: %s", code, errOut)
			}
			ref := parseRun(t, out)
			f32 := append(append(append([]string{}, base...), c.layout...), "--kv-dtype", "f32")
			for _, spec := range [][]string{
				append([]string{"-np", "2"}, args...),
				append(append(append([]string{"-np", "1"}, args...), ":", "-np", "1"), f32...), // rank 1 asks for f32
			} {
				code, out, errOut, _ := mpirun(t, mpiLimit, spec...)
				if code != 0 {
					t.Fatalf("mpirun %v: exit %d\n%s", spec[:2], code, errOut)
				}
				got := parseRun(t, out)
				sameRun(t, "2 ranks vs single process, bf16 K/V", ref, got, 2e-3)
				if len(got.Ranks) != 2 || got.Ranks[1].Tokens == 0 || got.Ranks[1].KVBytes != int64(got.Ranks[1].Tokens*perToken) {
					t.Fatalf("rank stats %+v: want rank 1 to hold its block tokens at %d bytes each (bf16)", got.Ranks, perToken)
				}
			}
		})
	}
}

func TestMPIMergeModesAgree(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	var ref runJSON
	for i, mode := range []string{"gather", "allgather", "allreduce"} {
		code, out, errOut, _ := mpirun(t, mpiLimit, "-np", "3", "--model", model, "--prompt", prompt, "--max-tokens", "24", "--json",
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

// noLeftovers requires that no rank with marker in its command line
// outlives its mpirun: ranks get a moment to exit (polled; the limit only
// bounds a hang).
func noLeftovers(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l := leftovers(marker)
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind a minute after mpirun ended: %v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
		code, out, errOut, _ := mpirun(t, mpiLimit, spec...)
		if code == 0 {
			t.Fatalf("exit 0 with a missing model on rank 2; stdout %q", out)
		}
		if !strings.Contains(errOut, "rank 2") || !strings.Contains(errOut, "no-such-model.bin") {
			t.Fatalf("error does not name rank 2 and the missing file:\n%s", errOut)
		}
		noLeftovers(t, prompt)
	})
	t.Run("rank killed mid-run", func(t *testing.T) {
		os.Setenv("STAR_TEST_DIE", "2:phase2")
		defer os.Unsetenv("STAR_TEST_DIE")
		code, _, errOut, el := mpirun(t, mpiLimit, append([]string{"-np", "4", "--model", model, "--block-size", "10"}, common...)...)
		if code == 0 {
			t.Fatal("exit 0 although rank 2 died")
		}
		t.Logf("exit %d after %.1fs; stderr: %s", code, el.Seconds(), lastLines(errOut, 4))
		noLeftovers(t, prompt)
	})
	t.Run("model fingerprint mismatch", func(t *testing.T) {
		other := shared.Path(t, "models/gguf/stories260K.gguf")
		spec := append(append([]string{"-np", "1", "--model", model}, common...), ":", "-np", "1", "--model", other, "--context-length", "512")
		spec = append(spec, common...)
		code, _, errOut, _ := mpirun(t, mpiLimit, spec...)
		if code == 0 || !strings.Contains(errOut, "rank 1") || !strings.Contains(errOut, "same") {
			t.Fatalf("mismatched models not reported (exit %d):\n%s", code, errOut)
		}
	})
}

// The watchdog of mpirun stops a run that hangs (rank 0 held forever):
// the helper reports it, and no rank is left behind.
func TestMPIWatchdog(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	t.Setenv("STAR_TEST_HOLD", "0:phase1:1:"+filepath.Join(t.TempDir(), "held"))
	code, _, errOut, _, hung := mpirunWatched(t, 3*time.Second, "-np", "2", "--model", model, "--prompt", prompt, "--max-tokens", "4", "--threads", "1")
	if !hung || code == 0 {
		t.Fatalf("a held run: exit %d, watchdog fired %v; want the watchdog to stop it\n%s", code, hung, errOut)
	}
	noLeftovers(t, prompt)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// writeJobInput writes n records of two queries each (plus bad ones when
// bad) and returns the path.
func writeJobInput(t *testing.T, n int, bad bool) string {
	t.Helper()
	var b strings.Builder
	docs := []string{mpiStory, "Tom had a big dog. The dog liked to run and jump. One day, the dog ran into the woods and Tom could not find him. Tom was sad."}
	for i := 0; i < n; i++ {
		rec := map[string]any{"id": fmt.Sprintf("doc-%d", i), "context": docs[i%2], "queries": []any{"Lily said", map[string]any{"query": "The dog", "max_tokens": 6}}}
		j, _ := json.Marshal(rec)
		b.Write(j)
		b.WriteByte('\n')
		if bad && i == 1 {
			b.WriteString("{\"id\": \"broken\", \n")
			b.WriteString(`{"id": "nofile", "context_file": "/nonexistent/doc.txt", "queries": ["a", "b"]}` + "\n")
		}
	}
	return writeFile(t, "in.jsonl", b.String())
}

type jobLine struct {
	ID          string `json:"id"`
	Q           int    `json:"query_index"`
	Tokens      []int  `json:"tokens"`
	Error       string `json:"error"`
	Fingerprint string `json:"fingerprint"`
}

func readJobOutput(t *testing.T, path string) map[string]jobLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]jobLine{}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var o jobLine
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("output line %d is not JSON: %q", i+1, line)
		}
		k := fmt.Sprintf("%s#%d", o.ID, o.Q)
		if _, dup := m[k]; dup {
			t.Fatalf("result %s written twice", k)
		}
		m[k] = o
	}
	return m
}

func TestMPIJobs(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	in := writeJobInput(t, 6, true)
	dir := t.TempDir()
	args := func(out string) []string {
		return []string{"-np", "3", "jobs", "run", "--model", model, "--input", in, "--output", out,
			"--threads", "1", "--max-tokens", "10", "--block-size", "16", "--anchor-size", "8"}
	}
	ref := filepath.Join(dir, "ref.jsonl")
	code, _, errOut, _ := mpirun(t, mpiLimit, args(ref)...)
	if code != 2 {
		t.Fatalf("job with bad records: exit %d, want 2 (finished, some failed)\n%s", code, errOut)
	}
	want := readJobOutput(t, ref)
	if len(want) != 6*2+1+2 {
		t.Fatalf("%d results, want %d (one per query, one per malformed record)", len(want), 6*2+3)
	}
	if !strings.Contains(want["nofile#1"].Error, "context_file") || !strings.Contains(want["record-3#0"].Error, "malformed") || want["doc-0#0"].Error != "" {
		t.Fatalf("wrong errors: %+v %+v %+v", want["nofile#1"], want["record-3#0"], want["doc-0#0"])
	}
	// each answer of a multi-query document equals a separate run
	prompt := writeFile(t, "doc.txt", mpiStory)
	for q, text := range []string{"Lily said", "The dog"} {
		maxTok := []string{"10", "6"}[q]
		code, out, errOut := star(t, "--model", model, "--prompt", prompt, "--query", text, "--max-tokens", maxTok,
			"--block-size", "16", "--anchor-size", "8", "--json")
		if code != 0 {
			t.Fatalf("single run: %s", errOut)
		}
		single := parseRun(t, out)
		if got := want[fmt.Sprintf("doc-0#%d", q)].Tokens; fmt.Sprint(got) != fmt.Sprint(single.Tokens) {
			t.Fatalf("query %d in the 3-rank job: %v; separate single-process run: %v", q, got, single.Tokens)
		}
	}
	for _, c := range []struct{ name, die string }{{"rank 0 killed", "0:phase2:5"}, {"rank 2 killed", "2:phase2:7"}} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.jsonl")
			os.Setenv("STAR_TEST_DIE", c.die)
			code, _, _, _ := mpirun(t, mpiLimit, args(out)...)
			os.Unsetenv("STAR_TEST_DIE")
			if code == 0 {
				t.Fatal("killed job: exit 0")
			}
			partial := readJobOutput(t, out)
			if len(partial) == 0 || len(partial) >= len(want) {
				t.Fatalf("%d results before the kill, want some but not all %d", len(partial), len(want))
			}
			code, _, errOut, _ := mpirun(t, mpiLimit, args(out)...)
			if code != 2 {
				t.Fatalf("resumed job: exit %d\n%s", code, errOut)
			}
			got := readJobOutput(t, out)
			if len(got) != len(want) {
				t.Fatalf("%d results after resume, want %d", len(got), len(want))
			}
			for k, w := range want {
				if fmt.Sprint(got[k].Tokens) != fmt.Sprint(w.Tokens) || got[k].Error != w.Error {
					t.Fatalf("%s after resume: %+v, uninterrupted: %+v", k, got[k], w)
				}
			}
			t.Logf("%d results before the kill, %d after resuming", len(partial), len(got))
		})
	}
}

// SIGTERM (as Slurm sends before the time limit) stops a job after the
// query in flight; rerunning completes it with every result exactly once.
// Rank 0 is held at its 6th query (STAR_TEST_HOLD) until the signal has
// been noted, so the job is certainly mid-way when it comes: in one process
// it stops after exactly 6 results and exits 3 with a resume hint. Under
// mpirun, mpirun itself chooses the exit code (non-zero) and may end the
// ranks, so there every result line must be complete and at most 6.
func TestJobsSIGTERM(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	in := writeJobInput(t, 400, false)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const held = 6 // rank 0 waits for the signal in its 6th query
	for _, np := range []int{0, 2} {
		t.Run(fmt.Sprintf("np%d", np), func(t *testing.T) {
			dir := t.TempDir()
			out, ready := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "held")
			job := []string{"jobs", "run", "--model", model, "--input", in, "--output", out, "--threads", "1", "--max-tokens", "16"}
			hold := fmt.Sprintf("STAR_TEST_HOLD=0:phase2:%d:%s", held, ready)
			args := append([]string{exe}, job...)
			if np > 0 {
				args = append([]string{"mpirun", "--oversubscribe", "-x", "STAR_AS_MAIN=1", "-x", "STAR_TEST_HOLD", "-np", fmt.Sprint(np)}, args...)
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(append(os.Environ(), mpiEnv...), hold)
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// wait until rank 0 is held (the limit only bounds a hang)
			hang := time.After(mpiLimit)
		wait:
			for {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("job ended (%v) before rank 0 reached query %d: %s", err, held, errOut.String())
				case <-hang:
					cmd.Process.Kill()
					t.Fatalf("rank 0 did not reach query %d within %v: %s", held, mpiLimit, errOut.String())
				case <-time.After(20 * time.Millisecond):
					continue wait
				}
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err = <-done:
			case <-time.After(mpiLimit):
				cmd.Process.Kill()
				t.Fatalf("job did not stop within %v of SIGTERM (a hang)", mpiLimit)
			}
			code := 0
			if x, ok := err.(*exec.ExitError); ok {
				code = x.ExitCode()
			}
			if code == 0 || (np == 0 && (code != 3 || !strings.Contains(errOut.String(), "rerun the same command to resume"))) {
				t.Fatalf("after SIGTERM: exit %d (want 3 with a resume hint in one process, non-zero under mpirun):\n%s", code, errOut.String())
			}
			partial := len(readJobOutput(t, out)) // every line complete
			if (np == 0 && partial != held) || partial > held {
				t.Fatalf("%d results after SIGTERM during query %d, want %d (the query in flight finishes, no other starts)", partial, held, held)
			}
			var e2 string
			if np > 0 {
				code, _, e2, _ = mpirun(t, mpiLimit, append([]string{"-np", fmt.Sprint(np)}, job...)...)
			} else {
				code, _, e2 = star(t, job...)
			}
			if code != 0 {
				t.Fatalf("resume: exit %d\n%s", code, e2)
			}
			if got := len(readJobOutput(t, out)); got != 800 {
				t.Fatalf("%d results after resume, want 800", got)
			}
			t.Logf("stopped after %d results, resumed to 800", partial)
		})
	}
}

// star bench on 2 ranks: one row per mode, exact modes first; ring equals
// global, and star's NLL equals a single process's star NLL (same layout).
func TestMPIBench(t *testing.T) {
	needMPI(t)
	args := []string{"bench", "--load-format", "dummy", "--model-config", "configs/tiny.json", "--dtype", "f32",
		"--context", "192", "--attention", "star,ring,global", "--block-size", "32", "--anchor-size", "16",
		"--decode-tokens", "4", "--json"}
	code, out, errOut, _ := mpirun(t, mpiLimit, append([]string{"-np", "2"}, args...)...)
	if code != 0 {
		t.Fatalf("mpirun bench: exit %d: %s", code, errOut)
	}
	type row struct {
		Attention string   `json:"attention"`
		Ranks     int      `json:"ranks"`
		NLL       float64  `json:"nll"`
		Ratio     *float64 `json:"nll_ratio"`
		Diff      *float64 `json:"logprob_max_diff"`
	}
	parse := func(out string) []row {
		var rows []row
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r row
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("not JSON: %q", l)
			}
			rows = append(rows, r)
		}
		return rows
	}
	rows := parse(out)
	if len(rows) != 3 || rows[0].Attention != "global" || rows[1].Attention != "ring" || rows[2].Attention != "star" {
		t.Fatalf("want global, ring, star rows:\n%s", out)
	}
	for _, r := range rows {
		if r.Ranks != 2 {
			t.Fatalf("%s row says %d ranks, want 2", r.Attention, r.Ranks)
		}
	}
	if rows[1].Ratio == nil || math.Abs(*rows[1].Ratio-1) > 1e-5 || *rows[1].Diff > 1e-4 {
		t.Fatalf("ring on 2 ranks is not global: %s", out)
	}
	c1, out1, errOut1 := star(t, args...)
	if c1 != 0 {
		t.Fatalf("single-process bench: %s", errOut1)
	}
	single := parse(out1)
	if d := math.Abs(single[2].NLL - rows[2].NLL); d > 1e-4 {
		t.Fatalf("star NLL on 2 ranks %.6f, in one process %.6f (diff %.2g > 1e-4)", rows[2].NLL, single[2].NLL, d)
	}
	t.Logf("ring/global ratio %.6f (max logprob diff %.2g); star NLL %.6f on 2 ranks, %.6f in one", *rows[1].Ratio, *rows[1].Diff, rows[2].NLL, single[2].NLL)

	// random K/V on 2 ranks, two K/V dtypes: a row per dtype and mode, each
	// decoding, and star's rank 0 reading its 3 blocks, the query and half
	// the generated tokens (blocks of 32, 16 query tokens, 4 decode steps;
	// K and V of 2 layers of 2 kv heads of 16, 2 bytes each)
	code, out, errOut, _ = mpirun(t, mpiLimit, "-np", "2", "bench", "--load-format", "dummy", "--model-config", "configs/tiny.json",
		"--decode-context", "192", "--attention", "star,global", "--block-size", "32", "--decode-tokens", "4", "--kv-dtype", "f16,bf16", "--json")
	if code != 0 {
		t.Fatalf("mpirun bench --decode-context: exit %d: %s", code, errOut)
	}
	type kvRow struct {
		Attention string  `json:"attention"`
		KVDType   string  `json:"kv_dtype"`
		Decode    float64 `json:"decode_tok_s"`
		KVBytes   int64   `json:"kv_bytes_per_token_step"`
		Random    bool    `json:"random_kv"`
	}
	var kvRows []kvRow
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r kvRow
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		kvRows = append(kvRows, r)
	}
	want := []string{"global f16", "star f16", "global bf16", "star bf16"}
	if len(kvRows) != len(want) {
		t.Fatalf("%d rows, want %v:\n%s", len(kvRows), want, out)
	}
	const perToken = 2 * 2 * 32 * 2
	for i, r := range kvRows {
		if got := r.Attention + " " + r.KVDType; got != want[i] || !r.Random || !(r.Decode > 0) {
			t.Fatalf("row %d: %+v, want %s with random K/V, decoding", i, r, want[i])
		}
		if r.Attention == "star" && r.KVBytes != (96+16+2)*perToken {
			t.Fatalf("star row: %d K/V bytes a step, want %d", r.KVBytes, (96+16+2)*perToken)
		}
	}
}
