package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// cmdRun is star itself: generate an answer to a query about a document.
func cmdRun(c *cli.Context, stdout, stderr io.Writer) error {
	if c.Args().Len() > 0 {
		return fmt.Errorf("unexpected argument %q: the prompt is given with --prompt FILE", c.Args().First())
	}
	s, err := generationSettings(c)
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
	return onRanks(c, stderr, rankSetup{merge: merge, readPrompt: true, kv: kv}, func(r *rankRun) error {
		e, t := r.e, r.t
		verbose := c.Bool("verbose") && r.w.rank == 0
		if verbose {
			fmt.Fprintf(stderr, "star: %s, context %d tokens, query %d tokens, attention %s, %d rank(s), %d thread(s) per rank\n",
				filepath.Base(e.W.Path), len(t.Context), len(t.Query), s.Attention, e.Ranks(), e.M.C.Threads())
		}
		var stream io.Writer
		if !c.Bool("json") && r.w.rank == 0 {
			stream = stdout
		}
		res, err := e.Generate(t, s, stream)
		if err != nil || r.w.rank != 0 {
			return err
		}
		if c.Bool("json") {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintln(stdout)
		if verbose {
			fmt.Fprintf(stderr, "star: %d tokens (%s); phase 1 %.3fs, first token %.3fs, decode %.1f tok/s\n",
				len(res.Tokens), res.StopReason, res.Timings.Phase1, res.Timings.TTFT, res.Timings.DecodeTPS)
			printRankStats(stderr, res.Ranks)
		}
		return nil
	})
}

// printRankStats writes the per-rank table of a distributed run.
func printRankStats(w io.Writer, st []rank.RankStats) {
	if len(st) == 0 {
		return
	}
	fmt.Fprintf(w, "%-5s %-7s %-8s %-10s %-10s %-12s %-14s %s\n", "rank", "blocks", "tokens", "phase1_s", "phase2_s", "kv_bytes", "phase2_bytes", "bytes/token step")
	for _, r := range st {
		per := "-"
		if r.Steps > 0 {
			per = fmt.Sprintf("%d", r.Phase2B/int64(r.Steps))
		}
		fmt.Fprintf(w, "%-5d %-7d %-8d %-10.3f %-10.3f %-12d %-14d %s\n", r.Rank, r.Blocks, r.Tokens, r.Phase1, r.Phase2, r.KVBytes, r.Phase2B, per)
	}
}

// cmdScore teacher-forces a continuation after the query.
func cmdScore(c *cli.Context, stdout, stderr io.Writer) error {
	if c.IsSet("continuation-file") && c.IsSet("continuation") {
		return errors.New("give either --continuation-file or --continuation, not both")
	}
	if !c.IsSet("continuation-file") && !c.IsSet("continuation") {
		return errors.New("nothing to score: pass --continuation-file FILE")
	}
	lay, err := layoutSettings(c)
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
	var ids []int
	read := func(m *weights.Model) error {
		cont := c.String("continuation")
		lim := limitFor(m, 2) // BOS and a query token
		if c.IsSet("continuation-file") {
			var err error
			if cont, err = readText(c.String("continuation-file"), "the continuation file", lim); err != nil {
				return err
			}
		} else if err := lim.refuse("the continuation", int64(len(cont)), false); err != nil {
			return err
		}
		var err error
		if ids, err = m.Tokenizer.Encode(cont, false); err != nil {
			return fmt.Errorf("tokenize continuation: %w", err)
		}
		return nil
	}
	return onRanks(c, stderr, rankSetup{merge: merge, readPrompt: true, more: read, kv: kv}, func(r *rankRun) error {
		e, t := r.e, r.t
		res, err := e.Score(t, ids, jobsSettings(lay))
		if err != nil || r.w.rank != 0 {
			return err
		}
		if c.Bool("json") {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(stdout, "%-6s %-8s %-12s %s\n", "index", "token", "logprob", "piece")
		prev := -1
		if len(t.Query) > 0 {
			prev = t.Query[len(t.Query)-1]
		}
		for i, id := range res.Tokens {
			fmt.Fprintf(stdout, "%-6d %-8d %-12.6f %q\n", i, id, res.Logprobs[i], string(e.Tok.Piece(prev, id)))
			prev = id
		}
		fmt.Fprintf(stdout, "tokens %d  mean NLL %.6f  perplexity %.4f\n", len(res.Tokens), res.NLL, res.Perplexity)
		if c.Bool("verbose") {
			printRankStats(stderr, res.Ranks)
		}
		return nil
	})
}
