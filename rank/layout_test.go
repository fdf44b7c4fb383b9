package rank

import (
	"fmt"
	"testing"
)

func TestLayout(t *testing.T) {
	cases := []struct {
		n, b, a, p int
		ranks      []int // block index -> rank
		lastLen    int
	}{
		{10, 10, 10, 1, []int{0}, 10},
		{10, 4, 2, 1, []int{0, 0, 0}, 2},
		{10, 4, 4, 2, []int{0, 0, 1}, 2},
		{16, 4, 4, 4, []int{0, 1, 2, 3}, 4},
		{9, 4, 1, 8, []int{0, 1, 2}, 1}, // more ranks than blocks: ranks 3..7 idle
		{20, 2, 1, 3, []int{0, 0, 0, 0, 1, 1, 1, 2, 2, 2}, 2},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("n%d_b%d_p%d", c.n, c.b, c.p), func(t *testing.T) {
			l, err := NewLayout(c.n, c.b, c.a, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Blocks) != len(c.ranks) {
				t.Fatalf("%d blocks, want %d", len(l.Blocks), len(c.ranks))
			}
			covered := 0
			for i, b := range l.Blocks {
				if b.Index != i || b.Start != covered || b.Rank != c.ranks[i] {
					t.Fatalf("block %d = %+v, want index %d start %d rank %d", i, b, i, covered, c.ranks[i])
				}
				covered += b.Len
			}
			if covered != c.n || l.Blocks[len(l.Blocks)-1].Len != c.lastLen {
				t.Fatalf("blocks cover %d tokens (last %d), want %d (last %d)", covered, l.Blocks[len(l.Blocks)-1].Len, c.n, c.lastLen)
			}
			for r := c.p - 1; r > 0; r-- { // contiguous groups, non-increasing counts
				if len(l.Of(r)) > len(l.Of(r-1)) {
					t.Fatalf("rank %d holds more blocks than rank %d", r, r-1)
				}
			}
		})
	}
}

func TestLayoutErrors(t *testing.T) {
	for _, c := range []struct{ n, b, a, p int }{{0, 4, 1, 1}, {10, 0, 0, 1}, {10, 4, 5, 1}, {10, 4, -1, 1}, {10, 4, 1, 0}} {
		if _, err := NewLayout(c.n, c.b, c.a, c.p); err == nil {
			t.Errorf("NewLayout(%d, %d, %d, %d): no error", c.n, c.b, c.a, c.p)
		}
	}
}

// A rank encodes the anchor itself only when one of its blocks attends to
// it and it does not hold B_0 (whose first rows are the anchor's K/V).
func TestEncodesAnchor(t *testing.T) {
	for _, tc := range []struct {
		ranks, anchor int
		want          []bool // per rank
	}{
		{1, 4, []bool{false}},       // holds B_0
		{2, 4, []bool{false, true}}, // rank 1 holds blocks 2, 3
		{4, 4, []bool{false, true, true, true}},
		{2, 0, []bool{false, false}}, // no anchor
		{1, 8, []bool{false}},        // anchor = block length (the default): B_0's rows are the anchor
		{2, 8, []bool{false, true}},
	} {
		lay, err := NewLayout(32, 8, tc.anchor, tc.ranks)
		if err != nil {
			t.Fatal(err)
		}
		for r, want := range tc.want {
			if got := lay.EncodesAnchor(r); got != want {
				t.Errorf("%d ranks, anchor %d: rank %d encodes the anchor = %v, want %v", tc.ranks, tc.anchor, r, got, want)
			}
		}
	}
}
