package eval

import (
	"bytes"
	"os"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

func tinyEngine(t *testing.T) *jobs.Engine {
	t.Helper()
	m, err := weights.Load(shared.Path(t, "models/stories260K/stories260K.bin"), weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return jobs.NewCPUEngine(m, 2, false)
}

// On the tiny model, Star with one block (the default in one process,
// and a block longer than the context) gives the same predictions, hence
// the same scores, as global attention; small blocks do not (or this
// test could not tell). Resuming answers nothing twice.
func TestStarOneBlockPredictsAsGlobal(t *testing.T) {
	e := tinyEngine(t)
	g := &Generator{Tok: e.Tok, Seed: 2}
	var tasks []Task
	for _, n := range []string{"niah_single_1", "niah_multikey_2", "fwe"} {
		task, _ := FindTask(n)
		tasks = append(tasks, task)
	}
	plan, err := PrepareRuler(RulerInput{Tasks: tasks, Lengths: []int{480}, Samples: 2, Gen: g, SeqLen: e.M.Cfg.SeqLen, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Samples) != 6 {
		t.Fatalf("%d samples (skipped: %v), want 6", len(plan.Samples), plan.Skipped)
	}
	settings, _, err := Settings([]rank.Attention{rank.Global, rank.Star}, []int{0, 4096, 32}, []int{-1, 16})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := RunRuler(e, plan, settings, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	preds := make([]map[string]prediction, len(runs))
	for i, r := range runs {
		if preds[i], err = readPredictions(r.Path); err != nil {
			t.Fatal(err)
		}
		if len(preds[i]) != len(plan.Samples) {
			t.Fatalf("%s: %d predictions for %d samples", r.Setting, len(preds[i]), len(plan.Samples))
		}
	}
	rows, err := ScoreRuns(plan, runs, 1)
	if err != nil {
		t.Fatal(err)
	}
	differ := false
	for i, r := range runs {
		one := r.Setting.Block == 0 || r.Setting.Block == 4096
		same := true
		for id, p := range preds[0] {
			if p.err != "" || preds[i][id].err != "" {
				t.Fatalf("%s: %s failed: %s%s", r.Setting, id, p.err, preds[i][id].err)
			}
			same = same && preds[i][id].text == p.text
		}
		if one && !same {
			t.Fatalf("%s: one block predicts other text than global attention", r.Setting)
		}
		differ = differ || !same
		for j, row := range rows {
			if row.setting == i && one && row.Accuracy != rows[j-i].Accuracy {
				t.Fatalf("%s %s: accuracy %v, global %v", r.Setting, row.Task, row.Accuracy, rows[j-i].Accuracy)
			}
		}
	}
	if !differ {
		t.Fatal("blocks of 32 tokens predicted exactly as global attention on every sample: the comparison proves nothing")
	}
	again, err := RunRuler(e, plan, settings, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if r.Summary.Queries != 0 || r.Summary.Skipped != len(plan.Samples) {
			t.Fatalf("%s resumed: %d answered again, %d skipped", r.Setting, r.Summary.Queries, r.Summary.Skipped)
		}
	}
}

// Perplexity on the tiny model and a short story text: Star's NLL is
// never below exact attention's by more than float noise, and equals it
// with one block; blocks of 16 tokens change it (the measure sees them).
func TestPerplexityStarVsGlobal(t *testing.T) {
	e := tinyEngine(t)
	text, err := os.ReadFile("../examples/stories.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := e.Tok.Encode(string(bytes.TrimSpace(text)), false)
	if err != nil {
		t.Fatal(err)
	}
	wins, err := Windows(ids, e.Tok.BOS(), 128, 32, 6)
	if err != nil {
		t.Fatal(err)
	}
	settings, _, err := Settings([]rank.Attention{rank.Star, rank.Global}, []int{16, 64, 128}, []int{8, 16})
	if err != nil {
		t.Fatal(err)
	}
	var rows []PPLRow
	if err := Perplexity(e, wins, settings, 128, nil, func(r PPLRow) { rows = append(rows, r) }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(settings) || rows[0].Attention != "global" || *rows[0].NLLRatio != 1 {
		t.Fatalf("rows %+v: want global first with ratio 1", rows)
	}
	for _, r := range rows[1:] {
		ratio := *r.NLLRatio
		switch {
		case r.ScoredTokens != 6*32 || r.Windows != 6:
			t.Fatalf("%+v: want 6 windows of 32 scored tokens", r)
		case r.Block == 128 && ratio != 1:
			t.Fatalf("one block: ratio %v, want 1", ratio)
		case ratio < 1-1e-6:
			t.Fatalf("block %d anchor %d: Star's NLL below global's (ratio %v)", r.Block, r.Anchor, ratio)
		case r.Block == 16 && ratio < 1.001:
			t.Fatalf("blocks of 16: ratio %v, want a visible change", ratio)
		}
	}
}
