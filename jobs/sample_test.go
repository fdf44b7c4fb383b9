package jobs

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// Top-p keeps the smallest set of most likely tokens whose probability
// reaches p, ties broken by id; a cumulative probability exactly equal to
// p closes the set. Equal logits make the probabilities exact in binary
// (1/4 each), so the boundary is tested exactly.
func TestSamplerTopP(t *testing.T) {
	cases := []struct {
		logits []float32
		temp   float64
		topP   float64
		want   []int // the ids that may be drawn
	}{
		{[]float32{0, 0, 0, 0}, 1, 0.5, []int{0, 1}},     // 1/4 + 1/4 = p: the set closes at id 1
		{[]float32{0, 0, 0, 0}, 1, 0.75, []int{0, 1, 2}}, // 3/4 = p
		{[]float32{0, 0, 0, 0}, 1, 0.5001, []int{0, 1, 2}},
		{[]float32{0, 0, 0, 0}, 1, 1, []int{0, 1, 2, 3}},
		{[]float32{0, 0, 0, 0}, 1, 0.25, []int{0}},
		{[]float32{-1, 2, 0, 1}, 1, 0.5, []int{1}},       // p(id 1) = 0.64
		{[]float32{-1, 2, 0, 1}, 1, 0.9, []int{1, 3, 2}}, // 0.64, 0.88, then 0.97
		{[]float32{-1, 2, 0, 1}, 0.5, 0.9, []int{1, 3}},  // sharper: 0.87, 0.98
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v_T%g_p%g", c.logits, c.temp, c.topP), func(t *testing.T) {
			s := NewSampler(c.temp, c.topP, 11)
			seen := map[int]int{}
			for i := 0; i < 400; i++ {
				id, lp := s.Sample(c.logits)
				seen[id]++
				// the log-probability is the model's, before temperature and nucleus
				var z float64
				for _, l := range c.logits {
					z += math.Exp(float64(l))
				}
				if want := float64(c.logits[id]) - math.Log(z); math.Abs(lp-want) > 1e-6 {
					t.Fatalf("id %d: logprob %g, want %g (tolerance 1e-6)", id, lp, want)
				}
			}
			var got []int
			for id := range seen {
				got = append(got, id)
			}
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("drew ids %v (counts %v) in 400 samples, want exactly %v", got, seen, want)
			}
		})
	}
}

// Greedy (temperature 0) takes the first of equal maxima and ignores top-p.
func TestSamplerGreedy(t *testing.T) {
	for _, c := range []struct {
		logits []float32
		want   int
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{5, 5, 1}, 0},
		{[]float32{-3, -2, -2}, 1},
	} {
		id, _ := NewSampler(0, 0.1, 1).Sample(c.logits)
		if id != c.want {
			t.Errorf("greedy on %v: %d, want %d", c.logits, id, c.want)
		}
	}
}
