package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

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

// loadOptions say how a command loads its model.
type loadOptions struct {
	local     int  // ranks on this node (their memory is shared)
	shapeOnly bool // dummy weights: shapes and sizes only, nothing allocated (inspect)
	// checkMemory refuses weights that do not fit the node's memory
	// before they are paged in (commands that compute).
	checkMemory bool
}

// loadModel loads --model, or builds --load-format dummy weights.
func loadModel(c *cli.Context, o loadOptions) (*weights.Model, error) {
	local := max(o.local, 1)
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
		if o.shapeOnly {
			m, err = weights.DummyShape(cfg, dt) // sizes only: nothing allocated
		} else {
			var n int64
			if n, err = weights.DummyBytes(cfg, dt); err == nil {
				advice := "use a smaller --model-config or fewer ranks per node"
				if dt == weights.F32 {
					advice = "use --dtype bf16, a smaller --model-config or fewer ranks per node"
				}
				err = rank.CheckWeightMemory(n, false, local, fmt.Sprintf("dummy %v weights of %s", dt, path), advice)
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
	if o.checkMemory {
		opts.CheckSize = func(n int64) error { // before the weights are paged in
			return rank.CheckWeightMemory(n, true, local, "weights of "+filepath.Base(path), "use a smaller model or a machine with more memory")
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
