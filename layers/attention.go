package layers

import (
	"fmt"
	"math"
)

// AttnShape describes grouped-query attention.
type AttnShape struct {
	H   int // query heads
	HKV int // key/value heads; H is a multiple of HKV
	D   int // head size
}

const keyTile = 64 // keys scored at once by the online softmax

// AttentionKernel is implemented by backends with their own attention
// kernel: it computes exactly what AttentionKV specifies and reports true,
// or reports false (computing nothing) to let AttentionKV use the pure-Go
// code.
type AttentionKernel interface {
	AttentionKernel(out, lse, q []float32, k, v KVSpan, nq, nk int, s AttnShape, causal bool) bool
}

// Attention is AttentionKV on float32 keys and values stored token-major:
// k, v [nk, HKV*D].
func Attention(c Compute, out, lse, q, k, v []float32, nq, nk int, s AttnShape, causal bool) {
	AttentionKV(c, out, lse, q, TokenMajor(k, s), TokenMajor(v, s), nq, nk, s, causal)
}

// AttentionKV computes, for each of nq query tokens and each head h,
//
//	out = softmax(S)·V,  lse = log Σ_j exp(S_j),  S_j = q·k_j / √D
//
// over nk keys, with an online (flash-style) softmax: no score matrix is
// materialised, only a tile of keyTile scores per worker.
//
//	out: [nq, H*D]   lse: [nq, H]   q: [nq, H*D]   k, v: nk tokens (KVSpan)
//
// K and V may be of any K/V dtype (the same for both) and layout; they are
// widened to float32 as they are read, and all arithmetic is float32.
// causal: the queries are the last nq of the nk key tokens, so query i sees
// keys [0, nk-nq+i]; otherwise every query sees all keys. A query that sees
// no key gets out = 0 and lse = -Inf (it contributes nothing to a merge).
//
// If c implements AttentionKernel (the SIMD CPU backend does), its kernel
// computes the result; otherwise the pure-Go code below does.
func AttentionKV(c Compute, out, lse, q []float32, k, v KVSpan, nq, nk int, s AttnShape, causal bool) {
	k.check(nk, s, "keys")
	v.check(nk, s, "values")
	if k.DType != v.DType {
		panic(fmt.Sprintf("layers: attention: keys of %v, values of %v", k.DType, v.DType))
	}
	if a, ok := c.(AttentionKernel); ok && a.AttentionKernel(out, lse, q, k, v, nq, nk, s, causal) {
		return
	}
	attentionGo(c, out, lse, q, k, v, nq, nk, s, causal)
}

// attentionGo is AttentionKV in pure Go.
func attentionGo(c Compute, out, lse, q []float32, k, v KVSpan, nq, nk int, s AttnShape, causal bool) {
	H, D := s.H, s.D
	group := s.H / s.HKV
	scale := float32(1 / math.Sqrt(float64(D)))
	c.Parallel(nq*H, func(lo, hi int) {
		scores := make([]float32, keyTile)
		acc := make([]float32, D)
		kj, vj := make([]float32, D), make([]float32, D)
		for t := lo; t < hi; t++ {
			i, h := t/H, t%H
			kh := h / group
			qi := q[i*H*D+h*D : i*H*D+(h+1)*D]
			oi := out[i*H*D+h*D : i*H*D+(h+1)*D]
			visible := nk
			if causal {
				visible = nk - nq + i + 1
			}
			if visible <= 0 {
				clear(oi)
				lse[i*H+h] = float32(math.Inf(-1))
				continue
			}
			m := float32(math.Inf(-1)) // running max of scores
			var l float32              // running Σ exp(S_j - m)
			clear(acc)
			for j0 := 0; j0 < visible; j0 += keyTile {
				nt := min(keyTile, visible-j0)
				tmax := m
				for j := 0; j < nt; j++ {
					k.Row(kj, kh, j0+j)
					sc := Dot(qi, kj) * scale
					scores[j] = sc
					if sc > tmax {
						tmax = sc
					}
				}
				if tmax > m { // rescale what has been accumulated
					corr := float32(math.Exp(float64(m - tmax)))
					l *= corr
					for d := range acc {
						acc[d] *= corr
					}
					m = tmax
				}
				for j := 0; j < nt; j++ {
					p := float32(math.Exp(float64(scores[j] - m)))
					l += p
					v.Row(vj, kh, j0+j)
					for d, x := range vj {
						acc[d] += p * x
					}
				}
			}
			inv := 1 / l
			for d := range oi {
				oi[d] = acc[d] * inv
			}
			lse[i*H+h] = m + float32(math.Log(float64(l)))
		}
	})
}

// Merging partial attentions. Every form below (Merge, MergePacked for
// gather and allgather, MergeInto for ring, MergePackedInto for allreduce)
// is a loop over rows that hands each row's parts to mergeRow, which holds
// the arithmetic and the -Inf guards once.

// mergeRow merges the partial attentions of one (token, head) row: part p
// is outs[p] (D output values) and lses[p] (its log-sum-exp), each over a
// disjoint set of keys. It writes attention over the union to o and
// returns its lse:
//
//	M = max_p lse_p,  w_p = exp(lse_p - M),
//	o = Σ_p w_p·o_p / Σ_p w_p,  lse = M + log Σ_p w_p
//
// in float64 with the max subtracted, summing in part order, so results
// are reproducible, and a merge of two parts is symmetric bit for bit. A
// part with lse = -Inf (it saw no key) contributes nothing; if every part
// is empty (or there is none), o = 0 and lse = -Inf.
//
// o may alias any outs[p] (each output value is read from every part
// before it is written). outs and w are the caller's scratch: mergeRow
// reorders outs and overwrites w [len(lses)].
func mergeRow(o []float32, outs [][]float32, lses []float32, w []float64) float32 {
	M := math.Inf(-1)
	for _, l := range lses {
		M = math.Max(M, float64(l))
	}
	if math.IsInf(M, -1) {
		clear(o)
		return float32(M)
	}
	var sum float64
	k := 0 // parts with a nonzero weight, moved to the front of outs and w
	for p, l := range lses {
		if math.IsInf(float64(l), -1) {
			continue
		}
		wp := math.Exp(float64(l) - M)
		sum += wp
		if wp != 0 {
			outs[k], w[k] = outs[p], wp
			k++
		}
	}
	for d := range o {
		var x float64
		for p := 0; p < k; p++ {
			x += w[p] * float64(outs[p][d])
		}
		o[d] = float32(x / sum)
	}
	return float32(M + math.Log(sum))
}

// mergeScratch holds one row's parts for mergeRow: on the stack for up to
// 16 parts (ranks' or blocks' partials), allocated beyond.
type mergeScratch struct {
	po [16][]float32
	pl [16]float32
	w  [16]float64
}

func (sc *mergeScratch) get(P int) ([][]float32, []float32, []float64) {
	if P <= len(sc.po) {
		return sc.po[:P], sc.pl[:P], sc.w[:P]
	}
	return make([][]float32, P), make([]float32, P), make([]float64, P)
}

// Merge combines P partial attentions of the same n·H (token, head) rows,
// each over a disjoint set of keys, into attention over the union (see
// mergeRow), folding parts in the given order.
//
//	out: [n, H*D]   lse: [n, H]   outs[p]: [n, H*D]   lses[p]: [n, H]
//
// out and lse may alias outs[0] and lses[0].
func Merge(out, lse []float32, outs, lses [][]float32, n, H, D int) {
	var sc mergeScratch
	po, pl, w := sc.get(len(outs))
	for r := 0; r < n*H; r++ {
		for p := range po {
			po[p], pl[p] = outs[p][r*D:(r+1)*D], lses[p][r]
		}
		lse[r] = mergeRow(out[r*D:(r+1)*D], po, pl, w)
	}
}

// mergeSplits merges ns partial attentions of the same rows, laid out one
// after another (outs [ns][rows*D], lses [ns][rows]), into out [rows*D]
// and lse [rows], in part order (see mergeRow).
func mergeSplits(out, lse, outs, lses []float32, ns, rows, D int) {
	var sc mergeScratch
	po, pl, w := sc.get(ns)
	for r := 0; r < rows; r++ {
		for p := range po {
			po[p], pl[p] = outs[(p*rows+r)*D:(p*rows+r+1)*D], lses[p*rows+r]
		}
		lse[r] = mergeRow(out[r*D:(r+1)*D], po, pl, w)
	}
}

// MergeInto folds one partial (o2, lse2) into a running result (o, lse),
// in place: the pairwise form of Merge, used by ring attention.
//
//	o, o2: [rows*D]   lse, lse2: [rows]
func MergeInto(o, lse, o2, lse2 []float32, D int) {
	var po [2][]float32
	var pl [2]float32
	var w [2]float64
	for r := range lse {
		oa := o[r*D : (r+1)*D]
		po[0], po[1] = oa, o2[r*D:(r+1)*D]
		pl[0], pl[1] = lse[r], lse2[r]
		lse[r] = mergeRow(oa, po[:], pl[:], w[:])
	}
}

// Packed partial attention: for transport, a partial (out, lse) of rows
// (token, head) pairs travels as one run of rows*(D+1) floats, each row its
// D output values followed by its lse.

// Pack writes out [rows*D] and lse [rows] into dst [rows*(D+1)].
func Pack(dst, out, lse []float32, D int) {
	for r := range lse {
		copy(dst[r*(D+1):r*(D+1)+D], out[r*D:(r+1)*D])
		dst[r*(D+1)+D] = lse[r]
	}
}

// Unpack is the inverse of Pack.
func Unpack(out, lse, src []float32, D int) {
	for r := range lse {
		copy(out[r*D:(r+1)*D], src[r*(D+1):r*(D+1)+D])
		lse[r] = src[r*(D+1)+D]
	}
}

// MergePacked merges P packed partials laid one after another in parts
// [P][rows][D+1] into out [rows*D] and lse [rows], in part order: Merge
// on the packed layout, bit for bit.
func MergePacked(out, lse, parts []float32, P, D int) {
	rows := len(lse)
	stride := rows * (D + 1)
	var sc mergeScratch
	po, pl, w := sc.get(P)
	for r := 0; r < rows; r++ {
		for p := range po {
			row := parts[p*stride+r*(D+1) : p*stride+(r+1)*(D+1)]
			po[p], pl[p] = row[:D], row[D]
		}
		lse[r] = mergeRow(out[r*D:(r+1)*D], po, pl, w)
	}
}

// MergePackedInto folds packed partial in into packed inout, row by row
// (both [rows*(D+1)]): the pairwise merge used by reductions. It is
// symmetric in its arguments, bit for bit.
func MergePackedInto(in, inout []float32, D int) {
	var po [2][]float32
	var pl [2]float32
	var w [2]float64
	for r := 0; r < len(in)/(D+1); r++ {
		a, b := inout[r*(D+1):(r+1)*(D+1)], in[r*(D+1):(r+1)*(D+1)]
		po[0], po[1] = a[:D], b[:D]
		pl[0], pl[1] = a[D], b[D]
		a[D] = mergeRow(a[:D], po[:], pl[:], w[:])
	}
}
