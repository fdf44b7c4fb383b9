package main

import (
	"encoding/json"
	"errors"
	"io"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
)

// cmdBench measures phase 1, time to first token and decode speed.
func cmdBench(c *cli.Context, stdout, stderr io.Writer) error {
	ctxs, err := parseInts(c.String("context"), "--context")
	if err != nil {
		return err
	}
	random := c.IsSet("decode-context")
	if random {
		if c.IsSet("context") {
			return errors.New("give --context (phase 1 encodes each context) or --decode-context (random K/V instead), not both")
		}
		if ctxs, err = parseInts(c.String("decode-context"), "--decode-context"); err != nil {
			return err
		}
	}
	kvs, err := kvDTypes(c, true)
	if err != nil {
		return err
	}
	atts, err := parseAttentions(c.String("attention"))
	if err != nil {
		return err
	}
	var anchors []int // nil: the block size
	if c.IsSet("anchor-size") {
		if anchors, err = parseAnchors(c.String("anchor-size")); err != nil {
			return err
		}
	}
	merge, err := mergeMode(c)
	if err != nil {
		return err
	}
	if c.String("load-format") != "dummy" && c.String("model") == "" && defaultModel() == "" {
		return errors.New("bench needs --model PATH, or --load-format dummy --model-config FILE")
	}
	o := jobs.BenchOptions{Contexts: ctxs, Attentions: atts, BlockSize: c.Int("block-size"), AnchorSizes: anchors,
		QueryTokens: c.Int("query-tokens"), DecodeTokens: c.Int("decode-tokens"), ScoreTokens: c.Int("score-tokens"), Seed: 1,
		RandomKV: random}
	return onRanks(c, stderr, rankSetup{merge: merge, counting: true}, func(r *rankRun) error {
		e := r.e
		if r.w.rank == 0 {
			o.Progress = stderr
			o.SgemmGFLOPS, o.ReadBandwidth, o.WeightsReadBandwidth = jobs.Yardsticks(e.M.C.Threads())
			for _, kv := range kvs {
				dt, err := rank.ResolveKVDType(kv, e.W)
				if err != nil {
					return err
				}
				if !slices.Contains(o.KVDTypes, dt) {
					o.KVDTypes = append(o.KVDTypes, dt)
				}
			}
		}
		var rows []jobs.BenchRow
		err := e.Bench(o, func(row jobs.BenchRow) {
			rows = append(rows, row)
			if c.Bool("json") {
				json.NewEncoder(stdout).Encode(row)
			}
		})
		if err != nil {
			return err
		}
		if r.w.rank == 0 && !c.Bool("json") {
			jobs.PrintBenchTable(stdout, rows)
		}
		return nil
	})
}
