package eval

import (
	"fmt"

	"github.com/star-attn/star/rank"
)

// Setting is one way of attending a run: an exact mode (global or ring),
// or Star with a block and an anchor size.
type Setting struct {
	Attention rank.Attention
	Block     int // Star's block size; 0: the context divided evenly over the ranks
	Anchor    int // Star's anchor size; -1: the block size
}

// String names the setting for people.
func (s Setting) String() string {
	if s.Attention != rank.Star {
		return string(s.Attention)
	}
	b, a := s.sizes("context/ranks", "block")
	return fmt.Sprintf("star block %s anchor %s", b, a)
}

// slug names the setting in file names.
func (s Setting) slug() string {
	if s.Attention != rank.Star {
		return string(s.Attention)
	}
	b, a := s.sizes("auto", "auto")
	return fmt.Sprintf("star-b%s-a%s", b, a)
}

// sizes writes Star's block and anchor sizes, or the given words for the
// defaults.
func (s Setting) sizes(autoBlock, autoAnchor string) (b, a string) {
	b, a = autoBlock, autoAnchor
	if s.Block > 0 {
		b = fmt.Sprint(s.Block)
	}
	if s.Anchor >= 0 {
		a = fmt.Sprint(s.Anchor)
	}
	return b, a
}

// rank is the setting as the engine takes it, for ranks ranks.
func (s Setting) rank(ranks int) rank.Settings {
	r := rank.Settings{Attention: s.Attention, BlockSize: s.Block, AnchorSize: s.Anchor, Ranks: ranks}
	if s.Attention != rank.Star {
		r.BlockSize, r.AnchorSize = 0, -1
	}
	r.Defaults()
	return r
}

// resolved are the block and anchor sizes the setting gives a context of
// n tokens on ranks ranks (0, 0 for the exact modes).
func (s Setting) resolved(n, ranks int) (block, anchor int) {
	if s.Attention != rank.Star || n <= 0 {
		return 0, 0
	}
	rs := s.rank(ranks)
	lay, err := rs.Layout(n)
	if err != nil {
		return s.Block, s.Anchor
	}
	return lay.MaxBlockLen(), lay.AnchorSize
}

// Settings are the runs of an evaluation: the exact mode first (its
// results are the 100%), then Star with every block size and every
// anchor size not larger than it. modes may hold at most one exact mode.
// blocks nil: the context divided over the ranks; anchors nil: the block
// size. Pairs whose anchor exceeds the block are left out (notes says
// which); none left is an error.
func Settings(modes []rank.Attention, blocks, anchors []int) (out []Setting, notes []string, err error) {
	if err := CheckModes(modes); err != nil {
		return nil, nil, err
	}
	if len(blocks) == 0 {
		blocks = []int{0}
	}
	if len(anchors) == 0 {
		anchors = []int{-1}
	}
	for _, m := range modes {
		if m != rank.Star {
			out = append(out, Setting{Attention: m, Anchor: -1})
		}
	}
	for _, m := range modes {
		if m != rank.Star {
			continue
		}
		n := len(out)
		for _, b := range blocks {
			for _, a := range anchors {
				if b > 0 && a > b {
					notes = append(notes, fmt.Sprintf("block %d with anchor %d left out: the anchor must fit in the first block", b, a))
					continue
				}
				out = append(out, Setting{Attention: rank.Star, Block: b, Anchor: a})
			}
		}
		if len(out) == n {
			return nil, notes, fmt.Errorf("no Star setting to run: every --anchor-size exceeds every --block-size")
		}
	}
	return out, notes, nil
}

// CheckModes refuses an --attention list an evaluation cannot use: a
// mode named twice, or two exact modes (star,global or star,ring: one
// exact mode is the 100%).
func CheckModes(modes []rank.Attention) error {
	if len(modes) == 0 {
		return fmt.Errorf("--attention: give star and one exact mode, e.g. star,global (or star,ring under mpirun)")
	}
	seen := map[rank.Attention]bool{}
	exact := 0
	for _, m := range modes {
		if seen[m] {
			return fmt.Errorf("--attention: %s is named twice", m)
		}
		seen[m] = true
		if m.Exact() {
			exact++
		}
	}
	if exact > 1 {
		return fmt.Errorf("--attention: give one exact mode (global or ring), not both: its results are the 100%%")
	}
	return nil
}
