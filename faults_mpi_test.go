package main

import (
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

// Faults of distributed runs: a rank that stops answering.
func TestFaultsMPI(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	// A rank stopped (SIGSTOP) in phase 2: the others' watchdogs notice
	// within --rank-timeout, say where they waited, and the job ends; no
	// process is left behind.
	stopped := func(t *testing.T, d *faultDir, _, errOut string) {
		if !strings.Contains(errOut, "GatherF32") && !strings.Contains(errOut, "Bcast") {
			t.Fatalf("no rank says which call it waited in:\n%s", errOut)
		}
		if l := leftovers(d.dir); len(l) > 0 {
			t.Fatalf("processes left behind: %v", l)
		}
	}
	cases := []fault{
		{name: "rank stopped in phase 2 of a run", np: 3, code: 1, want: "aborting the job (--rank-timeout 3s)",
			prep: func(t *testing.T, d *faultDir) []string {
				t.Setenv("STAR_TEST_STOP", "2:phase2")
				prompt := d.write(t, "p.txt", mpiStory)
				return []string{"--model", model, "--prompt", prompt, "--block-size", "16", "--max-tokens", "8", "--threads", "1", "--rank-timeout", "3s"}
			},
			check: stopped},
		{name: "rank stopped in phase 2 of a batch job", np: 3, code: 1, want: "during phase 2",
			prep: func(t *testing.T, d *faultDir) []string {
				t.Setenv("STAR_TEST_STOP", "1:phase2")
				in := d.write(t, "in.jsonl", batchRecords(3))
				return jobArgs(model, in, d.path("out.jsonl"), "--block-size", "16", "--rank-timeout", "3s")
			},
			check: func(t *testing.T, d *faultDir, out, errOut string) {
				stopped(t, d, out, errOut)
				results(t, d.path("out.jsonl")) // whatever was written is whole lines
			}},
	}
	runFaults(t, cases)
}
