package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

// Evaluation faults: bad flags and input files of `eval ppl` and
// `eval ruler` get one clear line and a non-zero exit, before any run.
func TestFaultsEval(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	stories, _ := filepath.Abs("examples/stories.txt")
	ppl := func(more ...string) func(*testing.T, *faultDir) []string {
		return func(*testing.T, *faultDir) []string {
			return append([]string{"eval", "ppl", "--model", model, "--threads", "1"}, more...)
		}
	}
	ruler := func(more ...string) func(*testing.T, *faultDir) []string {
		return func(*testing.T, *faultDir) []string {
			return append([]string{"eval", "ruler", "--model", model, "--threads", "1", "--samples", "1"}, more...)
		}
	}
	data := func(name, lines string) func(*testing.T, *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			p := d.keep(t, d.write(t, name, lines))
			return []string{"eval", "ruler", "--model", model, "--threads", "1", "--data", "niah_single_1=" + p, "--output", d.path("out")}
		}
	}
	cases := []fault{
		{name: "ppl without --file", prep: ppl(), code: 1, want: "eval ppl needs --file"},
		{name: "ppl --file missing", prep: ppl("--file", "/nonexistent/story.txt"), code: 1, want: "no such file"},
		{name: "ppl --context longer than the model's", prep: ppl("--file", stories, "--context", "1000"), code: 1, want: "more than the model's context length 512"},
		{name: "ppl --context and --continuation past the model's", prep: ppl("--file", stories, "--context", "500", "--continuation", "20"), code: 1, want: "more than the model's context length 512"},
		{name: "ppl text shorter than one window", code: 1, want: "one window needs",
			prep: func(t *testing.T, d *faultDir) []string {
				return ppl("--file", d.write(t, "short.txt", "Once upon a time."), "--context", "64")(t, d)
			}},
		{name: "ppl --continuation 0", prep: ppl("--file", stories, "--continuation", "0"), code: 1, want: "--continuation 0 is out of range"},
		{name: "ppl bad --attention", prep: ppl("--file", stories, "--attention", "star,bogus"), code: 1, want: `--attention "bogus"`},
		{name: "ppl two exact modes", prep: ppl("--file", stories, "--attention", "global,ring"), code: 1, want: "one exact mode"},
		{name: "ppl a mode twice", prep: ppl("--file", stories, "--attention", "star,global,star"), code: 1, want: "named twice"},
		{name: "ppl --block-size 0", prep: ppl("--file", stories, "--block-size", "64,0"), code: 1, want: `--block-size: "0" is not a positive number`},
		{name: "ppl anchors larger than every block", prep: ppl("--file", stories, "--block-size", "16", "--anchor-size", "32"), code: 1, want: "every --anchor-size exceeds every --block-size"},
		{name: "ruler without --lengths", prep: ruler(), code: 1, want: "needs --lengths"},
		{name: "ruler --lengths empty", prep: ruler("--lengths", ""), code: 1, want: "--lengths: give at least one value"},
		{name: "ruler --lengths not a number", prep: ruler("--lengths", "4k,lots"), code: 1, want: `--lengths: "lots" is not a positive number`},
		{name: "ruler --lengths longer than the model's", prep: ruler("--lengths", "512,1024"), code: 1, want: "--lengths 1024 is longer than the model's context length 512"},
		{name: "ruler --lengths too short for every task", prep: ruler("--lengths", "100"), code: 1, want: "nothing to run"},
		{name: "ruler unknown task", prep: ruler("--lengths", "512", "--tasks", "niah_single_1,niah_single_9"), code: 1, want: `unknown task "niah_single_9"`},
		{name: "ruler QA without its file", prep: ruler("--lengths", "512", "--tasks", "qa_1"), code: 1, want: "qa_1 needs a SQuAD file: pass --squad FILE"},
		{name: "ruler --squad not SQuAD", code: 1, want: "not a SQuAD JSON file",
			prep: func(t *testing.T, d *faultDir) []string {
				return ruler("--lengths", "512", "--tasks", "qa_1", "--squad", d.write(t, "squad.json", "[1, 2]"))(t, d)
			}},
		{name: "ruler --samples 0", prep: ruler("--lengths", "512", "--samples", "0"), code: 1, want: "--samples 0 is out of range"},
		{name: "ruler bad --attention", prep: ruler("--lengths", "512", "--attention", "ring,global"), code: 1, want: "one exact mode"},
		{name: "ruler data without outputs", prep: data("a.jsonl", `{"input_context": "Text.\n", "input_query": "Q?"}`+"\n"), code: 1, want: `line 1: missing "outputs"`},
		{name: "ruler data without input_query", prep: data("b.jsonl", `{"input_context": "Text.\n", "input_query": "Q?", "outputs": ["x"]}`+"\n"+`{"input_context": "Text.\n", "outputs": ["x"]}`+"\n"), code: 1, want: `line 2: missing "input_query"`},
		{name: "ruler data not JSON", prep: data("c.jsonl", "index,input\n0,text\n"), code: 1, want: "line 1: not a RULER record"},
		{name: "ruler data of no task", code: 1, want: "cannot tell its task",
			prep: func(t *testing.T, d *faultDir) []string {
				return ruler("--data", d.write(t, "mine.jsonl", "{}\n"))(t, d)
			}},
		{name: "ruler --output is a file", code: 1, want: "--output",
			prep: func(t *testing.T, d *faultDir) []string {
				return ruler("--lengths", "512", "--tasks", "fwe", "--output", d.keep(t, d.write(t, "notes.txt", "my notes\n")))(t, d)
			}},
		{name: "ruler --output of another evaluation", code: 1, want: "holds the samples of another evaluation",
			prep: func(t *testing.T, d *faultDir) []string {
				args := ruler("--lengths", "512", "--tasks", "fwe", "--output", d.path("out"))(t, d)
				if code, _, errOut := star(t, append(args, "--seed", "1")...); code != 0 {
					t.Fatalf("first evaluation: %s", errOut)
				}
				d.keep(t, d.path("out/samples.jsonl"))
				d.keep(t, d.path("out/predictions-global.jsonl"))
				return append(args, "--seed", "2")
			}},
		{name: "ruler --lengths too long under mpirun", np: 2, prep: ruler("--lengths", "4096"), code: 1, want: "longer than the model's context length 512",
			check: func(t *testing.T, d *faultDir, stdout, stderr string) {
				if stdout != "" {
					t.Fatalf("stdout %q, want nothing", stdout)
				}
			}},
	}
	runFaults(t, cases)
	if _, err := os.Stat("examples/stories.txt"); err != nil {
		t.Fatal(err)
	}
}
