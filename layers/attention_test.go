package layers_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/layerstest"
)

func TestAttentionMatchesNaive(t *testing.T) {
	cases := []struct {
		nq, nk int
		s      layers.AttnShape
		causal bool
	}{
		{1, 1, layers.AttnShape{1, 1, 4}, false},
		{3, 3, layers.AttnShape{4, 2, 8}, true},
		{5, 200, layers.AttnShape{8, 2, 16}, false}, // several key tiles
		{70, 70, layers.AttnShape{4, 4, 8}, true},   // causal across tiles
		{4, 130, layers.AttnShape{6, 3, 8}, true},   // queries at the end of a longer cache
		{2, 0, layers.AttnShape{2, 1, 4}, false},    // no keys: lse -Inf
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(fmt.Sprintf("nq%d_nk%d_h%d_kv%d_causal%v", c.nq, c.nk, c.s.H, c.s.HKV, c.causal), func(t *testing.T) {
			q := layerstest.RandSlice(r, c.nq*c.s.H*c.s.D, 2)
			k := layerstest.RandSlice(r, c.nk*c.s.HKV*c.s.D, 2)
			v := layerstest.RandSlice(r, c.nk*c.s.HKV*c.s.D, 1)
			got, gotL := make([]float32, len(q)), make([]float32, c.nq*c.s.H)
			want, wantL := make([]float32, len(q)), make([]float32, c.nq*c.s.H)
			for _, threads := range []int{1, 2} {
				layers.Attention(layers.NewCPU(threads), got, gotL, q, k, v, c.nq, c.nk, c.s, c.causal)
				layerstest.NaiveAttention(want, wantL, q, k, v, c.nq, c.nk, c.s, c.causal)
				if d := layerstest.MaxDiff(got, want); d > layerstest.Tol {
					t.Fatalf("threads %d: output max diff %g > %g", threads, d, layerstest.Tol)
				}
				if d := layerstest.MaxDiff(gotL, wantL); d > layerstest.Tol {
					t.Fatalf("threads %d: lse max diff %g > %g", threads, d, layerstest.Tol)
				}
			}
		})
	}
}

// Merging the partial attentions of a split key set must equal attention
// over the whole set, for any split, including empty parts and N = 1.
func TestMergeEqualsAttentionOverConcatenatedKV(t *testing.T) {
	s := layers.AttnShape{H: 8, HKV: 2, D: 16}
	kvd := s.HKV * s.D
	r := rand.New(rand.NewPCG(3, 4))
	splits := [][]int{{37}, {10, 27}, {0, 37}, {12, 0, 25}, {1, 1, 1, 34}, {5, 5, 5, 5, 5, 5, 7}}
	for _, sp := range splits {
		for _, nq := range []int{1, 4} {
			t.Run(fmt.Sprintf("split%v_nq%d", sp, nq), func(t *testing.T) {
				nk := 0
				for _, x := range sp {
					nk += x
				}
				q := layerstest.RandSlice(r, nq*s.H*s.D, 3)
				k := layerstest.RandSlice(r, nk*kvd, 3)
				v := layerstest.RandSlice(r, nk*kvd, 1)
				c := layers.NewCPU(1)
				want, wantL := make([]float32, len(q)), make([]float32, nq*s.H)
				layers.Attention(c, want, wantL, q, k, v, nq, nk, s, false)
				var outs, lses [][]float32
				off := 0
				for _, x := range sp {
					o, l := make([]float32, len(q)), make([]float32, nq*s.H)
					layers.Attention(c, o, l, q, k[off*kvd:(off+x)*kvd], v[off*kvd:(off+x)*kvd], nq, x, s, false)
					outs, lses = append(outs, o), append(lses, l)
					off += x
				}
				got, gotL := make([]float32, len(q)), make([]float32, nq*s.H)
				layers.Merge(got, gotL, outs, lses, nq, s.H, s.D)
				if d := layerstest.MaxDiff(got, want); d > layerstest.Tol {
					t.Fatalf("merged output max diff %g > %g", d, layerstest.Tol)
				}
				if d := layerstest.MaxDiff(gotL, wantL); d > layerstest.Tol {
					t.Fatalf("merged lse max diff %g > %g", d, layerstest.Tol)
				}
				// pairwise folding gives the same answer
				po, pl := append([]float32(nil), outs[0]...), append([]float32(nil), lses[0]...)
				for p := 1; p < len(outs); p++ {
					layers.MergeInto(po, pl, outs[p], lses[p], s.D)
				}
				if d := layerstest.MaxDiff(po, want); d > layerstest.Tol {
					t.Fatalf("pairwise merged output max diff %g > %g", d, layerstest.Tol)
				}
				if d := layerstest.MaxDiff(pl, wantL); d > layerstest.Tol {
					t.Fatalf("pairwise merged lse max diff %g > %g", d, layerstest.Tol)
				}
			})
		}
	}
}

// Every form of the merge (Merge; MergePacked for gather and allgather;
// MergeInto for ring; MergePackedInto for allreduce, folding in the given
// order) handles the edges: parts that saw no key (lse -Inf, output 0)
// contribute nothing, also when every part is empty or when empty parts
// are folded together first (as idle ranks are in a reduction); lse
// differences beyond float64's exp range neither overflow nor lose the
// dominant part. Tolerance 1e-6, relative for large lse.
func TestMergeEdgeCases(t *testing.T) {
	inf := float32(math.Inf(-1))
	type part struct {
		out []float32
		lse float32
	}
	empty := part{[]float32{0, 0}, inf}
	a, b, c := []float32{1, 2}, []float32{3, 4}, []float32{-5, 6}
	cases := []struct {
		name  string
		parts []part
		out   []float32
		lse   float64
	}{
		{"all empty", []part{empty, empty}, []float32{0, 0}, math.Inf(-1)},
		{"empty, empty, then finite", []part{empty, empty, {b, 0.5}}, b, 0.5},
		{"finite, then empty", []part{{a, -2}, empty}, a, -2},
		{"empty, finite, empty", []part{empty, {c, 3}, empty}, c, 3},
		{"spread beyond exp's range, dominant last", []part{{a, -1e30}, {b, 1e30}}, b, 1e30},
		{"spread beyond exp's range, dominant first", []part{{a, 1e30}, {b, -1e30}}, a, 1e30},
		{"spread of 800", []part{{a, 0}, {b, 800}}, b, 800},
		{"equal lse: the mean", []part{{a, 2}, {b, 2}, {c, 2}}, []float32{-1.0 / 3, 4}, 2 + math.Log(3)},
	}
	check := func(t *testing.T, form string, out, lse []float32, want []float32, wantL float64) {
		t.Helper()
		bad := layerstest.MaxDiff(out, want) > 1e-6 || math.IsNaN(float64(out[0])) || math.IsNaN(float64(out[1]))
		if math.IsInf(wantL, -1) {
			bad = bad || !math.IsInf(float64(lse[0]), -1)
		} else if d := math.Abs(float64(lse[0]) - wantL); !(d <= 1e-6*math.Max(1, math.Abs(wantL))) {
			bad = true
		}
		if bad {
			t.Errorf("%s: out %v lse %v, want %v and %g (tolerance 1e-6; max out diff %g)", form, out, lse, want, wantL, layerstest.MaxDiff(out, want))
		}
	}
	const D = 2
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var outs, lses [][]float32
			packed := make([]float32, 0, len(tc.parts)*(D+1))
			for _, p := range tc.parts {
				outs, lses = append(outs, p.out), append(lses, []float32{p.lse})
				packed = append(packed, p.out[0], p.out[1], p.lse)
			}
			out, lse := make([]float32, D), make([]float32, 1)
			layers.Merge(out, lse, outs, lses, 1, 1, D)
			check(t, "Merge", out, lse, tc.out, tc.lse)

			out, lse = make([]float32, D), make([]float32, 1)
			layers.MergePacked(out, lse, packed, len(tc.parts), D)
			check(t, "MergePacked", out, lse, tc.out, tc.lse)

			out, lse = append([]float32(nil), outs[0]...), append([]float32(nil), lses[0]...)
			for p := 1; p < len(outs); p++ {
				layers.MergeInto(out, lse, outs[p], lses[p], D)
			}
			check(t, "MergeInto", out, lse, tc.out, tc.lse)

			acc := append([]float32(nil), packed[:D+1]...)
			for p := 1; p < len(tc.parts); p++ {
				layers.MergePackedInto(packed[p*(D+1):(p+1)*(D+1)], acc, D)
			}
			layers.Unpack(out, lse, acc, D)
			check(t, "MergePackedInto", out, lse, tc.out, tc.lse)
		})
	}
	// No parts at all: -Inf.
	out, lse := make([]float32, D), make([]float32, 1)
	layers.Merge(out, lse, nil, nil, 1, 1, D)
	check(t, "Merge of nothing", out, lse, []float32{0, 0}, math.Inf(-1))
}

// The packed forms used for transport agree with Merge.
func TestMergePacked(t *testing.T) {
	const rows, D, P = 6, 5, 4
	r := rand.New(rand.NewPCG(9, 9))
	var outs, lses [][]float32
	parts := make([]float32, P*rows*(D+1))
	for p := 0; p < P; p++ {
		o, l := layerstest.RandSlice(r, rows*D, 1), layerstest.RandSlice(r, rows, 4)
		if p == 2 {
			l[1] = float32(math.Inf(-1)) // an empty partial in one row
		}
		outs, lses = append(outs, o), append(lses, l)
		layers.Pack(parts[p*rows*(D+1):(p+1)*rows*(D+1)], o, l, D)
	}
	want, wantL := make([]float32, rows*D), make([]float32, rows)
	layers.Merge(want, wantL, outs, lses, 1, rows, D)
	got, gotL := make([]float32, rows*D), make([]float32, rows)
	layers.MergePacked(got, gotL, parts, P, D)
	if layerstest.MaxDiff(got, want) != 0 || layerstest.MaxDiff(gotL, wantL) != 0 {
		t.Fatalf("MergePacked differs from Merge: %g, %g", layerstest.MaxDiff(got, want), layerstest.MaxDiff(gotL, wantL))
	}
	acc := append([]float32(nil), parts[:rows*(D+1)]...)
	for p := 1; p < P; p++ {
		layers.MergePackedInto(parts[p*rows*(D+1):(p+1)*rows*(D+1)], acc, D)
	}
	layers.Unpack(got, gotL, acc, D)
	if d := math.Max(layerstest.MaxDiff(got, want), layerstest.MaxDiff(gotL, wantL)); d > 1e-6 {
		t.Fatalf("pairwise packed merge differs from Merge by %g", d)
	}
	// symmetric bit for bit
	a := append([]float32(nil), parts[:rows*(D+1)]...)
	b := append([]float32(nil), parts[rows*(D+1):2*rows*(D+1)]...)
	ab := append([]float32(nil), b...)
	layers.MergePackedInto(a, ab, D)
	ba := append([]float32(nil), a...)
	layers.MergePackedInto(b, ba, D)
	if layerstest.MaxDiff(ab, ba) != 0 {
		t.Fatal("MergePackedInto is not symmetric")
	}
}

// The merges allocate nothing for up to 16 parts: they run once per layer
// and step.
func TestMergeNoAllocs(t *testing.T) {
	const n, H, D, P = 3, 4, 8, 5
	outs, lses := make([][]float32, P), make([][]float32, P)
	parts := make([]float32, P*n*H*(D+1))
	for p := range outs {
		outs[p], lses[p] = make([]float32, n*H*D), make([]float32, n*H)
	}
	out, lse := make([]float32, n*H*D), make([]float32, n*H)
	if a := testing.AllocsPerRun(20, func() { layers.Merge(out, lse, outs, lses, n, H, D) }); a != 0 {
		t.Fatalf("Merge allocates %v times per call", a)
	}
	if a := testing.AllocsPerRun(20, func() { layers.MergePacked(out, lse, parts, P, D) }); a != 0 {
		t.Fatalf("MergePacked allocates %v times per call", a)
	}
}
