// Command star runs long-context Llama inference with Star Attention.
//
//	star --prompt doc.txt --query "What is the secret word?"
//	star score --prompt doc.txt --continuation-file answer.txt --json
//	star inspect --model model.gguf
//	star tokenize --model model.gguf --text "Hello"
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/collective"
	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/benchref"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/slurm"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// MPI is called from the main goroutine only; keep it on the thread
	// that initialised MPI.
	runtime.LockOSThread()
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "star: internal error: %v (please report it with the command line)\n", r)
			if os.Getenv("STAR_DEBUG") != "" {
				fmt.Fprintf(stderr, "%s", debug.Stack())
			}
			code = 2
		}
	}()
	app := newApp(stdout, stderr)
	if err := app.Run(args); err != nil {
		if err != errSilent && err.Error() != "" {
			fmt.Fprintf(stderr, "star: %v\n", err)
		}
		return exitCode(err)
	}
	return 0
}

func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, EnvVars: []string{"STAR_MODEL"},
			Usage: "model: llama2.c .bin, .gguf, or Hugging Face folder (default: the shared tiny stories260K model if found)"},
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file overriding the model's (tokenizer.bin, tokenizer.json)"},
		&cli.IntFlag{Name: "threads", EnvVars: []string{"STAR_THREADS"}, Usage: "compute threads per rank (default: the node's cores divided by its ranks)"},
		&cli.IntFlag{Name: "context-length", Usage: "override the model's context length from its metadata"},
		&cli.StringFlag{Name: "load-format", Value: "auto", Usage: "auto (from the model path) or dummy (random weights of --model-config's shape)"},
		&cli.StringFlag{Name: "model-config", Usage: "Hugging Face config.json giving the shape for --load-format dummy (see configs/)"},
		&cli.StringFlag{Name: "dtype", Value: "bf16", Usage: "dtype of dummy weights: f32, f16 or bf16"},
	}
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
		&cli.StringFlag{Name: "merge", Value: rank.MergeGather, Usage: "how ranks merge partial attention under mpirun: gather, allgather or allreduce"},
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
		&cli.StringFlag{Name: "merge", Value: rank.MergeGather, Usage: "gather, allgather or allreduce"},
		&cli.StringSliceFlag{Name: "stop", Usage: "default stop string (repeatable)"},
		&cli.BoolFlag{Name: "logprobs", Usage: "include each generated token's logprob in the results"},
		&cli.StringFlag{Name: "kv-dir", Usage: "keep each document's phase-1 K/V in `DIR` and reuse it in later jobs"},
		&cli.BoolFlag{Name: "redo-changed", Usage: "answer again the queries whose record, document or settings changed since their results were written (default: refuse to resume)"},
		&cli.StringFlag{Name: "context-root", Usage: "`DIR` every context_file must lie in (default: the input file's folder)"},
		&cli.DurationFlag{Name: "progress-interval", Value: 30 * time.Second, Usage: "time between progress lines when stderr is not a terminal"},
		&cli.BoolFlag{Name: "verbose", Usage: "print warnings and per-rank stats"},
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	runFlags := append(append(append(modelFlags(), mpiFlags()...), promptFlags()...),
		&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 256, Usage: "generate at most N tokens"},
		&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0, Usage: "sampling temperature (0: greedy)"},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass"},
		&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed"},
	)
	return &cli.App{
		Name:      "star",
		Usage:     "long-context Llama inference with Star Attention",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     runFlags,
		Action:    func(c *cli.Context) error { return checked(c, func() error { return cmdRun(c, stdout, stderr) }) },
		Commands: []*cli.Command{
			{
				Name:  "score",
				Usage: "teacher-force a continuation after the query; print its log-probabilities and mean NLL",
				Flags: append(append(append(modelFlags(), mpiFlags()...), promptFlags()...),
					&cli.StringFlag{Name: "continuation-file", Usage: "`FILE` holding the continuation to score"},
					&cli.StringFlag{Name: "continuation", Usage: "continuation `TEXT` to score"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdScore(c, stdout, stderr) }) },
			},
			{
				Name:  "jobs",
				Usage: "offline batch processing of long documents",
				Subcommands: []*cli.Command{{
					Name:  "run",
					Usage: "answer every query of every record in --input, appending results to --output (rerun to resume)",
					Flags: append(append(append(modelFlags(), mpiFlags()...), batchFlags()...),
						&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 256, Usage: "default generated tokens per query"},
						&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0, Usage: "default sampling temperature (0: greedy)"},
						&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "default nucleus sampling mass"},
						&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "default sampling seed"},
					),
					Action: func(c *cli.Context) error { return checked(c, func() error { return cmdJobsRun(c, stdout, stderr) }) },
				}},
			},
			{
				Name:  "slurm",
				Usage: "Slurm helpers",
				Subcommands: []*cli.Command{{
					Name:      "script",
					Usage:     "print an sbatch script that runs star (arguments after -- are star's)",
					ArgsUsage: "-- STAR-ARGS...",
					Flags: []cli.Flag{
						&cli.IntFlag{Name: "nodes", Value: 1, Usage: "sbatch --nodes"},
						&cli.IntFlag{Name: "ntasks-per-node", Value: 1, Usage: "sbatch --ntasks-per-node: MPI ranks per node"},
						&cli.IntFlag{Name: "gpus-per-node", Usage: "sbatch --gpus-per-node (0: none)"},
						&cli.IntFlag{Name: "cpus-per-task", Value: 1, Usage: "sbatch --cpus-per-task: star's --threads per rank"},
						&cli.StringFlag{Name: "time", Usage: "sbatch --time (MM, HH:MM:SS, D-HH:MM, ...)"},
						&cli.StringFlag{Name: "partition", Usage: "sbatch --partition"},
						&cli.StringFlag{Name: "account", Usage: "sbatch --account"},
						&cli.StringFlag{Name: "job-name", Value: "star", Usage: "sbatch --job-name"},
						&cli.StringFlag{Name: "output", Value: "%x-%j.out", Usage: "sbatch --output"},
						&cli.StringFlag{Name: "launcher", Value: slurm.LauncherSrun, Usage: "srun (srun --mpi=pmix) or mpirun inside the allocation"},
						&cli.IntFlag{Name: "signal-before", Value: slurm.DefaultSignalBefore, Usage: "seconds before the time limit that star is told to stop (and the job requeues)"},
						&cli.BoolFlag{Name: "no-requeue", Usage: "do not requeue a job stopped at its time limit"},
						&cli.StringFlag{Name: "star", Usage: "star binary as the compute nodes see it (default: this binary's absolute path)"},
						&cli.IntFlag{Name: "context-tokens", Usage: "check the rank count against a context of this many tokens"},
						&cli.IntFlag{Name: "block-size", Usage: "with --context-tokens: the block size star will use"},
					},
					Action: func(c *cli.Context) error { return cmdSlurmScript(c, stdout) },
				}},
			},
			{
				Name:  "bench",
				Usage: "measure phase 1, time to first token and decode speed per context length and attention mode (run under mpirun for several ranks)",
				Flags: append(append(modelFlags(), mpiFlags()...),
					&cli.StringFlag{Name: "context", Value: "4096", Usage: "context lengths, comma-separated (e.g. 4096,32768)"},
					&cli.StringFlag{Name: "attention", Value: "star", Usage: "attention modes, comma-separated: star, ring, global"},
					&cli.IntFlag{Name: "block-size", Usage: "Star block size (default: context / ranks)"},
					&cli.StringFlag{Name: "anchor-size", Usage: "Star anchor sizes, comma-separated: one star row each, e.g. 4096,1024 (default: the block size)"},
					&cli.IntFlag{Name: "decode-tokens", Value: 16, Usage: "decode steps timed"},
					&cli.IntFlag{Name: "query-tokens", Value: 16, Usage: "query length"},
					&cli.IntFlag{Name: "score-tokens", Value: 16, Usage: "continuation tokens teacher-forced after the query for accuracy: mean NLL, and its ratio to the exact mode (global, else ring) of the same context (0: skip)"},
					&cli.StringFlag{Name: "merge", Value: rank.MergeGather, Usage: "gather, allgather or allreduce"},
					&cli.BoolFlag{Name: "json", Usage: "one JSON object per line per configuration"},
				),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdBench(c, stdout, stderr) }) },
			},
			{
				Name:  "inspect",
				Usage: "show a model's architecture, size, tokenizer and the memory a run needs",
				Flags: append(modelFlags(),
					&cli.IntFlag{Name: "context", Usage: "context tokens to size the KV cache for (default: the model's context length)"},
					&cli.IntFlag{Name: "ranks", Value: 1, Usage: "ranks the context is spread over"},
					&cli.IntFlag{Name: "block-size", Usage: "block size (default: the context divided over the ranks)"},
					&cli.IntFlag{Name: "anchor-size", Value: -1, Usage: "anchor size (default: the block size)"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdInspect(c, stdout) }) },
			},
			{
				Name:  "tokenize",
				Usage: "print the token ids of a text (or, with --decode, the text of ids)",
				Flags: append(modelFlags(),
					&cli.StringFlag{Name: "text", Usage: "`TEXT` to tokenize (with --decode: ids separated by spaces or commas)"},
					&cli.StringFlag{Name: "file", Usage: "read the text from `FILE`"},
					&cli.BoolFlag{Name: "bos", Usage: "prepend BOS"},
					&cli.BoolFlag{Name: "decode", Usage: "turn ids back into text"},
					&cli.BoolFlag{Name: "json", Usage: "print a JSON array of ids (or a JSON string with --decode)"}),
				Action: func(c *cli.Context) error { return checked(c, func() error { return cmdTokenize(c, stdout) }) },
			},
		},
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return fmt.Errorf("%v (see star --help)", err)
		},
	}
}

// checked runs a command after checking its numeric flags.
func checked(c *cli.Context, cmd func() error) error {
	if err := checkFlags(c); err != nil {
		return err
	}
	return cmd()
}

// defaultModel finds the shared tiny model for flag-less runs.
func defaultModel() string {
	rel := filepath.Join("shared", "models", "stories260K", "stories260K.bin")
	dirs := []string{".", ".."}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe) // e.g. repo/bin: try repo/bin, repo and repo/..
		dirs = append(dirs, d, filepath.Dir(d), filepath.Dir(filepath.Dir(d)))
	}
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// loadModel loads --model, or builds --load-format dummy weights; local
// is the number of ranks on this node (their memory is shared).
func loadModel(c *cli.Context, local int) (*weights.Model, error) {
	switch c.String("load-format") {
	case "dummy":
		if c.String("model-config") == "" {
			return nil, errors.New("--load-format dummy needs --model-config config.json (a Hugging Face config; see configs/)")
		}
		dt, err := weights.ParseDType(c.String("dtype"))
		if err != nil {
			return nil, fmt.Errorf("--dtype: %w", err)
		}
		cfg, path, err := weights.ReadDummyConfig(c.String("model-config"))
		if err != nil {
			return nil, err
		}
		if n := c.Int("context-length"); n > 0 {
			cfg.SeqLen = n
		}
		var m *weights.Model
		if c.Command.Name == "inspect" {
			m, err = weights.DummyShape(cfg, dt) // sizes only: nothing allocated
		} else {
			var n int64
			if n, err = weights.DummyBytes(cfg, dt); err == nil {
				advice := "use a smaller --model-config or fewer ranks per node"
				if dt == weights.F32 {
					advice = "use --dtype bf16, a smaller --model-config or fewer ranks per node"
				}
				err = jobs.CheckWeightMemory(n, false, local, fmt.Sprintf("dummy %v weights of %s", dt, path), advice)
			}
			if err == nil {
				m, err = weights.NewDummy(cfg, dt, 1)
			}
		}
		if err != nil {
			return nil, err
		}
		m.Path = path
		if c.String("tokenizer") != "" {
			if m.Tokenizer, err = weights.LoadTokenizer(c.String("tokenizer")); err != nil {
				return nil, err
			}
		}
		return m, nil
	case "auto", "":
	default:
		return nil, fmt.Errorf("--load-format %q: use auto or dummy", c.String("load-format"))
	}
	path := c.String("model")
	if path == "" {
		if path = defaultModel(); path == "" {
			return nil, errors.New("no model given: pass --model PATH (llama2.c .bin, .gguf or Hugging Face folder) or set STAR_MODEL")
		}
	}
	opts := weights.Options{Tokenizer: c.String("tokenizer")}
	if c.Command.Name != "inspect" && c.Command.Name != "tokenize" {
		opts.CheckSize = func(n int64) error { // before the weights are paged in
			return jobs.CheckWeightMemory(n, true, local, "weights of "+filepath.Base(path), "use a smaller model or a machine with more memory")
		}
	}
	m, err := weights.Load(path, opts)
	if err != nil {
		return nil, err
	}
	if n := c.Int("context-length"); n > 0 {
		m.Config.SeqLen = n
	}
	return m, nil
}

func needTokenizer(m *weights.Model) error {
	if m.Tokenizer == nil {
		return fmt.Errorf("model %s came without a tokenizer: pass --tokenizer PATH (tokenizer.bin or tokenizer.json)", m.Path)
	}
	return nil
}

// textLimit bounds a text read for a model: how many bytes could fit,
// and the refusal of a longer text (n bytes, or more than n-1 when more).
type textLimit struct {
	bytes  int64 // 0: none
	refuse func(what string, n int64, more bool) error
	tok    tokenizer.Tokenizer
	seqLen int
}

// limitFor is the limit for text that must fit in m's context beside
// reserve other tokens.
func limitFor(m *weights.Model, reserve int) textLimit {
	tok, n := m.Tokenizer, m.Config.SeqLen
	return textLimit{bytes: jobs.MaxContextBytes(tok, n-reserve), tok: tok, seqLen: n,
		refuse: func(what string, size int64, more bool) error {
			return jobs.TooLong(tok, what, size, more, n-reserve, n)
		}}
}

// readText reads path ("-": stdin). A text over lim is refused before it
// is read: a file by its size, stdin once it has passed the limit.
func readText(path, what string, lim textLimit) (string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && lim.bytes > 0 && st.Mode().IsRegular() && st.Size() > lim.bytes {
			return "", lim.refuse(what+" "+path, st.Size(), false)
		}
		r = f
	}
	if lim.bytes > 0 {
		r = io.LimitReader(r, lim.bytes+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if lim.bytes > 0 && int64(len(b)) > lim.bytes {
		return "", lim.refuse(strings.TrimSuffix(what, " file")+" on stdin", int64(len(b)), true)
	}
	return string(b), nil
}

// readInput reads the prompt and query flags; text that cannot fit the
// model's context is refused before it is read or tokenized.
func readInput(c *cli.Context, lim textLimit) (jobs.Input, error) {
	if c.String("prompt") == "" {
		return jobs.Input{}, errors.New("no prompt: pass --prompt FILE (the document; its last paragraph is the question unless --query is given)")
	}
	p, err := readText(c.String("prompt"), "the prompt file", lim)
	if err != nil {
		return jobs.Input{}, err
	}
	in := jobs.Input{Prompt: p, Chat: c.Bool("chat")}
	if c.IsSet("query") && c.IsSet("query-file") {
		return in, errors.New("give either --query or --query-file, not both")
	}
	if c.IsSet("query") {
		in.Query, in.HasQuery = c.String("query"), true
	}
	if c.IsSet("query-file") {
		q, err := readText(c.String("query-file"), "the query file", lim)
		if err != nil {
			return in, err
		}
		in.Query, in.HasQuery = strings.TrimRight(q, "\r\n"), true
	}
	if lim.tok != nil {
		if err := jobs.CheckInputSize(lim.tok, in, lim.seqLen); err != nil {
			return in, err
		}
	}
	return in, nil
}

func settings(c *cli.Context) (jobs.Settings, error) {
	s := jobs.Settings{
		Attention: c.String("attention"), BlockSize: c.Int("block-size"), AnchorSize: c.Int("anchor-size"),
		Ranks: 1, Merge: c.String("merge"),
	}
	if _, err := rank.NewCombiner(nil, s.Merge); err != nil {
		return s, fmt.Errorf("--merge %q: use gather, allgather or allreduce", s.Merge)
	}
	if c.Command.Name == "bench" {
		// bench takes lists; cmdBench checks them
		s.Attention, s.AnchorSize = "star", -1
	}
	if s.Attention != "star" && s.Attention != "global" && s.Attention != "ring" {
		return s, fmt.Errorf("--attention %q: use star, ring or global", s.Attention)
	}
	if c.IsSet("block-size") && s.BlockSize <= 0 {
		return s, fmt.Errorf("--block-size %d must be positive", s.BlockSize)
	}
	if c.IsSet("anchor-size") && s.AnchorSize < 0 && c.Command.Name != "bench" {
		return s, fmt.Errorf("--anchor-size %d must not be negative", s.AnchorSize)
	}
	if c.Command.Name != "score" {
		s.MaxTokens = c.Int("max-tokens")
		s.Temperature = c.Float64("temperature")
		s.TopP = c.Float64("top-p")
		s.Seed = c.Uint64("seed")
		if err := jobs.CheckGeneration(s); err != nil {
			return s, errors.New(err.Flag())
		}
	}
	return s, nil
}

// world is this process's place in the run: one process, or a rank of an
// MPI job started by mpirun or srun.
type world struct {
	comm  collective.Comm // nil in one process
	mpi   *collective.MPI
	wd    *collective.Watchdog // nil: no watch (one process, --rank-timeout 0)
	rank  int
	local int // ranks on this node
}

// joinWorld initialises MPI when an MPI launcher started this process, and
// starts the watchdog that ends the job when a rank stops answering for
// --rank-timeout.
func joinWorld(c *cli.Context, stderr io.Writer) (*world, error) {
	w := &world{local: 1}
	if !collective.Launched() {
		return w, nil
	}
	timeout := c.Duration("rank-timeout")
	if timeout < 0 {
		return nil, fmt.Errorf("--rank-timeout %v must not be negative (0 turns the watchdog off)", timeout)
	}
	m, err := collective.InitMPI()
	if err != nil {
		return nil, fmt.Errorf("MPI initialisation: %w", err)
	}
	w.mpi, w.comm, w.rank, w.local = m, m, m.Rank(), max(m.LocalSize(), 1)
	if timeout > 0 && m.Size() > 1 {
		host := hostLabel()
		wd, err := collective.NewWatchdog(m, timeout, func(h collective.Hang) {
			fmt.Fprintf(stderr, "star: rank %d on %s: %v; aborting the job (--rank-timeout %v)\n", h.Rank, host, h, timeout)
			m.Abort(1)
		})
		switch {
		case errors.Is(err, collective.ErrNoHeartbeat):
			if w.rank == 0 {
				fmt.Fprintf(stderr, "star: MPI gives %s, not MPI_THREAD_MULTIPLE: the rank watchdog (--rank-timeout) is off\n", m.ThreadLevel())
			}
		case err != nil:
			m.Finalize()
			return nil, fmt.Errorf("rank watchdog: %w", err)
		default:
			w.wd, w.comm = wd, collective.Watch(m, wd)
			wd.SetPhase("start-up (loading the model)")
		}
	}
	return w, nil
}

// hostLabel names this host in messages (and the Slurm task, under Slurm).
func hostLabel() string {
	host, _ := os.Hostname()
	if env, ok, serr := slurm.Detect(); ok && serr == nil {
		host += " (" + env.Label() + ")"
	}
	return host
}

func (w *world) close() {
	if w.wd != nil {
		w.wd.Close()
	}
	if w.mpi != nil {
		w.mpi.Finalize()
	}
}

// finish ends a command the same way on every rank of a distributed run.
// An error only this rank knows of (one that failed alone mid-run) is
// printed with its rank and ends the whole job, since the other ranks
// would otherwise wait for this one forever. Otherwise every rank is
// here: rank 0 prints the error the ranks agreed on, then all ranks agree
// on its exit status (rank 0's), pass a barrier and return it, so that
// mpirun or srun, whichever rank exits first, reports that status and
// never kills a rank that is still ending.
func (w *world) finish(err error, stderr io.Writer) error {
	if w.comm == nil || w.comm.Size() == 1 {
		return err
	}
	var x *exitError // a job's outcome, decided after every rank ended it
	if err != nil && err != errSilent && !jobs.Agreed(err) && !errors.As(err, &x) {
		fmt.Fprintf(stderr, "star: rank %d: %v (aborting all ranks)\n", w.rank, err)
		w.comm.Abort(1)
		return errSilent
	}
	code := exitCode(err)
	if w.rank == 0 && err != nil && err.Error() != "" {
		fmt.Fprintf(stderr, "star: %v\n", err)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(code))
	if serr := w.comm.Bcast(b[:], 0); serr != nil {
		fmt.Fprintf(stderr, "star: rank %d: agreeing on the exit status: %v (aborting all ranks)\n", w.rank, serr)
		w.comm.Abort(1)
		return errSilent
	}
	if serr := w.comm.Barrier(); serr != nil {
		fmt.Fprintf(stderr, "star: rank %d: final barrier: %v (aborting all ranks)\n", w.rank, serr)
		w.comm.Abort(1)
		return errSilent
	}
	if code = int(binary.LittleEndian.Uint32(b[:])); code == 0 {
		return nil
	}
	return &exitError{code: code} // already printed by rank 0
}

// Exit codes.
const (
	exitError1        = 1 // an error: bad input, a failed run
	exitFailedRecords = 2 // jobs run finished, some records or queries failed
	exitInterrupted   = 3 // jobs run stopped by SIGTERM/SIGINT; rerun to resume
	exitOutputBusy    = 4 // jobs run: another job is writing the output
	exitInputChanged  = 5 // jobs run: the input changed under results already written
)

// exitCode is the process status for err.
func exitCode(err error) int {
	var x *exitError
	var busy *jobs.BusyError
	var changed *jobs.ChangedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &x):
		return x.code
	case errors.Is(err, jobs.ErrInterrupted):
		return exitInterrupted
	case errors.As(err, &busy):
		return exitOutputBusy
	case errors.As(err, &changed):
		return exitInputChanged
	}
	return exitError1
}

// errSilent exits non-zero without printing (another rank reported it).
var errSilent = errors.New("")

// setup loads the model on every rank and, on rank 0, reads and tokenizes
// the input and runs more (if not nil); every rank then agrees that all of
// this worked.
func setup(c *cli.Context, w *world, more func(m *weights.Model) error) (*jobs.Engine, jobs.Tokens, jobs.Settings, error) {
	withPrompt := c.Command.Name != "run" && c.Command.Name != "bench" // jobs run reads records; bench makes its own
	var e *jobs.Engine
	var t jobs.Tokens
	s, err := settings(c)
	if err == nil && c.Int("threads") < 0 {
		err = fmt.Errorf("--threads %d must be positive", c.Int("threads"))
	}
	var m *weights.Model
	if err == nil {
		m, err = loadModel(c, w.local)
	}
	if err == nil && w.rank == 0 && c.Command.Name != "bench" {
		if err = needTokenizer(m); err == nil {
			if withPrompt {
				var in jobs.Input
				if in, err = readInput(c, limitFor(m, 1)); err == nil {
					t, err = jobs.Tokenize(m.Tokenizer, in)
				}
			}
			if err == nil && more != nil {
				err = more(m)
			}
		}
	}
	fp := ""
	if m != nil {
		fp = m.Fingerprint
	}
	if err := jobs.Handshake(w.comm, err, fp, version, hostLabel()); err != nil {
		if m != nil {
			m.Close()
		}
		return nil, t, s, err
	}
	threads := c.Int("threads")
	if threads == 0 {
		threads = max(runtime.NumCPU()/w.local, 1)
	}
	var comp layers.Compute = layers.NewCPU(threads)
	if c.Command.Name == "bench" {
		comp = &jobs.Counting{Compute: comp}
	}
	e = jobs.NewEngine(m, comp)
	e.Comm, e.Merge, e.LocalRanks = w.comm, s.Merge, w.local
	if w.wd != nil {
		e.Phase = w.wd.SetPhase
	}
	return e, t, s, nil
}

func cmdRun(c *cli.Context, stdout, stderr io.Writer) (err error) {
	if c.Args().Len() > 0 {
		return fmt.Errorf("unexpected argument %q: the prompt is given with --prompt FILE", c.Args().First())
	}
	w, err := joinWorld(c, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	defer func() { err = w.finish(err, stderr) }()
	e, t, s, err := setup(c, w, nil)
	if err != nil {
		return err
	}
	defer e.W.Close()
	if w.rank == 0 {
		e.Log = stderr // warnings and a long phase 1's progress
	}
	verbose := c.Bool("verbose") && w.rank == 0
	if verbose {
		fmt.Fprintf(stderr, "star: %s, context %d tokens, query %d tokens, attention %s, %d rank(s), %d thread(s) per rank\n",
			filepath.Base(e.W.Path), len(t.Context), len(t.Query), s.Attention, e.Ranks(), e.M.C.Threads())
	}
	var stream io.Writer
	if !c.Bool("json") && w.rank == 0 {
		stream = stdout
	}
	res, err := e.Generate(t, s, stream)
	if err != nil {
		return err
	}
	if w.rank != 0 {
		return nil
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
}

// printRankStats writes the per-rank table of a distributed run.
func printRankStats(w io.Writer, st []jobs.RankStats) {
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

func cmdScore(c *cli.Context, stdout, stderr io.Writer) (err error) {
	if c.IsSet("continuation-file") && c.IsSet("continuation") {
		return errors.New("give either --continuation-file or --continuation, not both")
	}
	if !c.IsSet("continuation-file") && !c.IsSet("continuation") {
		return errors.New("nothing to score: pass --continuation-file FILE")
	}
	w, err := joinWorld(c, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	defer func() { err = w.finish(err, stderr) }()
	var ids []int
	e, t, s, err := setup(c, w, func(m *weights.Model) error {
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
	})
	if err != nil {
		return err
	}
	defer e.W.Close()
	if w.rank == 0 {
		e.Log = stderr // a long phase 1's progress
	}
	res, err := e.Score(t, ids, s)
	if err != nil {
		return err
	}
	if w.rank != 0 {
		return nil
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
}

func cmdTokenize(c *cli.Context, stdout io.Writer) error {
	var tok tokenizer.Tokenizer
	switch {
	case c.IsSet("tokenizer"):
		t, err := weights.LoadTokenizer(c.String("tokenizer"))
		if err != nil {
			return err
		}
		tok = t
	default:
		m, err := loadModel(c, 1)
		if err != nil {
			return err
		}
		defer m.Close()
		if err := needTokenizer(m); err != nil {
			return err
		}
		tok = m.Tokenizer
	}
	var text string
	switch {
	case c.IsSet("text") && c.IsSet("file"):
		return errors.New("give either --text or --file, not both")
	case c.IsSet("text"):
		text = c.String("text")
	case c.IsSet("file"):
		var err error
		if text, err = readText(c.String("file"), "text file", textLimit{}); err != nil {
			return err
		}
	default:
		return errors.New("nothing to tokenize: pass --text TEXT or --file FILE")
	}
	if c.Bool("decode") {
		ids, err := parseIDs(text, tok.VocabSize())
		if err != nil {
			return err
		}
		out := tok.Decode(ids)
		if c.Bool("json") {
			return json.NewEncoder(stdout).Encode(out)
		}
		_, err = fmt.Fprintln(stdout, out)
		return err
	}
	ids, err := tok.Encode(text, c.Bool("bos"))
	if err != nil {
		return err
	}
	// Written as they are formatted: a long text's ids are not built into
	// one string first (as JSON: the same bytes json.Marshal gives).
	sep, open, end := " ", "", "\n"
	if c.Bool("json") {
		sep, open, end = ",", "[", "]\n"
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	bw.WriteString(open)
	var num []byte
	for i, id := range ids {
		if i > 0 {
			bw.WriteString(sep)
		}
		num = strconv.AppendInt(num[:0], int64(id), 10)
		bw.Write(num)
	}
	bw.WriteString(end)
	return bw.Flush()
}

// parseIDs reads ids separated by spaces, commas or brackets (a JSON array works).
func parseIDs(s string, vocab int) ([]int, error) {
	f := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '[' || r == ']' || r == '\r'
	})
	ids := make([]int, 0, len(f))
	for _, x := range f {
		id, err := strconv.Atoi(x)
		if err != nil {
			return nil, fmt.Errorf("--decode: %q is not a token id", x)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("--decode: id %d is outside the vocabulary [0, %d)", id, vocab)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func cmdInspect(c *cli.Context, stdout io.Writer) error {
	t0 := time.Now()
	m, err := loadModel(c, 1)
	if err != nil {
		return err
	}
	defer m.Close()
	ctxN := c.Int("context")
	if ctxN <= 0 {
		ctxN = m.Config.SeqLen
	}
	ranks := c.Int("ranks")
	if ranks <= 0 {
		return fmt.Errorf("--ranks %d must be positive", ranks)
	}
	rep, err := jobs.Inspect(m, ctxN, c.Int("block-size"), c.Int("anchor-size"), ranks)
	if err != nil {
		return err
	}
	rep.LoadSeconds = time.Since(t0).Seconds()
	if c.Bool("json") {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.Print(stdout)
	return nil
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func cmdJobsRun(c *cli.Context, stdout, stderr io.Writer) (err error) {
	if c.String("input") == "" || c.String("output") == "" {
		return errors.New("jobs run needs --input FILE (records) and --output FILE (results)")
	}
	// Every rank notes a signal from the start; rank 0 acts on it after
	// the query in flight (or at once while it waits for input) and tells
	// the others to end. The handler stays until the process exits: a
	// late SIGTERM must not kill a rank that is ending.
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
			if jobs.Hook != nil { // tests: the stop is noted
				jobs.Hook(-1, "signal")
			}
		}
	}()
	w, err := joinWorld(c, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	defer func() { err = w.finish(err, stderr) }()
	e, _, s, err := setup(c, w, func(*weights.Model) error {
		if c.String("input") != "-" {
			if _, err := os.Stat(c.String("input")); err != nil {
				return fmt.Errorf("input: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer e.W.Close()
	e.KVDir = c.String("kv-dir")
	if c.Bool("verbose") || w.rank == 0 {
		e.Log = stderr
	}
	s.MaxTokens, s.Temperature, s.TopP, s.Seed = c.Int("max-tokens"), c.Float64("temperature"), c.Float64("top-p"), c.Uint64("seed")
	s.Stop = c.StringSlice("stop")
	term := false
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			term = true
		}
	}
	o := jobs.BatchOptions{
		Input: c.String("input"), InputFormat: c.String("input-format"), Output: c.String("output"),
		Settings: s, Chat: c.Bool("chat"), Logprobs: c.Bool("logprobs"),
		RedoChanged: c.Bool("redo-changed"), ContextRoot: c.String("context-root"),
		Progress: stderr, Terminal: term, Interval: c.Duration("progress-interval"), Stop: stop,
	}
	sum, err := e.RunBatch(o)
	if w.rank != 0 {
		return err
	}
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

func cmdBench(c *cli.Context, stdout, stderr io.Writer) (err error) {
	ctxs, err := parseInts(c.String("context"), "--context")
	if err != nil {
		return err
	}
	var atts []string
	for _, a := range strings.Split(c.String("attention"), ",") {
		a = strings.TrimSpace(a)
		if a != "star" && a != "ring" && a != "global" {
			return fmt.Errorf("--attention %q: use star, ring and/or global, comma-separated", a)
		}
		atts = append(atts, a)
	}
	var anchors []int // nil: the block size
	if c.IsSet("anchor-size") {
		for _, f := range strings.Split(c.String("anchor-size"), ",") {
			a, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || a < 0 || a > weights.MaxContextLength {
				return fmt.Errorf("--anchor-size: %q is not a size in tokens (0 or more, comma-separated)", f)
			}
			anchors = append(anchors, a)
		}
	}
	if c.Int("query-tokens") < 1 {
		return fmt.Errorf("--query-tokens %d: the query needs at least 1 token", c.Int("query-tokens"))
	}
	for _, f := range []string{"decode-tokens", "score-tokens"} {
		if c.Int(f) < 0 {
			return fmt.Errorf("--%s %d: use 0 or more", f, c.Int(f))
		}
	}
	if c.String("load-format") != "dummy" && c.String("model") == "" && defaultModel() == "" {
		return errors.New("bench needs --model PATH, or --load-format dummy --model-config FILE")
	}
	w, err := joinWorld(c, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	defer func() { err = w.finish(err, stderr) }()
	e, _, s, err := setup(c, w, nil)
	if err != nil {
		return err
	}
	defer e.W.Close()
	if w.rank == 0 {
		e.Log = stderr // a long phase 1's progress
	}
	o := jobs.BenchOptions{Contexts: ctxs, Attentions: atts, BlockSize: s.BlockSize, AnchorSizes: anchors,
		QueryTokens: c.Int("query-tokens"), DecodeTokens: c.Int("decode-tokens"), ScoreTokens: c.Int("score-tokens"), Seed: 1}
	if w.rank == 0 {
		o.Progress = stderr
		threads := e.M.C.Threads()
		o.SgemmGFLOPS = func(m, n, k int) float64 { return benchref.GFLOPS(m, n, k, threads) }
		o.ReadBandwidth = func() float64 { return benchref.ReadBandwidth(threads, 512<<20) }
	}
	var rows []jobs.BenchRow
	err = e.Bench(o, func(r jobs.BenchRow) {
		rows = append(rows, r)
		if c.Bool("json") {
			json.NewEncoder(stdout).Encode(r)
		}
	})
	if err != nil {
		return err
	}
	if w.rank == 0 && !c.Bool("json") {
		jobs.PrintBenchTable(stdout, rows)
	}
	return nil
}

func cmdSlurmScript(c *cli.Context, stdout io.Writer) error {
	o := slurm.DefaultScriptOptions()
	o.Nodes, o.NTasksPerNode, o.GPUsPerNode, o.CPUsPerTask = c.Int("nodes"), c.Int("ntasks-per-node"), c.Int("gpus-per-node"), c.Int("cpus-per-task")
	o.Time, o.Partition, o.Account, o.JobName, o.Output = c.String("time"), c.String("partition"), c.String("account"), c.String("job-name"), c.String("output")
	o.Launcher, o.SignalBefore, o.Requeue = c.String("launcher"), c.Int("signal-before"), !c.Bool("no-requeue")
	o.StarPath = c.String("star")
	if o.StarPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find this binary's path: pass --star PATH")
		}
		o.StarPath = exe
	}
	o.Command = c.Args().Slice()
	if len(o.Command) == 0 {
		return errors.New("no star command: give it after --, e.g. star slurm script --ntasks-per-node 4 -- jobs run --model M --input in.jsonl --output out.jsonl")
	}
	if n := c.Int("context-tokens"); n > 0 {
		if err := slurm.CheckRanks(o.Ranks(), n, c.Int("block-size")); err != nil {
			return err
		}
	}
	script, err := slurm.Script(o)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, script)
	return err
}
