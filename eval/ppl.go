package eval

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/rank"
)

// Window is one perplexity window: the model reads BOS and n tokens of
// the text, then k tokens are scored. Phase 1 encodes BOS and the first
// n-1 tokens (n tokens: blocks of the requested size line up with it);
// the n-th is the query, as `star score` treats a one-paragraph prompt.
type Window struct {
	Context []int // BOS + n-1 tokens
	Query   []int // the n-th token
	Cont    []int // k tokens, scored
}

// Windows cuts the tokens of a text (no BOS) into consecutive windows of
// n context tokens then k scored ones; at most max windows (0: as many
// as the text holds).
func Windows(ids []int, bos, n, k, max int) ([]Window, error) {
	if n < 1 || k < 1 {
		return nil, fmt.Errorf("a window needs at least 1 context and 1 scored token (got %d and %d)", n, k)
	}
	var out []Window
	for at := 0; at+n+k <= len(ids) && (max <= 0 || len(out) < max); at += n + k {
		w := ids[at : at+n+k]
		ctx := append([]int{bos}, w[:n-1]...)
		out = append(out, Window{Context: ctx, Query: w[n-1 : n], Cont: w[n:]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the file has %d tokens: one window needs %d (--context %d + --continuation %d)", len(ids), n+k, n, k)
	}
	return out, nil
}

// PPLRow is one setting's perplexity over the windows (one JSON line of
// `star eval ppl --json`): the mean negative log-likelihood per scored
// token, and its ratio to the exact mode's over the same windows.
type PPLRow struct {
	Attention    string   `json:"attention"`
	Block        int      `json:"block"`  // Star's block size (0: exact)
	Anchor       int      `json:"anchor"` // Star's anchor size (0: exact)
	Context      int      `json:"context"`
	Windows      int      `json:"windows"`
	ScoredTokens int      `json:"scored_tokens"`
	NLL          float64  `json:"nll"`
	NLLRatio     *float64 `json:"nll_ratio"` // to 6 decimals; null without an exact mode
	Perplexity   float64  `json:"perplexity"`
	Phase1       float64  `json:"phase1_s"` // total over the windows
	KVDType      string   `json:"kv_dtype"` // the K/V caches' element type
}

// Perplexity scores every window under every setting (exact first) on
// every rank: rank 0 leads with wins, the others follow (wins nil). Each
// setting's row comes back on rank 0 through emit as soon as it is done.
func Perplexity(e *jobs.Engine, wins []Window, settings []Setting, context int, progress io.Writer, emit func(PPLRow)) error {
	if e.Rank() != 0 {
		return e.Follow()
	}
	l := e.Lead()
	var exact float64
	for i, s := range settings {
		say(progress, "star eval: %d/%d %s: %d windows...\n", i+1, len(settings), s, len(wins))
		row, err := pplSetting(e, l, wins, s)
		if err != nil {
			if rank.Agreed(err) || !e.Distributed() {
				if _, serr := l.End(err); serr != nil {
					return serr
				}
				return rank.Shared(err)
			}
			return err // a local failure mid-run: the caller aborts the job
		}
		row.Context = context
		if i == 0 && s.Attention.Exact() {
			exact = row.NLL
		}
		if exact > 0 { // to 6 decimals: float rounding (1e-9 here) is not a difference
			row.NLLRatio = ptr(math.Round(row.NLL/exact*1e6) / 1e6)
		}
		emit(row)
	}
	_, err := l.End(nil)
	return err
}

// pplSetting scores the windows under one setting.
func pplSetting(e *jobs.Engine, l *rank.Leader, wins []Window, s Setting) (PPLRow, error) {
	row := PPLRow{Attention: string(s.Attention), Windows: len(wins), KVDType: layers.KVDTypeName(e.KVDType)}
	row.Block, row.Anchor = s.resolved(len(wins[0].Context), e.Ranks())
	rs := s.rank(e.Ranks())
	var sum float64
	for _, w := range wins {
		t0 := time.Now()
		p, err := e.PlanDoc(w.Context, rs)
		if err := l.Doc(w.Context, p, err); err != nil {
			return row, err
		}
		row.Phase1 += time.Since(t0).Seconds()
		lp, err := e.ScoreOpen(l, w.Query, w.Cont)
		if err != nil {
			return row, err
		}
		for _, x := range lp {
			sum -= x
		}
		row.ScoredTokens += len(lp)
		l.Drop()
	}
	row.NLL = sum / float64(row.ScoredTokens)
	row.Perplexity = math.Exp(row.NLL)
	return row, nil
}

// PrintPPL writes perplexity rows for people.
func PrintPPL(w io.Writer, rows []PPLRow) {
	fmt.Fprintf(w, "%-7s %-6s %-6s %-8s %-8s %-7s %-9s %-10s %s\n", "attn", "block", "anchor", "context", "windows", "scored", "nll", "ppl", "nll_ratio")
	for _, r := range rows {
		fmt.Fprintf(w, "%-7s %-6d %-6d %-8d %-8d %-7d %-9.5f %-10.4f %s\n", r.Attention, r.Block, r.Anchor, r.Context, r.Windows,
			r.ScoredTokens, r.NLL, r.Perplexity, opt(r.NLLRatio, "%.5f"))
	}
}
