package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/star-attn/star/jobs"
)

// RulerInput is what `star eval ruler` generates or reads on rank 0.
type RulerInput struct {
	Tasks   []Task
	Lengths []int
	Samples int // per task and length
	Gen     *Generator
	Data    []DataFile // RULER data files prepared elsewhere
	SeqLen  int        // the model's context length
	Dir     string     // the output folder ("": a temporary one)
	Log     io.Writer  // notes (tasks that do not fit a length); nil: none
}

// Skip is a task and length that could not be generated, and why.
type Skip struct {
	Task   string `json:"task"`
	Length int    `json:"length"`
	Why    string `json:"why"`
}

// RulerPlan is the evaluation's samples, written where the batch jobs
// read them.
type RulerPlan struct {
	Samples     []*Sample
	Skipped     []Skip
	Dir         string
	SamplesPath string
	Temp        bool // Dir is temporary: removed by Close
}

// Close removes a temporary output folder.
func (p *RulerPlan) Close() {
	if p != nil && p.Temp {
		os.RemoveAll(p.Dir)
	}
}

// PredictionsPath is the results file of setting s.
func (p *RulerPlan) PredictionsPath(s Setting) string {
	return filepath.Join(p.Dir, "predictions-"+s.slug()+".jsonl")
}

// PrepareRuler makes the samples (every task at every length, then the
// data files' samples) and writes them to DIR/samples.jsonl. A task that
// cannot fit a length is skipped with a note; nothing to run is an error.
func PrepareRuler(in RulerInput) (*RulerPlan, error) {
	for _, L := range in.Lengths {
		if L > in.SeqLen {
			return nil, fmt.Errorf("--lengths %d is longer than the model's context length %d (pass --context-length if the model supports more)", L, in.SeqLen)
		}
	}
	p := &RulerPlan{}
	for _, t := range in.Tasks {
		for _, L := range in.Lengths {
			ss, skip, err := generateGroup(in.Gen, t, L, in.Samples)
			if err != nil {
				return nil, err
			}
			if skip != nil {
				p.Skipped = append(p.Skipped, *skip)
				say(in.Log, "star eval: skipped: %s\n", skip.Why)
			} else {
				say(in.Log, "star eval: %s at %d tokens: %d samples of %s tokens\n", t.Name, L, len(ss), span(ss))
			}
			p.Samples = append(p.Samples, ss...)
		}
	}
	if err := p.readData(in); err != nil {
		return nil, err
	}
	if len(p.Samples) == 0 {
		return nil, fmt.Errorf("nothing to run: no task fits the lengths asked for (%d skipped; the shortest sample of each is in the notes above)", len(p.Skipped))
	}
	if err := p.write(in.Dir); err != nil {
		return nil, err
	}
	return p, nil
}

// generateGroup makes the samples of one task at one length; a task that
// does not fit the length at all comes back as a skip.
func generateGroup(g *Generator, t Task, L, n int) ([]*Sample, *Skip, error) {
	var out []*Sample
	for i := 0; i < n; i++ {
		s, err := g.Generate(t, L, i)
		if errors.Is(err, ErrTooShort) || errors.Is(err, ErrTooLong) {
			return nil, &Skip{Task: t.Name, Length: L, Why: err.Error()}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	return out, nil, nil
}

// span is the range of the samples' lengths.
func span(ss []*Sample) string {
	lo, hi := ss[0].Tokens, ss[0].Tokens
	for _, s := range ss {
		lo, hi = min(lo, s.Tokens), max(hi, s.Tokens)
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// readData reads the data files (one per task).
func (p *RulerPlan) readData(in RulerInput) error {
	seen := map[string]bool{}
	for _, d := range in.Data {
		if seen[d.Task.Name] {
			return fmt.Errorf("--data: two files for %s: give one per task", d.Task.Name)
		}
		seen[d.Task.Name] = true
		ss, err := d.Read(in.Gen.Measure)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if s.Tokens-s.MaxTokens > in.SeqLen {
				return fmt.Errorf("--data %s: sample %s is %d tokens, longer than the model's context length %d", d.Path, s.ID, s.Tokens-s.MaxTokens, in.SeqLen)
			}
		}
		p.Samples = append(p.Samples, ss...)
	}
	return nil
}

// write puts the samples in dir/samples.jsonl (dir "": a temporary
// folder). A samples file already there must be the same: results beside
// it were made from it, and a rerun resumes them; other samples (another
// seed, task list, length, model or chat format) need another folder.
func (p *RulerPlan) write(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "star-eval-")
		if err != nil {
			return err
		}
		dir, p.Temp = d, true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	p.Dir, p.SamplesPath = dir, filepath.Join(dir, "samples.jsonl")
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, s := range p.Samples {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	old, err := os.ReadFile(p.SamplesPath)
	switch {
	case err == nil && bytes.Equal(old, b.Bytes()):
		return nil // a rerun: the batch jobs resume
	case err == nil:
		return fmt.Errorf("--output %s holds the samples of another evaluation (seed, tasks, lengths, samples, data, model or --chat differ): give a new --output folder, or remove %s", dir, p.SamplesPath)
	case !os.IsNotExist(err):
		return fmt.Errorf("--output: %w", err)
	}
	tmp := p.SamplesPath + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	return os.Rename(tmp, p.SamplesPath)
}

// Measure is a sample's length in tokens (context, query and the tokens
// to generate) as the run encodes it.
func (g *Generator) Measure(s *Sample) (int, error) {
	q := Query{}
	if len(s.Queries) > 0 {
		q = s.Queries[0]
	}
	return g.measure(parts{context: s.Context, query: q.Query, prefix: q.AnswerPrefix}, s.MaxTokens)
}

// RunOptions say how the batch jobs of an evaluation report and stop.
type RunOptions struct {
	Chat        bool
	RedoChanged bool      // predictions made from other samples or another model are made again
	Progress    io.Writer // rank 0: progress and a line per setting
	Terminal    bool
	Interval    time.Duration
	Stop        *jobs.Stop
}

// SettingRun is one setting's batch job.
type SettingRun struct {
	Setting Setting
	Path    string
	Summary *jobs.BatchSummary
}

// RunRuler answers every sample under every setting, exact first, each
// setting a batch job into its own predictions file (resumable, each
// answer exactly once). Every rank calls it with the same settings; plan
// is rank 0's (nil elsewhere). The runs come back on rank 0.
func RunRuler(e *jobs.Engine, plan *RulerPlan, settings []Setting, o RunOptions) ([]SettingRun, error) {
	var runs []SettingRun
	for i, s := range settings {
		bo := jobs.BatchOptions{InputFormat: "jsonl", Chat: o.Chat, RedoChanged: o.RedoChanged,
			Settings: jobs.Settings{Settings: s.rank(e.Ranks()), TopP: 1},
			Progress: o.Progress, Terminal: o.Terminal, Interval: o.Interval, Stop: o.Stop}
		if plan != nil {
			bo.Input, bo.Output = plan.SamplesPath, plan.PredictionsPath(s)
			say(o.Progress, "star eval: %d/%d %s: %d samples -> %s\n", i+1, len(settings), s, len(plan.Samples), bo.Output)
		}
		sum, err := e.RunBatch(bo)
		if err != nil {
			return runs, err
		}
		if plan != nil {
			runs = append(runs, SettingRun{Setting: s, Path: bo.Output, Summary: sum})
			say(o.Progress, "star eval: %s: %d answered (%d failed), %d already done, %s\n", s, sum.Queries, sum.Failed, sum.Skipped, sum.Elapsed.Round(time.Millisecond))
		}
	}
	return runs, nil
}

func say(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format, a...)
	}
}
