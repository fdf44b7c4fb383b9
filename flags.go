package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/weights"
)

// maxThreads and maxRanks bound --threads and --ranks: far above any
// machine, low enough that nothing sized by them can exhaust memory.
const (
	maxThreads = 1 << 12
	maxRanks   = 1 << 16
)

// intRule is the range of an integer flag when it is given.
type intRule struct {
	name     string
	min, max int
	what     string // what the number counts, for the message
}

var intRules = []intRule{
	{"threads", 1, maxThreads, "compute threads per rank (leave it out for the node's cores divided by its ranks)"},
	{"context-length", 1, weights.MaxContextLength, "tokens"},
	{"context", 1, weights.MaxContextLength, "context tokens"},
	{"block-size", 1, weights.MaxContextLength, "tokens per block"},
	{"anchor-size", 0, weights.MaxContextLength, "anchor tokens (0: no anchor)"},
	{"ranks", 1, maxRanks, "ranks"},
	{"max-tokens", 0, jobs.MaxGenTokens, "tokens"},
	{"decode-tokens", 0, jobs.MaxGenTokens, "decode steps"},
	{"score-tokens", 0, jobs.MaxGenTokens, "tokens (0: skip scoring)"},
	{"query-tokens", 1, jobs.MaxGenTokens, "query tokens"},
	{"context-tokens", 1, weights.MaxContextLength, "context tokens"},
}

// positiveDurations are the duration flags for which 0 is no value.
var positiveDurations = map[string]bool{"progress-interval": true}

// checkFlags refuses numeric flags given out of range, naming the flag,
// the value and the range: every command runs it first.
func checkFlags(c *cli.Context) error {
	flags := c.App.Flags
	if c.Command != nil {
		flags = c.Command.Flags
	}
	for _, f := range flags {
		name := f.Names()[0]
		if !c.IsSet(name) {
			continue
		}
		switch f.(type) {
		case *cli.IntFlag:
			v := c.Int(name)
			for _, r := range intRules {
				if r.name == name && (v < r.min || v > r.max) {
					return fmt.Errorf("--%s %d is out of range: give %d to %d %s", name, v, r.min, r.max, r.what)
				}
			}
		case *cli.DurationFlag:
			// negative durations mean nothing; zero is "off" for some
			// (a timeout), not for an interval
			if d := c.Duration(name); d < 0 || (d == 0 && positiveDurations[name]) {
				return fmt.Errorf("--%s %v must be a positive duration (e.g. 30s)", name, d)
			}
		}
	}
	return nil
}
