package eval

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
)

// Row is one task at one length under one setting (one JSON line of
// `star eval ruler --json`). Accuracy is RULER's score in percent.
// Against the exact mode of the same run: accuracy as a percentage of
// its accuracy (null when it scored 0), and the speedups of phase 1 and
// of the time to first token (exact / this; null for the exact rows).
type Row struct {
	Task          string   `json:"task"`
	Length        int      `json:"length"`
	Attention     string   `json:"attention"`
	Block         int      `json:"block"`  // Star's block size for the group's longest context (0: exact)
	Anchor        int      `json:"anchor"` // Star's anchor size (0: exact)
	Samples       int      `json:"samples"`
	Accuracy      float64  `json:"accuracy"`
	PctOfExact    *float64 `json:"accuracy_pct_of_exact"`
	Phase1        float64  `json:"phase1_s"` // mean per sample
	TTFT          float64  `json:"ttft_s"`   // mean per sample
	SpeedupPhase1 *float64 `json:"speedup_phase1"`
	SpeedupTTFT   *float64 `json:"speedup_ttft"`
	ContextTokens int      `json:"context_tokens"` // mean per sample
	Errors        int      `json:"errors,omitempty"`
	setting       int      // index into the settings
}

// Report is `star eval ruler`'s report.json.
type Report struct {
	Model    string    `json:"model"`
	Ranks    int       `json:"ranks"`
	Seed     uint64    `json:"seed"`
	Chat     bool      `json:"chat"`
	KVDType  string    `json:"kv_dtype"` // the K/V caches' element type
	Settings []string  `json:"settings"`
	Rows     []Row     `json:"rows"`
	Averages []Average `json:"averages"`
	Skipped  []Skip    `json:"skipped,omitempty"`
	Files    []string  `json:"predictions"`
}

// Average is one setting at one length over every task run at it.
type Average struct {
	Length        int      `json:"length"`
	Setting       string   `json:"setting"`
	Attention     string   `json:"attention"`
	Tasks         int      `json:"tasks"`
	Accuracy      float64  `json:"accuracy"` // mean of the tasks' accuracies
	PctOfExact    *float64 `json:"accuracy_pct_of_exact"`
	SpeedupPhase1 *float64 `json:"speedup_phase1"` // total exact phase 1 / total phase 1
	SpeedupTTFT   *float64 `json:"speedup_ttft"`
	setting       int
}

// prediction is what a predictions file says of one sample.
type prediction struct {
	text    string
	err     string
	phase1  float64
	ttft    float64
	context int
}

// readPredictions reads a predictions file (a jobs results file).
func readPredictions(path string) (map[string]prediction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]prediction{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		var o jobs.Output
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		p := prediction{text: o.Text, err: o.Error, context: o.ContextTokens}
		if o.Timings != nil {
			p.phase1, p.ttft = o.Timings.Phase1, o.Timings.TTFT
		}
		out[o.ID] = p
	}
	return out, sc.Err()
}

// group is the samples of one task at one length.
type group struct {
	task    Task
	length  int
	samples []*Sample
}

func groups(samples []*Sample) []group {
	var out []group
	at := map[[2]any]int{}
	for _, s := range samples {
		k := [2]any{s.Task, s.Length}
		i, ok := at[k]
		if !ok {
			t, _ := FindTask(s.Task)
			i = len(out)
			at[k] = i
			out = append(out, group{task: t, length: s.Length})
		}
		out[i].samples = append(out[i].samples, s)
	}
	return out
}

// ScoreRuns reads the predictions of every run and scores them: one row per
// task, length and setting, compared with the exact setting (the first,
// when it is exact).
func ScoreRuns(plan *RulerPlan, runs []SettingRun, ranks int) ([]Row, error) {
	preds := make([]map[string]prediction, len(runs))
	for i, r := range runs {
		var err error
		if preds[i], err = readPredictions(r.Path); err != nil {
			return nil, err
		}
	}
	var rows []Row
	for _, g := range groups(plan.Samples) {
		var exact *Row
		for i, r := range runs {
			row := scoreGroup(g, preds[i], r.Setting, ranks)
			row.setting = i
			if i == 0 && r.Setting.Attention.Exact() {
				exact = &row
			}
			compare(&row, exact)
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// scoreGroup is one setting's row of a group.
func scoreGroup(g group, preds map[string]prediction, s Setting, ranks int) Row {
	row := Row{Task: g.task.Name, Length: g.length, Attention: string(s.Attention), Samples: len(g.samples)}
	var sum float64
	maxCtx, ctxSum := 0, 0
	for _, smp := range g.samples {
		p, ok := preds[smp.ID]
		if !ok || p.err != "" {
			row.Errors++
			continue
		}
		sum += SampleScore(g.task.Metric, p.text, smp.Outputs)
		row.Phase1 += p.phase1
		row.TTFT += p.ttft
		ctxSum += p.context
		maxCtx = max(maxCtx, p.context)
	}
	n := float64(len(g.samples))
	row.Accuracy = round2(100 * sum / n)
	if ok := len(g.samples) - row.Errors; ok > 0 {
		row.Phase1 /= float64(ok)
		row.TTFT /= float64(ok)
		row.ContextTokens = ctxSum / ok
	}
	row.Block, row.Anchor = s.resolved(maxCtx, ranks)
	return row
}

// compare fills in a row's figures relative to the exact row.
func compare(row, exact *Row) {
	if exact == nil {
		return
	}
	if exact.Accuracy > 0 {
		row.PctOfExact = ptr(round2(100 * row.Accuracy / exact.Accuracy))
	}
	if row == exact || row.Attention == exact.Attention {
		return
	}
	if row.Phase1 > 0 {
		row.SpeedupPhase1 = ptr(exact.Phase1 / row.Phase1)
	}
	if row.TTFT > 0 {
		row.SpeedupTTFT = ptr(exact.TTFT / row.TTFT)
	}
}

func ptr(x float64) *float64 { return &x }

// Averages are each setting's mean accuracy over the tasks at each
// length, and its speedups over the total times.
func Averages(rows []Row, settings []Setting) []Average {
	type k struct{ length, setting int }
	acc := map[k]*Average{}
	times := map[k][2]float64{}
	var order []k
	for _, r := range rows {
		key := k{r.Length, r.setting}
		a, ok := acc[key]
		if !ok {
			a = &Average{Length: r.Length, Setting: settings[r.setting].String(), Attention: r.Attention, setting: r.setting}
			acc[key] = a
			order = append(order, key)
		}
		a.Tasks++
		a.Accuracy += r.Accuracy
		t := times[key]
		times[key] = [2]float64{t[0] + r.Phase1, t[1] + r.TTFT}
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].length < order[j].length })
	var out []Average
	for _, key := range order {
		a := acc[key]
		a.Accuracy = round2(a.Accuracy / float64(a.Tasks))
		ex := k{key.length, 0}
		if exactFirst(settings) {
			e := acc[ex]
			if e.Accuracy > 0 {
				a.PctOfExact = ptr(round2(100 * a.Accuracy / e.Accuracy))
			}
			if key.setting != 0 && times[key][0] > 0 && times[key][1] > 0 {
				a.SpeedupPhase1 = ptr(times[ex][0] / times[key][0])
				a.SpeedupTTFT = ptr(times[ex][1] / times[key][1])
			}
		}
		out = append(out, *a)
	}
	return out
}

// PrintTable writes the rows for people, then the averages.
func PrintTable(w io.Writer, rows []Row, avgs []Average) {
	fmt.Fprintf(w, "%-16s %-7s %-9s %-6s %-6s %-7s %-8s %-7s %-9s %-9s %-8s %s\n",
		"task", "length", "attn", "block", "anchor", "samples", "acc%", "%exact", "phase1_s", "ttft_s", "x_phase1", "x_ttft")
	for _, r := range rows {
		fmt.Fprintf(w, "%-16s %-7d %-9s %-6d %-6d %-7d %-8.2f %-7s %-9.3f %-9.3f %-8s %s\n",
			r.Task, r.Length, r.Attention, r.Block, r.Anchor, r.Samples, r.Accuracy, opt(r.PctOfExact, "%.1f"),
			r.Phase1, r.TTFT, opt(r.SpeedupPhase1, "%.2fx"), opt(r.SpeedupTTFT, "%.2fx"))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-7s %-36s %-6s %-8s %-7s %-8s %s\n", "length", "setting (all tasks)", "tasks", "acc%", "%exact", "x_phase1", "x_ttft")
	for _, a := range avgs {
		fmt.Fprintf(w, "%-7d %-36s %-6d %-8.2f %-7s %-8s %s\n", a.Length, a.Setting, a.Tasks, a.Accuracy,
			opt(a.PctOfExact, "%.1f"), opt(a.SpeedupPhase1, "%.2fx"), opt(a.SpeedupTTFT, "%.2fx"))
	}
}

func opt(x *float64, format string) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf(format, *x)
}

// exactFirst reports whether settings start with an exact mode.
func exactFirst(settings []Setting) bool {
	return len(settings) > 0 && settings[0].Attention != rank.Star
}
