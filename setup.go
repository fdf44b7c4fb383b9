package main

import (
	"io"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
)

// testHook, when a test sets it, is called by every rank at each stage of
// a run (rank.Engine.Hook) and with rank -1 when `jobs run` notes a
// signal.
var testHook func(rank int, stage string)

// rankSetup says what a command needs on its ranks.
type rankSetup struct {
	merge      rank.MergeMode
	readPrompt bool   // rank 0 reads and tokenizes --prompt and --query
	tokenizer  bool   // rank 0 needs the model's tokenizer
	counting   bool   // count the work of the compute backend (bench)
	kv         string // --kv-dtype choice (kvDType): the engine's K/V dtype ("": auto)
	// more is rank 0's own reading of its input, before the ranks agree
	// (nil: none).
	more func(m *weights.Model) error
}

// rankRun is a command's run on this rank.
type rankRun struct {
	w *world
	e *jobs.Engine
	t jobs.Tokens // rank 0, with readPrompt: the prompt's tokens
}

// onRanks runs body on every rank of the run: MPI is set up and torn down
// once, every rank loads the model, rank 0 reads its input, every rank
// agrees that all of it worked, and the run ends the same way on every
// rank (world.finish).
func onRanks(c *cli.Context, stderr io.Writer, o rankSetup, body func(r *rankRun) error) (err error) {
	w, err := joinWorld(c, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	defer func() { err = w.finish(err, stderr) }()
	r, err := setup(c, w, o, stderr)
	if err != nil {
		return err
	}
	defer r.e.W.Close()
	defer r.e.Backend().Close()
	defer func() {
		if r.e.Exchange != nil {
			r.e.Exchange.Close()
		}
	}()
	if w.rank == 0 {
		r.e.Log = stderr // warnings and a long phase 1's progress
	}
	return body(r)
}

// setup loads the model on every rank and, on rank 0, reads what the
// command needs; every rank then agrees that all of this worked.
func setup(c *cli.Context, w *world, o rankSetup, stderr io.Writer) (*rankRun, error) {
	r := &rankRun{w: w}
	device, err := deviceChoice(c.String("device"))
	if err != nil {
		return nil, err
	}
	m, err := loadModel(c, loadOptions{local: w.local, checkMemory: true})
	if err == nil && w.rank == 0 {
		err = readRank0(c, m, o, r)
	}
	fp := ""
	if m != nil {
		fp = m.Fingerprint
	}
	if err := rank.Handshake(w.comm, err, fp, version, hostLabel()); err != nil {
		if m != nil {
			m.Close()
		}
		return nil, err
	}
	threads := c.Int("threads")
	if threads == 0 {
		threads = max(runtime.NumCPU()/w.local, 1)
	}
	e := jobs.NewCPUEngine(m, threads, o.counting)
	e.Comm, e.Merge, e.LocalRanks, e.Hook = w.comm, o.merge, w.local, testHook
	if e.KVDType, err = rank.ResolveKVDType(o.kv, m); err != nil {
		m.Close()
		return nil, err
	}
	if w.wd != nil {
		e.Phase = w.wd.SetPhase
	}
	var log io.Writer
	if w.rank == 0 {
		log = stderr
	}
	b, err := openBackend(device, e.M, w.localRank(), w.local, log)
	if err := rank.Agree(w.comm, err, hostLabel()); err != nil {
		if b != nil {
			b.Close()
		}
		m.Close()
		return nil, err
	}
	e.B = b
	if w.comm != nil && w.comm.Size() > 1 {
		if e.Exchange, err = ncclExchange(w.comm, b, hostLabel(), log); err != nil {
			b.Close()
			m.Close()
			return nil, err
		}
	}
	r.e = e
	return r, nil
}

// readRank0 is rank 0's reading of the command's input.
func readRank0(c *cli.Context, m *weights.Model, o rankSetup, r *rankRun) error {
	if !o.tokenizer && !o.readPrompt {
		return nil
	}
	if err := needTokenizer(m); err != nil {
		return err
	}
	if o.readPrompt {
		in, err := readInput(c, limitFor(m, 1))
		if err != nil {
			return err
		}
		if r.t, err = jobs.Tokenize(m.Tokenizer, in); err != nil {
			return err
		}
	}
	if o.more != nil {
		return o.more(m)
	}
	return nil
}
