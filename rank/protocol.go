package rank

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/collective"
)

// The SPMD protocol. Every rank runs the same code; rank 0 (the query host)
// reads and tokenizes the input and tells the others what to do:
//
//  1. handshake: every rank reports whether it loaded the model, and its
//     model fingerprint and binary version (AllgatherBytes);
//  2. plan: rank 0 broadcasts the layout, the anchor, the K/V dtype and the phase-2 tokens
//     (or an error that ends the run on every rank);
//  3. blocks: rank 0 sends each rank the tokens of its blocks;
//  4. phase 1 on every rank, then an agreement that every rank succeeded;
//  5. phase 2: every rank runs the same tokens through every layer, partial
//     attentions merged by the Combiner; rank 0 samples and broadcasts each
//     next token (and whether to stop);
//  6. stats: every rank's timings and traffic reach rank 0.

// RankError is an error reported by one or more ranks, agreed on by all.
type RankError struct {
	Msgs []string // "rank R: message", in rank order
}

func (e *RankError) Error() string { return strings.Join(e.Msgs, "; ") }

// agreedError is an error every rank knows of: rank 0 found it and shared
// it in the plan. Remote is true on the ranks that only received it.
type agreedError struct {
	msg    string
	remote bool
	cause  error // rank 0's own error, when it shared one (errors.Is/As see it)
}

func (e *agreedError) Error() string {
	if e.remote {
		return "rank 0 reported: " + e.msg
	}
	return e.msg
}

func (e *agreedError) Unwrap() error { return e.cause }

// Shared marks rank 0's err as known to every rank: the end message of a
// run carried it, or rank 0 found it before telling the others anything
// about the work it concerns (they stay in step).
func Shared(err error) error {
	if err == nil || Agreed(err) {
		return err
	}
	return &agreedError{msg: err.Error(), cause: err}
}

// Agreed tells whether every rank of the run knows of err, so that all
// ranks can end cleanly; an error that is not agreed (one rank failed
// alone mid-run) must abort the job instead, or the others would wait.
func Agreed(err error) bool {
	var a *agreedError
	var r *RankError
	return errors.As(err, &a) || errors.As(err, &r)
}

// status is what each rank says in a handshake or agreement.
type status struct {
	Err         string `msgpack:"err"`
	Fingerprint string `msgpack:"fp"`
	Version     string `msgpack:"ver"`
	Host        string `msgpack:"host"`
}

// agree exchanges every rank's outcome so that all ranks see the same
// verdict: nil only if no rank failed and (when fp is set) all ranks hold
// the same model and binary.
func agree(comm collective.Comm, local error, st status) error {
	if comm == nil || comm.Size() == 1 {
		return local
	}
	if local != nil {
		st.Err = local.Error()
	}
	b, err := msgpack.Marshal(&st)
	if err != nil {
		return err
	}
	all, err := comm.AllgatherBytes(b)
	if err != nil {
		return fmt.Errorf("exchange rank status: %w", err)
	}
	var msgs []string
	sts := make([]status, len(all))
	for r, m := range all {
		if err := msgpack.Unmarshal(m, &sts[r]); err != nil {
			msgs = append(msgs, fmt.Sprintf("rank %d: unreadable status message (%v): are all ranks running the same star binary?", r, err))
			continue
		}
		if sts[r].Err != "" {
			where := ""
			if sts[r].Host != "" {
				where = " on " + sts[r].Host
			}
			msgs = append(msgs, fmt.Sprintf("rank %d%s: %s", r, where, sts[r].Err))
		}
	}
	if len(msgs) == len(sts) && len(sts) > 1 {
		same := true
		for r := range sts {
			same = same && sts[r].Err == sts[0].Err
		}
		if same {
			msgs = []string{fmt.Sprintf("all %d ranks: %s", len(sts), sts[0].Err)}
		}
	}
	if len(msgs) == 0 && st.Fingerprint != "" {
		for r := 1; r < len(sts); r++ {
			if sts[r].Fingerprint != sts[0].Fingerprint || sts[r].Version != sts[0].Version {
				msgs = append(msgs, fmt.Sprintf("rank %d holds model %s with star %s but rank 0 holds model %s with star %s: every rank must run the same binary on the same model file",
					r, sts[r].Fingerprint, sts[r].Version, sts[0].Fingerprint, sts[0].Version))
			}
		}
	}
	if len(msgs) > 0 {
		return &RankError{Msgs: msgs}
	}
	return nil
}

// Agree is an agreement on one step every rank took (opening its device):
// local is this rank's outcome; a failure on any rank becomes the same
// RankError on all, naming the ranks and their hosts.
func Agree(comm collective.Comm, local error, host string) error {
	return agree(comm, local, status{Host: host})
}

// Handshake is the start-up agreement: every rank reports whether it
// loaded its model (loadErr) and its fingerprint; a failure or mismatch on
// any rank becomes the same RankError on all.
func Handshake(comm collective.Comm, loadErr error, fingerprint, version, host string) error {
	return agree(comm, loadErr, status{Fingerprint: fingerprint, Version: version, Host: host})
}

// bcastBytes sends rank 0's b to every rank (length first).
func bcastBytes(comm collective.Comm, b []byte) ([]byte, error) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	if err := comm.Bcast(n[:], 0); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size > 1<<34 {
		return nil, fmt.Errorf("broadcast of %d bytes refused: corrupt length", size)
	}
	if comm.Rank() != 0 {
		b = make([]byte, size)
	}
	if err := comm.Bcast(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

const tagBlocks = 17

// shareBlocks sends each rank the tokens of its blocks (ctx on rank 0) and
// returns this rank's.
func shareBlocks(comm collective.Comm, lay Layout, ctx []int) ([][]int, error) {
	me := 0
	if comm != nil {
		me = comm.Rank()
	}
	if me == 0 {
		var mine [][]int
		for r := 0; r < lay.Ranks; r++ {
			var toks [][]int
			for _, b := range lay.Of(r) {
				toks = append(toks, ctx[b.Start:b.Start+b.Len])
			}
			if r == 0 {
				mine = toks
				continue
			}
			b, err := msgpack.Marshal(toks)
			if err != nil {
				return nil, err
			}
			if err := comm.SendBytes(b, r, tagBlocks); err != nil {
				return nil, fmt.Errorf("send blocks to rank %d: %w", r, err)
			}
		}
		return mine, nil
	}
	b, err := comm.RecvBytes(0, tagBlocks)
	if err != nil {
		return nil, fmt.Errorf("receive blocks from rank 0: %w", err)
	}
	var toks [][]int
	if err := msgpack.Unmarshal(b, &toks); err != nil {
		return nil, fmt.Errorf("decode blocks from rank 0: %w", err)
	}
	return toks, nil
}

// shareNext broadcasts rank 0's decision after a phase-2 step: the next
// token and whether to go on.
func shareNext(comm collective.Comm, id int, more bool) (int, bool, error) {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], uint32(int32(id)))
	if more {
		b[4] = 1
	}
	if err := comm.Bcast(b[:], 0); err != nil {
		return 0, false, fmt.Errorf("broadcast next token: %w", err)
	}
	return int(int32(binary.LittleEndian.Uint32(b[:]))), b[4] == 1, nil
}

// RankStats is one rank's account of a run.
type RankStats struct {
	Rank      int     `json:"rank" msgpack:"rank"`
	Blocks    int     `json:"blocks" msgpack:"blocks"`
	Tokens    int     `json:"block_tokens" msgpack:"block_tokens"`
	Phase1    float64 `json:"phase1_s" msgpack:"phase1_s"`
	Phase2    float64 `json:"phase2_s" msgpack:"phase2_s"`
	BytesSent int64   `json:"bytes_sent" msgpack:"bytes_sent"`
	Phase2B   int64   `json:"phase2_bytes_sent" msgpack:"phase2_bytes_sent"`
	Steps     int     `json:"phase2_tokens" msgpack:"phase2_tokens"` // tokens run through phase 2
	KVBytes   int64   `json:"kv_bytes" msgpack:"kv_bytes"`
	KVLoaded  bool    `json:"kv_loaded,omitempty" msgpack:"kv_loaded"` // phase 1 read from --kv-dir
	// Device is where the rank computed ("cpu", "cuda:0 NVIDIA H200");
	// Exchange how its phase-2 partials were merged with the other
	// ranks' ("mpi-gather" from the host, "nccl" between GPUs).
	Device   string `json:"device,omitempty" msgpack:"device"`
	Exchange string `json:"exchange,omitempty" msgpack:"exchange"`
}

// gatherStats collects every rank's stats on every rank (rank order).
func gatherStats(comm collective.Comm, mine RankStats) ([]RankStats, error) {
	if comm == nil || comm.Size() == 1 {
		return []RankStats{mine}, nil
	}
	b, err := msgpack.Marshal(&mine)
	if err != nil {
		return nil, err
	}
	all, err := comm.AllgatherBytes(b)
	if err != nil {
		return nil, fmt.Errorf("gather rank stats: %w", err)
	}
	out := make([]RankStats, len(all))
	for r, m := range all {
		if err := msgpack.Unmarshal(m, &out[r]); err != nil {
			return nil, fmt.Errorf("decode stats of rank %d: %w", r, err)
		}
	}
	return out, nil
}
