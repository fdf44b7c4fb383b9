package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// Flag groups, shared by the commands that take them.

func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, EnvVars: []string{"STAR_MODEL"},
			Usage: "model: llama2.c .bin, .gguf, or Hugging Face folder (default: the shared tiny stories260K model if found)"},
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file overriding the model's (tokenizer.bin, tokenizer.json)"},
		&cli.IntFlag{Name: "threads", EnvVars: []string{"STAR_THREADS"}, Usage: "compute threads per rank (default: the node's cores divided by its ranks)"},
		&cli.IntFlag{Name: "context-length", Usage: "override the model's context length from its metadata"},
		&cli.StringFlag{Name: "load-format", Value: "auto", Usage: "auto (from the model path) or dummy (random weights of --model-config's shape)"},
		&cli.StringFlag{Name: "model-config", Usage: "Hugging Face config.json giving the shape for --load-format dummy (see configs/)"},
		&cli.StringFlag{Name: "dtype", Value: "bf16", Usage: "dtype of dummy weights: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k"},
		&cli.StringFlag{Name: "device", Value: "auto", EnvVars: []string{"STAR_DEVICE"},
			Usage: "where each rank computes: auto (a CUDA GPU when one and its libraries are found, else CPU), cpu, or cuda (rank's node-local index modulo the GPUs)"},
	}
}

// kvDTypeFlag is --kv-dtype of the commands that run or size a model
// (list: a comma-separated list, bench's).
func kvDTypeFlag(list bool) cli.Flag {
	usage := "element type of the K/V caches: auto (f32 for a model whose weights are all f32, else f16), f32, f16 or bf16"
	if list {
		usage = "K/V cache element types, comma-separated, one row each: auto (f32 for a model whose weights are all f32, else f16), f32, f16, bf16"
	}
	return &cli.StringFlag{Name: "kv-dtype", Value: rank.KVAuto, Usage: usage}
}

// kvDTypes reads --kv-dtype: one choice, or with list a comma-separated
// list of them, each auto, f32, f16 or bf16 (resolved for the model by
// rank.ResolveKVDType).
func kvDTypes(c *cli.Context, list bool) ([]string, error) {
	v := c.String("kv-dtype")
	fields := []string{v}
	if list {
		fields = strings.Split(v, ",")
	}
	var out []string
	for _, f := range fields {
		f = strings.ToLower(strings.TrimSpace(f))
		if _, err := layers.ParseKVDType(f); err != nil && f != rank.KVAuto {
			if list {
				return nil, fmt.Errorf("--kv-dtype %q: use auto, f32, f16 and/or bf16, comma-separated", f)
			}
			return nil, fmt.Errorf("--kv-dtype %q: use auto, f32, f16 or bf16", v)
		}
		out = append(out, f)
	}
	return out, nil
}

// kvDType reads a single --kv-dtype choice.
func kvDType(c *cli.Context) (string, error) {
	kv, err := kvDTypes(c, false)
	if err != nil {
		return "", err
	}
	return kv[0], nil
}

func promptFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt `FILE` (the long context; its last paragraph is the query unless --query is given; - for stdin)"},
		&cli.StringFlag{Name: "query", Aliases: []string{"q"}, Usage: "query `TEXT` asked about the prompt"},
		&cli.StringFlag{Name: "query-file", Usage: "read the query from `FILE`"},
		&cli.BoolFlag{Name: "chat", Usage: "wrap context and query in the model's chat format"},
		&cli.StringFlag{Name: "attention", Value: "star", Usage: "star, ring (exact, distributed: the paper's baseline) or global (exact, on rank 0)"},
		&cli.IntFlag{Name: "block-size", Usage: "context block size in tokens (default: the whole context on one rank)"},
		&cli.IntFlag{Name: "anchor-size", Value: -1, Usage: "anchor size in tokens (default: the block size)"},
		&cli.StringFlag{Name: "merge", Value: string(rank.MergeGather), Usage: "how ranks merge partial attention under mpirun: gather, allgather or allreduce"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object on stdout"},
		&cli.BoolFlag{Name: "verbose", Usage: "print timings, layout and per-rank stats to stderr"},
	}
}

// mpiFlags are the flags of commands that run as MPI ranks.
func mpiFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "rank-timeout", Value: 10 * time.Minute, EnvVars: []string{"STAR_RANK_TIMEOUT"},
			Usage: "under mpirun/srun: end the job when a rank stops answering for this long (a stopped or hung rank), saying where each rank waited; 0: never"},
	}
}

func batchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "records `FILE`: JSON Lines or a MessagePack stream (- for stdin)"},
		&cli.StringFlag{Name: "input-format", Value: "auto", Usage: "jsonl, msgpack or auto (sniffed)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "results `FILE` (JSON Lines, appended; - for stdout)"},
		&cli.BoolFlag{Name: "chat", Usage: "wrap documents and queries in the model's chat format"},
		&cli.StringFlag{Name: "attention", Value: "star", Usage: "star or global"},
		&cli.IntFlag{Name: "block-size", Usage: "context block size in tokens (default: each document split evenly over the ranks)"},
		&cli.IntFlag{Name: "anchor-size", Value: -1, Usage: "anchor size in tokens (default: the block size)"},
		&cli.StringFlag{Name: "merge", Value: string(rank.MergeGather), Usage: "gather, allgather or allreduce"},
		&cli.StringSliceFlag{Name: "stop", Usage: "default stop string (repeatable)"},
		&cli.BoolFlag{Name: "logprobs", Usage: "include each generated token's logprob in the results"},
		&cli.StringFlag{Name: "kv-dir", Usage: "keep each document's phase-1 K/V in `DIR` and reuse it in later jobs"},
		&cli.BoolFlag{Name: "redo-changed", Usage: "answer again the queries whose record, document or settings changed since their results were written (default: refuse to resume)"},
		&cli.StringFlag{Name: "context-root", Usage: "`DIR` every context_file must lie in (default: the input file's folder)"},
		&cli.DurationFlag{Name: "progress-interval", Value: 30 * time.Second, Usage: "time between progress lines when stderr is not a terminal"},
		&cli.BoolFlag{Name: "verbose", Usage: "print warnings and per-rank stats"},
	}
}

// generationFlags are the sampling defaults of run and jobs run.
func generationFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 256, Usage: "generate at most N tokens" + what},
		&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0, Usage: "sampling temperature (0: greedy)" + what},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass" + what},
		&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed" + what},
	}
}

// Flags parsed into typed settings, once per command.

// layoutSettings reads --attention, --block-size and --anchor-size.
func layoutSettings(c *cli.Context) (rank.Settings, error) {
	att, err := rank.ParseAttention(c.String("attention"))
	if err != nil {
		return rank.Settings{}, fmt.Errorf("--attention %q: use star, ring or global", c.String("attention"))
	}
	return rank.Settings{Attention: att, BlockSize: c.Int("block-size"), AnchorSize: c.Int("anchor-size"), Ranks: 1}, nil
}

// mergeMode reads --merge.
func mergeMode(c *cli.Context) (rank.MergeMode, error) {
	m, err := rank.ParseMerge(c.String("merge"))
	if err != nil {
		return "", fmt.Errorf("--merge %q: use gather, allgather or allreduce", c.String("merge"))
	}
	return m, nil
}

// generationSettings reads the layout flags and the sampling flags
// (generationFlags) with the checks batch records get too.
func generationSettings(c *cli.Context) (jobs.Settings, error) {
	lay, err := layoutSettings(c)
	if err != nil {
		return jobs.Settings{}, err
	}
	s := jobs.Settings{Settings: lay, MaxTokens: c.Int("max-tokens"), Temperature: c.Float64("temperature"),
		TopP: c.Float64("top-p"), Seed: c.Uint64("seed")}
	if err := jobs.CheckGeneration(s); err != nil {
		return s, errors.New(err.Flag())
	}
	return s, nil
}

// parseInts reads a comma-separated list of positive sizes (with a k
// suffix for 1024).
func parseInts(s, what string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		if strings.HasSuffix(f, "k") || strings.HasSuffix(f, "K") {
			f, mult = f[:len(f)-1], 1024
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive number", what, f)
		}
		if n > weights.MaxContextLength/mult {
			return nil, fmt.Errorf("%s: %s%s is more than the %d tokens star supports", what, f, map[int]string{1: "", 1024: "k"}[mult], weights.MaxContextLength)
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: give at least one value", what)
	}
	return out, nil
}

// parseAttentions reads a comma-separated list of attention modes.
func parseAttentions(s string) ([]rank.Attention, error) {
	var out []rank.Attention
	for _, f := range strings.Split(s, ",") {
		a, err := rank.ParseAttention(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--attention %q: use star, ring and/or global, comma-separated", strings.TrimSpace(f))
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAnchors reads a comma-separated list of anchor sizes (0 or more).
func parseAnchors(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		a, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || a < 0 || a > weights.MaxContextLength {
			return nil, fmt.Errorf("--anchor-size: %q is not a size in tokens (0 or more, comma-separated)", f)
		}
		out = append(out, a)
	}
	return out, nil
}

// Range checks of numeric flags.

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
	{"continuation", 1, weights.MaxContextLength, "tokens scored per window"},
	{"max-windows", 0, 1 << 30, "windows (0: as many as the file holds)"},
	{"samples", 1, 100000, "samples per task and length"},
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

// jobsSettings is a run's settings with only its layout given.
func jobsSettings(lay rank.Settings) jobs.Settings { return jobs.Settings{Settings: lay} }
