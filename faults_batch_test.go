package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/internal/shared"
)

// Batch faults: the output, resume, the input and context files.

const batchStory = "Tom had a big dog named Max. Max liked to run and jump in the garden. One day, Max ran into the woods and Tom could not find him."

// batchRecords writes n records (two queries each) as JSON Lines; edit,
// if given, may change each record before it is written.
func batchRecords(n int, edit ...func(i int, rec map[string]any)) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		rec := map[string]any{"id": fmt.Sprintf("d%d", i), "context": batchStory, "queries": []any{"Tom", "Max"}}
		for _, e := range edit {
			e(i, rec)
		}
		j, _ := json.Marshal(rec)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// jobArgs are the arguments of a small batch job.
func jobArgs(model, in, out string, more ...string) []string {
	return append([]string{"jobs", "run", "--model", model, "--input", in, "--output", out, "--max-tokens", "4", "--threads", "1"}, more...)
}

// results reads a results file: every line must be a result, each
// (id, query_index) once.
func results(t *testing.T, path string) map[string]jobLine {
	t.Helper()
	return readJobOutput(t, path)
}

// wantResults checks path holds exactly the keys want (id#q), each once
// and without an error unless its name is in errs.
func wantResults(t *testing.T, path string, want []string, errs ...string) {
	t.Helper()
	got := results(t, path)
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(got), len(want), keys(got))
	}
	for _, k := range want {
		r, ok := got[k]
		if !ok {
			t.Fatalf("no result %s: %v", k, keys(got))
		}
		bad := false
		for _, e := range errs {
			bad = bad || e == k
		}
		if bad != (r.Error != "") {
			t.Fatalf("result %s: error %q", k, r.Error)
		}
	}
}

func keys(m map[string]jobLine) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// allKeys are the result keys of batchRecords(n).
func allKeys(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("d%d#0", i), fmt.Sprintf("d%d#1", i))
	}
	return out
}

// finishedJob runs a job on n records to its end and returns input and
// output paths.
func finishedJob(t *testing.T, d *faultDir, model string, n int) (string, string) {
	t.Helper()
	in := d.write(t, "in.jsonl", batchRecords(n))
	out := d.path("out.jsonl")
	if code, _, errOut := star(t, jobArgs(model, in, out)...); code != 0 {
		t.Fatalf("first job: exit %d: %s", code, errOut)
	}
	return in, out
}

func TestFaultsBatch(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	foreign := func(name, content, why string) fault {
		return fault{name: "output is " + name, code: 1, want: why,
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.write(t, "in.jsonl", batchRecords(1))
				return jobArgs(model, in, d.keep(t, d.write(t, "out.jsonl", content)))
			}}
	}
	cases := []fault{
		// 1. an output that is not a results file is never written
		foreign("a text file", "Dear diary,\nno results here.\n", "not a star results file"),
		foreign("one line that is not a result", "{\"note\": \"mine\"}\n", "not a star results file"),
		foreign("one partial line that is not a result", "my notes, no newline", "not a star results file"),
		foreign("a records file", batchRecords(2), "not a star results file"),
		foreign("binary", "\x00\x01\x02\xff\xfe\n\x00", "not a star results file"),
		foreign("results then text", "{\"id\":\"d0\",\"query_index\":0,\"text\":\"x\",\"tokens\":[]}\nnot a result\n", "line 2"),
		{name: "output is the input", code: 1, want: "is the input file",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.keep(t, d.write(t, "in.jsonl", batchRecords(1)))
				return jobArgs(model, in, in)
			}},
		{name: "output is a symlink to the input", code: 1, want: "is the input file",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.keep(t, d.write(t, "in.jsonl", batchRecords(1)))
				os.Symlink(in, d.path("out.jsonl"))
				return jobArgs(model, in, d.path("out.jsonl"))
			}},
		{name: "output is a hard link to the input", code: 1, want: "is the input file",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.keep(t, d.write(t, "in.jsonl", batchRecords(1)))
				if err := os.Link(in, d.path("out.jsonl")); err != nil {
					t.Fatal(err)
				}
				return jobArgs(model, in, d.path("out.jsonl"))
			}},
		{name: "output is a directory", code: 1, want: "a directory",
			prep: func(t *testing.T, d *faultDir) []string {
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(1)), d.dir)
			}},
		{name: "output is a FIFO", code: 1, want: "a FIFO",
			prep: func(t *testing.T, d *faultDir) []string {
				syscall.Mkfifo(d.path("out.fifo"), 0o644)
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(1)), d.path("out.fifo"))
			}},
		{name: "output is a device", code: 1, want: "character device",
			prep: func(t *testing.T, d *faultDir) []string {
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(1)), "/dev/null")
			}},
		{name: "output in a missing folder", code: 1, want: "no such file",
			prep: func(t *testing.T, d *faultDir) []string {
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(1)), d.path("no/such/out.jsonl"))
			}},
		{name: "empty output file is used", code: 0,
			prep: func(t *testing.T, d *faultDir) []string {
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(2)), d.write(t, "out.jsonl", ""))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) { wantResults(t, d.path("out.jsonl"), allKeys(2)) }},
		{name: "blank output file is used", code: 0,
			prep: func(t *testing.T, d *faultDir) []string {
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(2)), d.write(t, "out.jsonl", "\n \n"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) { wantResults(t, d.path("out.jsonl"), allKeys(2)) }},
		{name: "results with a partial last line are repaired", code: 0, want: "cut a truncated last line",
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 2)
				b, _ := os.ReadFile(out)
				lines := strings.SplitAfter(string(b), "\n")
				// keep two lines and half of the third
				os.WriteFile(out, []byte(lines[0]+lines[1]+lines[2][:len(lines[2])/2]), 0o644)
				return jobArgs(model, in, out)
			},
			check: func(t *testing.T, d *faultDir, _, _ string) { wantResults(t, d.path("out.jsonl"), allKeys(2)) }},

		// 2. a second writer is refused while the first holds the lock
		{name: "output locked by another process", code: exitOutputBusy, want: fmt.Sprintf("already being written by pid %d", os.Getpid()),
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 1)
				f, err := os.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
					t.Fatal(err)
				}
				d.keep(t, out)
				return jobArgs(model, in, out)
			}},

		// 3. an input edited between runs is reported, not mixed in
		{name: "document edited after its results", code: exitInputChanged, want: "d1#0, d1#1",
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 3)
				os.WriteFile(in, []byte(batchRecords(3, editDoc(1))), 0o644)
				d.keep(t, out)
				return jobArgs(model, in, out)
			}},
		{name: "query edited after its result", code: exitInputChanged, want: "1 result(s)",
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 2)
				os.WriteFile(in, []byte(strings.Replace(batchRecords(2), `["Tom","Max"]`, `["Tom","Max ran"]`, 1)), 0o644)
				d.keep(t, out)
				return jobArgs(model, in, out)
			}},
		{name: "settings changed between runs", code: exitInputChanged, want: "4 result(s)",
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 2)
				d.keep(t, out)
				return jobArgs(model, in, out, "--temperature", "0.7")
			}},
		{name: "context_file edited after its results", code: exitInputChanged, want: "doc#0",
			prep: func(t *testing.T, d *faultDir) []string {
				d.write(t, "doc.txt", batchStory)
				in := d.write(t, "in.jsonl", `{"id":"doc","context_file":"doc.txt","queries":["Tom"]}`+"\n")
				out := d.path("out.jsonl")
				if code, _, e := star(t, jobArgs(model, in, out)...); code != 0 {
					t.Fatal(e)
				}
				d.write(t, "doc.txt", batchStory+" Then it rained.")
				d.keep(t, out)
				return jobArgs(model, in, out)
			}},
		{name: "results without fingerprints count as changed", code: exitInputChanged, want: "2 result(s)",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.write(t, "in.jsonl", batchRecords(1))
				out := d.keep(t, d.write(t, "out.jsonl", "{\"id\":\"d0\",\"query_index\":0,\"text\":\"x\",\"tokens\":[1]}\n{\"id\":\"d0\",\"query_index\":1,\"text\":\"y\",\"tokens\":[2]}\n"))
				return jobArgs(model, in, out)
			}},
		{name: "--redo-changed answers the changed queries again", code: 0, want: "answered again",
			prep: func(t *testing.T, d *faultDir) []string {
				in, out := finishedJob(t, d, model, 3)
				before := results(t, out)
				os.WriteFile(d.path("before.json"), mustMarshal(before), 0o644)
				os.WriteFile(in, []byte(batchRecords(3, editDoc(1))), 0o644)
				return jobArgs(model, in, out, "--redo-changed")
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				wantResults(t, d.path("out.jsonl"), allKeys(3))
				var before map[string]jobLine
				b, _ := os.ReadFile(d.path("before.json"))
				json.Unmarshal(b, &before)
				after := results(t, d.path("out.jsonl"))
				for k, r := range after {
					same := r.Fingerprint == before[k].Fingerprint
					if strings.HasPrefix(k, "d1#") == same {
						t.Fatalf("%s: fingerprint %s before, %s after: only d1's results should be new", k, before[k].Fingerprint, r.Fingerprint)
					}
				}
			}},

		// 4. damaged --kv-dir data are detected and recomputed, never used
		{name: "altered K/V data are recomputed", code: 0, want: "checksum",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.write(t, "in.jsonl", batchRecords(2))
				kv := d.path("kv")
				if code, _, e := star(t, jobArgs(model, in, d.path("ref.jsonl"), "--kv-dir", kv, "--logprobs")...); code != 0 {
					t.Fatal(e)
				}
				files, _ := filepath.Glob(filepath.Join(kv, "*.kv"))
				if len(files) != 1 { // both records hold the same document
					t.Fatalf("%d K/V files, want 1", len(files))
				}
				for _, f := range files { // one float of each: a large finite value
					b, _ := os.ReadFile(f)
					copy(b[len(b)-4*37:], []byte{0x99, 0x76, 0x96, 0x7e})
					os.WriteFile(f, b, 0o644)
				}
				return jobArgs(model, in, d.path("out.jsonl"), "--kv-dir", kv, "--logprobs")
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				ref, got := results(t, d.path("ref.jsonl")), results(t, d.path("out.jsonl"))
				for k, r := range ref {
					if fmt.Sprint(got[k].Tokens) != fmt.Sprint(r.Tokens) {
						t.Fatalf("%s: %v after the K/V files were altered, %v before", k, got[k].Tokens, r.Tokens)
					}
				}
			}},

		// 7. context files that never end, or are not the user's to read
		{name: "context_file is /dev/zero", code: exitFailedRecords, want: "1 of 3 results are errors",
			prep: func(t *testing.T, d *faultDir) []string {
				in := d.write(t, "in.jsonl", batchRecords(1)+`{"id":"z","context_file":"/dev/zero","query":"q"}`+"\n")
				return jobArgs(model, in, d.path("out.jsonl"), "--context-root", "/")
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				wantResults(t, d.path("out.jsonl"), append(allKeys(1), "z#0"), "z#0")
				if e := results(t, d.path("out.jsonl"))["z#0"].Error; !strings.Contains(e, "character device") {
					t.Fatalf("error %q does not say it is a device", e)
				}
			}},
		{name: "context_file is a FIFO", code: exitFailedRecords,
			prep: func(t *testing.T, d *faultDir) []string {
				syscall.Mkfifo(d.path("doc.fifo"), 0o644)
				in := d.write(t, "in.jsonl", `{"id":"f","context_file":"doc.fifo","query":"q"}`+"\n"+batchRecords(1))
				return jobArgs(model, in, d.path("out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				wantResults(t, d.path("out.jsonl"), append(allKeys(1), "f#0"), "f#0")
				if e := results(t, d.path("out.jsonl"))["f#0"].Error; !strings.Contains(e, "FIFO") {
					t.Fatalf("error %q does not name the FIFO", e)
				}
			}},
		{name: "context_file too long for the model", code: exitFailedRecords,
			prep: func(t *testing.T, d *faultDir) []string {
				d.write(t, "big.txt", strings.Repeat("Tom had a big dog. ", 50000))
				in := d.write(t, "in.jsonl", `{"id":"big","context_file":"big.txt","query":"q"}`+"\n")
				return jobArgs(model, in, d.path("out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				if e := results(t, d.path("out.jsonl"))["big#0"].Error; !strings.Contains(e, "context length") {
					t.Fatalf("error %q does not say the file is too long for the context", e)
				}
			}},
		{name: "context_file outside the input's folder", code: exitFailedRecords,
			prep: func(t *testing.T, d *faultDir) []string {
				os.Mkdir(d.path("jobs"), 0o755)
				d.write(t, "secret.txt", "the password is swordfish")
				in := d.write(t, "jobs/in.jsonl", `{"id":"up","context_file":"../secret.txt","query":"q"}`+"\n"+
					`{"id":"abs","context_file":"`+d.path("secret.txt")+`","query":"q"}`+"\n")
				return jobArgs(model, in, d.path("jobs/out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				got := results(t, d.path("jobs/out.jsonl"))
				for _, k := range []string{"up#0", "abs#0"} {
					if !strings.Contains(got[k].Error, "outside") {
						t.Fatalf("%s: error %q, want a refusal of a file outside the input's folder", k, got[k].Error)
					}
				}
			}},
		{name: "context_file symlink escaping the input's folder", code: exitFailedRecords,
			prep: func(t *testing.T, d *faultDir) []string {
				os.Mkdir(d.path("jobs"), 0o755)
				d.write(t, "secret.txt", "the password is swordfish")
				os.Symlink(d.path("secret.txt"), d.path("jobs/doc.txt"))
				in := d.write(t, "jobs/in.jsonl", `{"id":"link","context_file":"doc.txt","query":"q"}`+"\n")
				return jobArgs(model, in, d.path("jobs/out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				if e := results(t, d.path("jobs/out.jsonl"))["link#0"].Error; !strings.Contains(e, "outside") {
					t.Fatalf("error %q, want a refusal of a link leading outside", e)
				}
			}},
		{name: "--context-root admits another folder", code: 0,
			prep: func(t *testing.T, d *faultDir) []string {
				os.Mkdir(d.path("jobs"), 0o755)
				d.write(t, "doc.txt", batchStory)
				in := d.write(t, "jobs/in.jsonl", `{"id":"up","context_file":"../doc.txt","query":"Tom"}`+"\n")
				return jobArgs(model, in, d.path("jobs/out.jsonl"), "--context-root", d.dir)
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				wantResults(t, d.path("jobs/out.jsonl"), []string{"up#0"})
			}},

		// 8. inputs that are not files
		{name: "input is a directory", code: 1, want: "a directory",
			prep: func(t *testing.T, d *faultDir) []string { return jobArgs(model, d.dir, d.path("out.jsonl")) }},
		{name: "input is /dev/zero", code: 1, want: "character device",
			prep: func(t *testing.T, d *faultDir) []string { return jobArgs(model, "/dev/zero", d.path("out.jsonl")) }},
		{name: "input line longer than any record", code: exitFailedRecords, want: "1 of 3 results are errors",
			prep: func(t *testing.T, d *faultDir) []string {
				long := `{"id":"long","context":"` + strings.Repeat("a", 3<<20) + `","query":"q"}` + "\n"
				return jobArgs(model, d.write(t, "in.jsonl", batchRecords(1)+long), d.path("out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				got := results(t, d.path("out.jsonl"))
				if e := got["record-2#0"].Error; !strings.Contains(e, "longer than") {
					t.Fatalf("error %q for the endless line", e)
				}
			}},

		// 9. a MessagePack input cut in the middle of its last record
		{name: "truncated MessagePack input", code: exitFailedRecords, want: "1 of 3 results are errors",
			prep: func(t *testing.T, d *faultDir) []string {
				var b []byte
				for i := 0; i < 2; i++ {
					rec, _ := msgpack.Marshal(map[string]any{"id": fmt.Sprint("m", i), "context": batchStory, "query": "Tom"})
					b = append(b, rec...)
				}
				rec, _ := msgpack.Marshal(map[string]any{"id": "cut", "context": batchStory, "query": "Tom"})
				b = append(b, rec[:len(rec)/2]...)
				return jobArgs(model, d.write(t, "in.msgpack", string(b)), d.path("out.jsonl"))
			},
			check: func(t *testing.T, d *faultDir, _, _ string) {
				got := results(t, d.path("out.jsonl"))
				if e := got["record-3#0"].Error; !strings.Contains(e, "ends in the middle") {
					t.Fatalf("error %q for the cut record: %v", e, keys(got))
				}
			}},
	}
	runFaults(t, cases)
}

// editDoc changes record i's document.
func editDoc(i int) func(int, map[string]any) {
	return func(j int, rec map[string]any) {
		if j == i {
			rec["context"] = "Yes. " + batchStory
		}
	}
}

func mustMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// subStar starts the test binary as star (not in this process), for
// signals, pipes and limits.
func subStar(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "STAR_AS_MAIN=1")
	return cmd
}

// exitOf is a finished command's exit status.
func exitOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if x, ok := err.(*exec.ExitError); ok {
		return x.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// waitOrKill waits for cmd, killing it after limit (a hang, not a speed
// check).
func waitOrKill(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end within %v", cmd.Args, limit)
		return nil
	}
}

// 8. Records from a pipe, stdin by name, or a FIFO are read once: every
// record answered.
func TestJobsInputStreams(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	for _, how := range []string{"-", "/dev/stdin", "fifo"} {
		t.Run(strings.Trim(how, "/"), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.jsonl")
			in := how
			if how == "fifo" {
				in = filepath.Join(dir, "in.fifo")
				if err := syscall.Mkfifo(in, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := subStar(t, jobArgs(model, in, out)...)
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			var feed func()
			if how == "fifo" {
				feed = func() {
					f, err := os.OpenFile(in, os.O_WRONLY, 0)
					if err != nil {
						t.Error(err)
						return
					}
					f.WriteString(batchRecords(3))
					f.Close()
				}
			} else {
				cmd.Stdin = strings.NewReader(batchRecords(3))
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if feed != nil {
				go feed()
			}
			if code := exitOf(t, waitOrKill(t, cmd, 2*time.Minute)); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			wantResults(t, out, allKeys(3))
			if !strings.Contains(errOut.String(), "3 records, 6 results written") {
				t.Fatalf("summary: %s", errOut.String())
			}
		})
	}
}

// 7. SIGTERM ends a job that waits for input (a FIFO nobody writes, a
// pipe left open): exit 3, what was written kept, rerun resumes.
func TestJobsSIGTERMWhileWaitingForInput(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	for _, how := range []string{"fifo", "pipe"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.jsonl")
			in := "-"
			if how == "fifo" {
				in = filepath.Join(dir, "in.fifo")
				syscall.Mkfifo(in, 0o644)
			}
			cmd := subStar(t, jobArgs(model, in, out)...)
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			var w *os.File
			if how == "pipe" {
				r, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stdin, w = r, pw
				defer pw.Close()
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if w != nil {
				w.WriteString(batchRecords(2)) // then nothing more: the writer stays open
				// wait until both records are answered, so that the job
				// then waits on the pipe
				for i := 0; ; i++ {
					if b, _ := os.ReadFile(out); bytes.Count(b, []byte("\n")) == 4 {
						break
					}
					if i > 6000 {
						cmd.Process.Kill()
						t.Fatalf("records not answered: %s", errOut.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
			} else {
				// the job has opened its output (and taken its lock) once it
				// waits for the FIFO's writer
				for i := 0; ; i++ {
					if _, err := os.Stat(filepath.Join(dir, ".out.jsonl.star-lock")); err == nil {
						break
					}
					if i > 6000 {
						cmd.Process.Kill()
						t.Fatalf("job did not start: %s", errOut.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			cmd.Process.Signal(syscall.SIGTERM)
			code := exitOf(t, waitOrKill(t, cmd, time.Minute))
			if code != exitInterrupted || !strings.Contains(errOut.String(), "rerun the same command to resume") {
				t.Fatalf("after SIGTERM: exit %d, want %d with a resume hint:\n%s", code, exitInterrupted, errOut.String())
			}
			if how == "pipe" {
				wantResults(t, out, allKeys(2))
			}
		})
	}
}

// 2. A second job on an output that a running job holds is refused with
// exit 4, says who holds it and writes nothing; the first job finishes
// with every result once. The first job holds the output while it waits
// for its input (a FIFO), so the two surely overlap.
func TestJobsTwoWriters(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	dir := t.TempDir()
	fifo := filepath.Join(dir, "in.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	first := subStar(t, jobArgs(model, fifo, out)...)
	var errFirst bytes.Buffer
	first.Stderr = &errFirst
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	note := filepath.Join(dir, ".out.jsonl.star-lock")
	for i := 0; ; i++ {
		if _, err := os.Stat(note); err == nil {
			break
		}
		if i > 6000 {
			first.Process.Kill()
			t.Fatalf("first job did not take the output: %s", errFirst.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte(batchRecords(5)), 0o644)
	code, _, errOut := star(t, jobArgs(model, in, out)...)
	if code != exitOutputBusy || !strings.Contains(errOut, fmt.Sprintf("already being written by pid %d on ", first.Process.Pid)) {
		first.Process.Kill()
		t.Fatalf("second job: exit %d, want %d naming pid %d:\n%s", code, exitOutputBusy, first.Process.Pid, errOut)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(batchRecords(5))
	f.Close()
	if code := exitOf(t, waitOrKill(t, first, 2*time.Minute)); code != 0 {
		t.Fatalf("first job: exit %d: %s", code, errFirst.String())
	}
	wantResults(t, out, allKeys(5))
	if _, err := os.Stat(note); err == nil {
		t.Fatal("the lock note was left behind")
	}
}

// 5. A full disk (here a file size limit) stops the job with an error; the
// summary counts exactly the complete lines on disk, and a rerun with
// room finishes every result once.
func TestJobsFullDisk(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	if _, err := exec.LookPath("prlimit"); err != nil {
		shared.Missing(t, "prlimit (util-linux; scripts/setup.sh installs it)")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte(batchRecords(10)), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	exe, _ := os.Executable()
	cmd := exec.Command("prlimit", append([]string{"--fsize=2500", exe}, jobArgs(model, in, out)...)...)
	cmd.Env = append(os.Environ(), "STAR_AS_MAIN=1")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	code := exitOf(t, cmd.Run())
	if code != 1 || !strings.Contains(errOut.String(), "write result") {
		t.Fatalf("exit %d, want 1 with a write error:\n%s", code, errOut.String())
	}
	onDisk := len(results(t, out)) // every line complete
	var written int
	if _, err := fmt.Sscanf(errOut.String()[strings.Index(errOut.String(), "records, ")+len("records, "):], "%d results written", &written); err != nil {
		t.Fatalf("no summary: %s", errOut.String())
	}
	if written != onDisk || onDisk == 0 || onDisk >= 20 {
		t.Fatalf("summary says %d results written, the file holds %d complete lines (want some, not all 20)", written, onDisk)
	}
	if code, _, e := star(t, jobArgs(model, in, out)...); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, e)
	}
	wantResults(t, out, allKeys(10))
}

// 3. A streamed input (stdin) cannot be read twice: a changed record is
// caught when it comes, the job stops there (exit 5) naming it, and
// --redo-changed answers it again; results stay exactly once.
func TestJobsChangedRecordOnStream(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	feed := func(records string, more ...string) (int, string) {
		cmd := subStar(t, jobArgs(model, "-", out, more...)...)
		cmd.Stdin = strings.NewReader(records)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return exitOf(t, waitOrKill(t, cmd, 2*time.Minute)), errOut.String()
	}
	if code, e := feed(batchRecords(3)); code != 0 {
		t.Fatalf("first job: exit %d: %s", code, e)
	}
	before, _ := os.ReadFile(out)
	edited := batchRecords(3, editDoc(1))
	code, e := feed(edited)
	if code != exitInputChanged || !strings.Contains(e, "d1#0, d1#1") {
		t.Fatalf("changed record on stdin: exit %d, want %d naming d1:\n%s", code, exitInputChanged, e)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(after, before) {
		t.Fatal("the refused job changed the output")
	}
	if code, e := feed(edited, "--redo-changed"); code != 0 {
		t.Fatalf("--redo-changed on stdin: exit %d: %s", code, e)
	}
	wantResults(t, out, allKeys(3))
	was := map[string]string{} // fingerprints before the redo
	for _, line := range strings.Split(strings.TrimSpace(string(before)), "\n") {
		var o jobLine
		if json.Unmarshal([]byte(line), &o) == nil {
			was[fmt.Sprintf("%s#%d", o.ID, o.Q)] = o.Fingerprint
		}
	}
	for k, r := range results(t, out) {
		if (r.Fingerprint != was[k]) != strings.HasPrefix(k, "d1#") {
			t.Fatalf("%s: fingerprint %s, before %s: only d1's results should be new", k, r.Fingerprint, was[k])
		}
	}
}
