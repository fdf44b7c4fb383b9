package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/eval"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// evalFlags are the flags `eval ppl` and `eval ruler` share.
func evalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "attention", Value: "star,global", Usage: "modes, comma-separated: star and one exact mode (global, or ring under mpirun); the exact mode runs first and is the 100%"},
		&cli.StringFlag{Name: "block-size", Usage: "Star block sizes, comma-separated (default: the context divided over the ranks)"},
		&cli.StringFlag{Name: "anchor-size", Usage: "Star anchor sizes, comma-separated; one run per block and anchor size (default: the block size)"},
		&cli.StringFlag{Name: "merge", Value: string(rank.MergeGather), Usage: "gather, allgather or allreduce"},
		kvDTypeFlag(false),
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line"},
	}
}

func evalCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "measure Star Attention's accuracy against exact attention on your model",
		Subcommands: []*cli.Command{
			{
				Name:  "ppl",
				Usage: "long-document perplexity of a text under Star and exact attention, per block and anchor size",
				Flags: concat(modelFlags(), mpiFlags(), evalFlags(), []cli.Flag{
					&cli.StringFlag{Name: "file", Usage: "`TEXT` file cut into windows"},
					&cli.IntFlag{Name: "context", Usage: "context tokens per window (BOS then N tokens of the file; default: the model's context length less BOS and the continuation)"},
					&cli.IntFlag{Name: "continuation", Value: 64, Usage: "tokens scored after each window's context (teacher-forced)"},
					&cli.IntFlag{Name: "max-windows", Usage: "score at most W windows (default: as many as the file holds)"},
				}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdEvalPPL(c, stdout, stderr) }) },
			},
			{
				Name:  "ruler",
				Usage: "RULER's synthetic tasks in your model's tokens, run under Star and exact attention, scored with RULER's metrics",
				Flags: concat(modelFlags(), mpiFlags(), evalFlags(), []cli.Flag{
					&cli.StringFlag{Name: "lengths", Usage: "target lengths in tokens (context, query and tokens to generate), comma-separated, e.g. 4k,16k"},
					&cli.StringFlag{Name: "tasks", Value: "all", Usage: "all, or some of " + fmt.Sprint(eval.TaskNames())},
					&cli.IntFlag{Name: "samples", Value: 10, Usage: "samples per task and length"},
					&cli.Uint64Flag{Name: "seed", Value: 42, Usage: "the samples' seed (the same seed, model and flags give the same samples)"},
					&cli.BoolFlag{Name: "chat", Usage: "wrap the samples in the model's chat format (the answer prefix after the assistant header)"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "`DIR` for samples, predictions (resumable), report.json and plot.svg (default: a temporary folder, removed)"},
					&cli.StringFlag{Name: "haystack", Usage: "essay `FILE` for the essay haystacks (RULER uses Paul Graham's essays; default: the noise sentences)"},
					&cli.StringFlag{Name: "squad", Usage: "SQuAD JSON `FILE` for qa_1"},
					&cli.StringFlag{Name: "hotpotqa", Usage: "HotpotQA JSON `FILE` for qa_2"},
					&cli.StringSliceFlag{Name: "data", Usage: "RULER data file prepared elsewhere, TASK=FILE or TASK/validation.jsonl (JSON Lines with input_context, input_query, outputs; repeatable)"},
					&cli.DurationFlag{Name: "progress-interval", Value: 30 * time.Second, Usage: "time between progress lines when stderr is not a terminal"},
					&cli.BoolFlag{Name: "redo-changed", Usage: "answer again the predictions made with another model or samples than now (default: refuse to resume)"},
				}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdEvalRuler(c, stdout, stderr) }) },
			},
		},
	}
}

// evalSettings reads --attention, --block-size and --anchor-size into
// the runs of an evaluation.
func evalSettings(c *cli.Context, stderr io.Writer) ([]eval.Setting, error) {
	modes, err := parseAttentions(c.String("attention"))
	if err != nil {
		return nil, err
	}
	var blocks, anchors []int
	if c.IsSet("block-size") {
		if blocks, err = parseInts(c.String("block-size"), "--block-size"); err != nil {
			return nil, err
		}
	}
	if c.IsSet("anchor-size") {
		if anchors, err = parseAnchors(c.String("anchor-size")); err != nil {
			return nil, err
		}
	}
	s, notes, err := eval.Settings(modes, blocks, anchors)
	for _, n := range notes {
		fmt.Fprintf(stderr, "star eval: %s\n", n)
	}
	return s, err
}

// cmdEvalPPL is `star eval ppl`.
func cmdEvalPPL(c *cli.Context, stdout, stderr io.Writer) error {
	if c.String("file") == "" {
		return errors.New("eval ppl needs --file TEXT: the document whose perplexity is measured")
	}
	settings, err := evalSettings(c, stderr)
	if err != nil {
		return err
	}
	merge, err := mergeMode(c)
	if err != nil {
		return err
	}
	kv, err := kvDType(c)
	if err != nil {
		return err
	}
	n, k := c.Int("context"), c.Int("continuation")
	var wins []eval.Window
	read := func(m *weights.Model) error {
		if n == 0 {
			n = m.Config.SeqLen - 1 - k
		}
		if n < 1 || 1+n+k > m.Config.SeqLen {
			return fmt.Errorf("--context %d + --continuation %d + BOS = %d tokens: more than the model's context length %d", n, k, 1+n+k, m.Config.SeqLen)
		}
		var err error
		wins, err = pplWindows(c.String("file"), m.Tokenizer, n, k, c.Int("max-windows"))
		return err
	}
	return onRanks(c, stderr, rankSetup{merge: merge, tokenizer: true, more: read, kv: kv}, func(r *rankRun) error {
		var rows []eval.PPLRow
		var progress io.Writer
		if r.w.rank == 0 {
			progress = stderr
		}
		err := eval.Perplexity(r.e, wins, settings, n, progress, func(row eval.PPLRow) {
			rows = append(rows, row)
			if c.Bool("json") {
				json.NewEncoder(stdout).Encode(row)
			}
		})
		if err == nil && r.w.rank == 0 && !c.Bool("json") {
			eval.PrintPPL(stdout, rows)
		}
		return err
	})
}

// maxPPLFile bounds a text read whole (without --max-windows).
const maxPPLFile = 256 << 20

// pplWindows reads the file (only as much as max windows can need) and
// cuts its tokens into windows.
func pplWindows(path string, tok tokenizer.Tokenizer, n, k, max int) ([]eval.Window, error) {
	lim := textLimit{bytes: maxPPLFile, refuse: func(what string, size int64, more bool) error {
		return fmt.Errorf("%s is more than %d bytes: pass --max-windows W to read only what W windows need", what, maxPPLFile)
	}}
	if max > 0 { // a token stands for at most MaxTokenBytes bytes: this holds max windows and then some
		need := 2*int64(max)*int64(n+k)*int64(tokenizer.MaxTokenBytes(tok)) + 4096
		lim.bytes = min(need, lim.bytes)
		lim.refuse = nil
	}
	text, err := readHead(path, lim)
	if err != nil {
		return nil, err
	}
	ids, err := tokenizer.EncodeWith(tok, text, tokenizer.EncodeOptions{}) // a document: plain text, no BOS
	if err != nil {
		return nil, fmt.Errorf("tokenize --file: %w", err)
	}
	return eval.Windows(ids, tok.BOS(), n, k, max)
}

// readHead reads path whole, or only its first lim.bytes when
// lim.refuse is nil.
func readHead(path string, lim textLimit) (string, error) {
	if lim.refuse != nil {
		return readText(path, "--file", lim)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read --file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, lim.bytes))
	if err != nil {
		return "", fmt.Errorf("read --file: %w", err)
	}
	return string(b), nil
}

// rulerArgs are `eval ruler`'s flags, read before any rank starts.
type rulerArgs struct {
	lengths  []int
	data     []eval.DataFile
	settings []eval.Setting
	merge    rank.MergeMode
	kv       string // --kv-dtype
}

func readRulerArgs(c *cli.Context, stderr io.Writer) (*rulerArgs, error) {
	a := &rulerArgs{}
	var err error
	for _, d := range c.StringSlice("data") {
		f, err := eval.ParseDataFile(d)
		if err != nil {
			return nil, err
		}
		a.data = append(a.data, f)
	}
	if c.String("lengths") != "" || len(a.data) == 0 {
		if a.lengths, err = parseInts(c.String("lengths"), "--lengths"); err != nil {
			return nil, fmt.Errorf("%v (eval ruler needs --lengths L1,L2..., the target lengths in tokens, or --data FILE)", err)
		}
	}
	if a.settings, err = evalSettings(c, stderr); err != nil {
		return nil, err
	}
	if a.merge, err = mergeMode(c); err != nil {
		return nil, err
	}
	a.kv, err = kvDType(c)
	return a, err
}

// rulerInput is rank 0's reading of `eval ruler`'s files and the
// generator for the model's tokenizer.
func rulerInput(c *cli.Context, a *rulerArgs, m *weights.Model, stderr io.Writer) (eval.RulerInput, error) {
	g := &eval.Generator{Tok: m.Tokenizer, Chat: c.Bool("chat"), Seed: c.Uint64("seed")}
	in := eval.RulerInput{Lengths: a.lengths, Samples: c.Int("samples"), Gen: g, Data: a.data,
		SeqLen: m.Config.SeqLen, Dir: c.String("output"), Log: stderr}
	if p := c.String("haystack"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return in, fmt.Errorf("--haystack: %w", err)
		}
		g.Haystack = string(b)
	}
	var err error
	if g.SQuAD, err = readQA(c.String("squad"), "--squad", eval.ReadSQuAD); err != nil {
		return in, err
	}
	if g.HotpotQA, err = readQA(c.String("hotpotqa"), "--hotpotqa", eval.ReadHotpotQA); err != nil {
		return in, err
	}
	if len(a.lengths) > 0 {
		in.Tasks, err = eval.ParseTasks(c.String("tasks"), map[string]bool{"squad": g.SQuAD != nil, "hotpotqa": g.HotpotQA != nil})
	}
	return in, err
}

func readQA(path, flag string, read func(io.Reader) (*eval.QASet, error)) (*eval.QASet, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	set, err := read(f)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return set, nil
}

// cmdEvalRuler is `star eval ruler`.
func cmdEvalRuler(c *cli.Context, stdout, stderr io.Writer) error {
	a, err := readRulerArgs(c, stderr)
	if err != nil {
		return err
	}
	if len(a.lengths) > 0 { // unknown tasks, or QA without its file, before the model loads
		if _, err := eval.ParseTasks(c.String("tasks"), map[string]bool{"squad": c.String("squad") != "", "hotpotqa": c.String("hotpotqa") != ""}); err != nil {
			return err
		}
	}
	stop := notifyStop()
	var plan *eval.RulerPlan
	prepare := func(m *weights.Model) error {
		in, err := rulerInput(c, a, m, stderr)
		if err == nil {
			plan, err = eval.PrepareRuler(in)
		}
		return err
	}
	return onRanks(c, stderr, rankSetup{merge: a.merge, tokenizer: true, more: prepare, kv: a.kv}, func(r *rankRun) error {
		defer plan.Close()
		o := eval.RunOptions{Chat: c.Bool("chat"), RedoChanged: c.Bool("redo-changed"), Terminal: isTerminal(stderr), Interval: c.Duration("progress-interval"), Stop: stop}
		if r.w.rank == 0 {
			o.Progress = stderr
		}
		runs, err := eval.RunRuler(r.e, plan, a.settings, o)
		if r.w.rank != 0 {
			return err
		}
		if errors.Is(err, jobs.ErrInterrupted) {
			return &exitError{exitInterrupted, fmt.Sprintf("stopped by %s; rerun the same command with the same --output to resume", stopName(stop))}
		}
		if err != nil {
			return err
		}
		return rulerReport(c, r, plan, runs, a.settings, stdout, stderr)
	})
}

func stopName(stop *jobs.Stop) string {
	if n := stop.Reason(); n != "" {
		return n
	}
	return "a signal"
}

// rulerReport scores the predictions and prints and writes the report.
func rulerReport(c *cli.Context, r *rankRun, plan *eval.RulerPlan, runs []eval.SettingRun, settings []eval.Setting, stdout, stderr io.Writer) error {
	rows, err := eval.ScoreRuns(plan, runs, r.e.Ranks())
	if err != nil {
		return err
	}
	avgs := eval.Averages(rows, settings)
	if c.Bool("json") {
		enc := json.NewEncoder(stdout)
		for _, row := range rows {
			enc.Encode(row)
		}
	} else {
		eval.PrintTable(stdout, rows, avgs)
	}
	if !plan.Temp {
		if err := writeRulerFiles(c, r, plan, runs, settings, rows, avgs); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "star eval: report %s, plot %s\n", filepath.Join(plan.Dir, "report.json"), filepath.Join(plan.Dir, "plot.svg"))
	}
	failed := 0
	for _, row := range rows {
		failed += row.Errors
	}
	if failed > 0 {
		return &exitError{exitFailedRecords, fmt.Sprintf("%d predictions are errors and count as wrong (see \"error\" in the predictions files)", failed)}
	}
	return nil
}

// writeRulerFiles writes report.json and plot.svg into the output folder.
func writeRulerFiles(c *cli.Context, r *rankRun, plan *eval.RulerPlan, runs []eval.SettingRun, settings []eval.Setting, rows []eval.Row, avgs []eval.Average) error {
	rep := eval.Report{Model: r.e.W.Path, Ranks: r.e.Ranks(), Seed: c.Uint64("seed"), Chat: c.Bool("chat"), KVDType: layers.KVDTypeName(r.e.KVDType),
		Rows: rows, Averages: avgs, Skipped: plan.Skipped}
	for i, s := range settings {
		rep.Settings = append(rep.Settings, s.String())
		rep.Files = append(rep.Files, filepath.Base(runs[i].Path))
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(plan.Dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	f, err := os.Create(filepath.Join(plan.Dir, "plot.svg"))
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := eval.WritePlot(f, avgs, settings); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
