package layers

import (
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
// kernel: it computes exactly what Attention specifies and reports true, or
// reports false (computing nothing) to let Attention use the pure-Go code.
type AttentionKernel interface {
	AttentionKernel(out, lse, q, k, v []float32, nq, nk int, s AttnShape, causal bool) bool
}

// Attention computes, for each of nq query tokens and each head h,
//
//	out = softmax(S)·V,  lse = log Σ_j exp(S_j),  S_j = q·k_j / √D
//
// over nk keys, with an online (flash-style) softmax: no score matrix is
// materialised, only a tile of keyTile scores per worker.
//
//	out: [nq, H*D]   lse: [nq, H]   q: [nq, H*D]   k, v: [nk, HKV*D]
//
// causal: the queries are the last nq of the nk key tokens, so query i sees
// keys [0, nk-nq+i]; otherwise every query sees all keys. A query that sees
// no key gets out = 0 and lse = -Inf (it contributes nothing to a merge).
//
// If c implements AttentionKernel (the SIMD CPU backend does), its kernel
// computes the result; otherwise the pure-Go code below does.
func Attention(c Compute, out, lse, q, k, v []float32, nq, nk int, s AttnShape, causal bool) {
	if a, ok := c.(AttentionKernel); ok && a.AttentionKernel(out, lse, q, k, v, nq, nk, s, causal) {
		return
	}
	H, D, kvDim := s.H, s.D, s.HKV*s.D
	group := s.H / s.HKV
	scale := float32(1 / math.Sqrt(float64(D)))
	c.Parallel(nq*H, func(lo, hi int) {
		scores := make([]float32, keyTile)
		acc := make([]float32, D)
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
					kj := k[(j0+j)*kvDim+kh*D : (j0+j)*kvDim+(kh+1)*D]
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
					vj := v[(j0+j)*kvDim+kh*D : (j0+j)*kvDim+(kh+1)*D]
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

// Merge combines P partial attentions of the same n·H (token, head) rows,
// each over a disjoint set of keys, into attention over the union:
//
//	M = max_p lse_p,  w_p = exp(lse_p - M),
//	out = Σ_p w_p·out_p / Σ_p w_p,  lse = M + log Σ_p w_p
//
// in float64, folding parts in the given order so results are reproducible.
// Parts with lse = -Inf contribute nothing; if all are -Inf, out = 0 and
// lse = -Inf.
//
//	out: [n, H*D]   lse: [n, H]   outs[p]: [n, H*D]   lses[p]: [n, H]
//
// out and lse may alias outs[0] and lses[0].
func Merge(out, lse []float32, outs, lses [][]float32, n, H, D int) {
	P := len(outs)
	w := make([]float64, P)
	acc := make([]float64, D)
	for r := 0; r < n*H; r++ {
		M := math.Inf(-1)
		for p := 0; p < P; p++ {
			if x := float64(lses[p][r]); x > M {
				M = x
			}
		}
		o := out[r*D : (r+1)*D]
		if math.IsInf(M, -1) {
			clear(o)
			lse[r] = float32(M)
			continue
		}
		var sum float64
		for p := 0; p < P; p++ {
			w[p] = 0
			if x := float64(lses[p][r]); !math.IsInf(x, -1) {
				w[p] = math.Exp(x - M)
			}
			sum += w[p]
		}
		clear(acc)
		for p := 0; p < P; p++ {
			if w[p] == 0 {
				continue
			}
			op := outs[p][r*D : (r+1)*D]
			for d, x := range op {
				acc[d] += w[p] * float64(x)
			}
		}
		for d := range o {
			o[d] = float32(acc[d] / sum)
		}
		lse[r] = float32(M + math.Log(sum))
	}
}

// MergeInto folds one partial (o2, lse2) into a running result (o, lse),
// in place: the pairwise form of Merge, used by reductions.
//
//	o, o2: [rows*D]   lse, lse2: [rows]
func MergeInto(o, lse, o2, lse2 []float32, D int) {
	for r := range lse {
		a, b := float64(lse[r]), float64(lse2[r])
		if math.IsInf(b, -1) {
			continue
		}
		oa, ob := o[r*D:(r+1)*D], o2[r*D:(r+1)*D]
		if math.IsInf(a, -1) {
			copy(oa, ob)
			lse[r] = lse2[r]
			continue
		}
		M := math.Max(a, b)
		wa, wb := math.Exp(a-M), math.Exp(b-M)
		s := wa + wb
		for d := range oa {
			oa[d] = float32((wa*float64(oa[d]) + wb*float64(ob[d])) / s)
		}
		lse[r] = float32(M + math.Log(s))
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
// [P][rows][D+1] into out [rows*D] and lse [rows], in part order, with the
// arithmetic of Merge.
func MergePacked(out, lse, parts []float32, P, D int) {
	rows := len(lse)
	stride := rows * (D + 1)
	acc := make([]float64, D)
	for r := 0; r < rows; r++ {
		M := math.Inf(-1)
		for p := 0; p < P; p++ {
			M = math.Max(M, float64(parts[p*stride+r*(D+1)+D]))
		}
		o := out[r*D : (r+1)*D]
		if math.IsInf(M, -1) {
			clear(o)
			lse[r] = float32(M)
			continue
		}
		clear(acc)
		var sum float64
		for p := 0; p < P; p++ {
			row := parts[p*stride+r*(D+1) : p*stride+(r+1)*(D+1)]
			x := float64(row[D])
			if math.IsInf(x, -1) {
				continue
			}
			w := math.Exp(x - M)
			sum += w
			for d := 0; d < D; d++ {
				acc[d] += w * float64(row[d])
			}
		}
		for d := range o {
			o[d] = float32(acc[d] / sum)
		}
		lse[r] = float32(M + math.Log(sum))
	}
}

// MergePackedInto folds packed partial in into packed inout, row by row
// (both [rows*(D+1)]): the pairwise merge used by reductions. It is
// symmetric in its arguments, bit for bit.
func MergePackedInto(in, inout []float32, D int) {
	for r := 0; r < len(in)/(D+1); r++ {
		a, b := inout[r*(D+1):(r+1)*(D+1)], in[r*(D+1):(r+1)*(D+1)]
		la, lb := float64(a[D]), float64(b[D])
		if math.IsInf(lb, -1) {
			continue
		}
		if math.IsInf(la, -1) {
			copy(a, b)
			continue
		}
		M := math.Max(la, lb)
		wa, wb := math.Exp(la-M), math.Exp(lb-M)
		s := wa + wb
		for d := 0; d < D; d++ {
			a[d] = float32((wa*float64(a[d]) + wb*float64(b[d])) / s)
		}
		a[D] = float32(M + math.Log(s))
	}
}
