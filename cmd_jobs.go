package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/weights"
)

// cmdJobsRun is `star jobs run`: every query of every record, appended to
// the output, resumable.
func cmdJobsRun(c *cli.Context, stdout, stderr io.Writer) error {
	if c.String("input") == "" || c.String("output") == "" {
		return errors.New("jobs run needs --input FILE (records) and --output FILE (results)")
	}
	stop := notifyStop()
	s, err := generationSettings(c)
	if err != nil {
		return err
	}
	s.Stop = c.StringSlice("stop")
	merge, err := mergeMode(c)
	if err != nil {
		return err
	}
	kv, err := kvDType(c)
	if err != nil {
		return err
	}
	inputExists := func(*weights.Model) error {
		if c.String("input") != "-" {
			if _, err := os.Stat(c.String("input")); err != nil {
				return fmt.Errorf("input: %w", err)
			}
		}
		return nil
	}
	o := jobs.BatchOptions{
		Input: c.String("input"), InputFormat: c.String("input-format"), Output: c.String("output"),
		Settings: s, Chat: c.Bool("chat"), Logprobs: c.Bool("logprobs"),
		RedoChanged: c.Bool("redo-changed"), ContextRoot: c.String("context-root"),
		Progress: stderr, Terminal: isTerminal(stderr), Interval: c.Duration("progress-interval"), Stop: stop,
	}
	return onRanks(c, stderr, rankSetup{merge: merge, tokenizer: true, more: inputExists, kv: kv}, func(r *rankRun) error {
		e := r.e
		e.KVDir = c.String("kv-dir")
		if c.Bool("verbose") {
			e.Log = stderr
		}
		sum, err := e.RunBatch(o)
		if r.w.rank != 0 {
			return err
		}
		return batchOutcome(stderr, o, sum, err, stop)
	})
}

// notifyStop turns SIGTERM and SIGINT into a stop request, from now until
// the process exits: rank 0 acts on it after the query in flight (or at
// once while it waits for input) and tells the others to end; a late
// signal must not kill a rank that is ending.
func notifyStop() *jobs.Stop {
	stop := jobs.NewStop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			name := "SIGTERM"
			if s == syscall.SIGINT {
				name = "SIGINT"
			}
			stop.Request(name)
			if testHook != nil { // tests: the stop is noted
				testHook(-1, "signal")
			}
		}
	}()
	return stop
}

// isTerminal reports whether w is a terminal (progress draws a bar).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// batchOutcome reports a batch on rank 0 and turns it into the job's
// status.
func batchOutcome(stderr io.Writer, o jobs.BatchOptions, sum *jobs.BatchSummary, err error, stop *jobs.Stop) error {
	if sum != nil && sum.Repaired {
		fmt.Fprintf(stderr, "star jobs: cut a truncated last line from %s (a crash interrupted it); its query runs again\n", o.Output)
	}
	if sum != nil && sum.Orphans > 0 {
		fmt.Fprintf(stderr, "star jobs: %d result(s) in %s answer no query of %s (records removed or renamed since?); they are kept as they are\n", sum.Orphans, o.Output, o.Input)
	}
	if sum != nil {
		fmt.Fprintf(stderr, "star jobs: %d records, %d results written (%d failed), %d already done (%d failed), %d tokens in %s; encoding each document once saved %s of phase 1\n",
			sum.Records, sum.Queries, sum.Failed, sum.Skipped, sum.FailedEarly, sum.Tokens, sum.Elapsed.Round(time.Millisecond), sum.EncodeSaved.Round(time.Millisecond))
	}
	switch {
	case errors.Is(err, jobs.ErrInterrupted):
		name := stop.Reason()
		if name == "" {
			name = "a signal"
		}
		return &exitError{exitInterrupted, fmt.Sprintf("stopped by %s after finishing the query in flight; %s", name, jobs.ResumeHint(o.Output))}
	case err != nil:
		return err
	case sum.Failed+sum.FailedEarly > 0:
		return &exitError{exitFailedRecords, fmt.Sprintf("%d of %d results are errors (see the \"error\" field in %s)",
			sum.Failed+sum.FailedEarly, sum.Queries+sum.Skipped, o.Output)}
	}
	return nil
}
