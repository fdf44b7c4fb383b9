// Package cuda is the device backend of package layers: the model math of
// a forward pass on a CUDA GPU, with weights, activations and K/V kept on
// the device. Its kernels (kernels.cu) are compiled at start-up by NVRTC
// for the device's architecture; matrix products go through cuBLASLt. The
// bindings are package nccl's, loaded at run time: this package builds
// with gcc alone and runs, in tests, on nccl/standin.
package cuda

import (
	_ "embed"
	"fmt"

	"github.com/star-attn/star/nccl"
)

//go:embed kernels.cu
var kernelsCU string

//go:embed prelude_nvrtc.h
var preludeNVRTC string

// Source is the kernels' CUDA C as NVRTC compiles it (prelude first).
func Source() string { return preludeNVRTC + "\n" + kernelsCU }

// Kernels are the compiled kernels on one device.
type Kernels struct {
	D                                                                  *nccl.Device
	Image                                                              string // "cubin" or "ptx"
	mod                                                                *nccl.Module
	embed, rmsnorm, rope, swiglu, add, to16, attention, merge, storeKV *nccl.Kernel
	pack, mergePacked, attentionTiled, attentionSplit                  *nccl.Kernel
}

// LoadKernels compiles the kernels for d and loads them.
func LoadKernels(d *nccl.Device) (*Kernels, error) {
	img, kind, err := nccl.Compile(Source(), "star_kernels.cu", d.Arch())
	if err != nil {
		return nil, err
	}
	mod, err := d.Load(img)
	if err != nil {
		return nil, fmt.Errorf("load the kernels (%s for %s): %w", kind, d.Arch(), err)
	}
	k := &Kernels{D: d, Image: kind, mod: mod}
	for _, f := range []struct {
		name string
		dst  **nccl.Kernel
	}{{"star_embed", &k.embed}, {"star_rmsnorm", &k.rmsnorm}, {"star_rope", &k.rope}, {"star_swiglu", &k.swiglu},
		{"star_add", &k.add}, {"star_to16", &k.to16}, {"star_attention", &k.attention}, {"star_merge", &k.merge},
		{"star_store_kv", &k.storeKV}, {"star_pack", &k.pack}, {"star_merge_packed", &k.mergePacked},
		{"star_attention_tiled", &k.attentionTiled}, {"star_attention_split", &k.attentionSplit}} {
		if *f.dst, err = mod.Kernel(f.name); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func blocks(n int64, per int) int { return int((n + int64(per) - 1) / int64(per)) }

// Embed writes the rows tok [n] (int32 on the device) of table [V, D] of
// dtype (0 F32, 1 F16, 2 BF16) to out [n, D].
func (k *Kernels) Embed(out, table nccl.Ptr, dtype int, tok nccl.Ptr, n, D int) error {
	return k.embed.Launch(nccl.Dim3{X: n}, nccl.Dim3{X: 256}, out, table, int32(dtype), tok, int32(D))
}

// RMSNorm: out [n, D] = x * w / rms(x) per row.
func (k *Kernels) RMSNorm(out, x, w nccl.Ptr, n, D int, eps float32) error {
	return k.rmsnorm.Launch(nccl.Dim3{X: n}, nccl.Dim3{X: 256}, out, x, w, int32(D), eps)
}

// RoPE rotates x [n, heads*hd] in place with per-token cos, sin [n, hd/2].
func (k *Kernels) RoPE(x, cos, sin nccl.Ptr, n, heads, hd int, halfSplit bool) error {
	half := int32(0)
	if halfSplit {
		half = 1
	}
	return k.rope.Launch(nccl.Dim3{X: n}, nccl.Dim3{X: 128}, x, cos, sin, int32(heads), int32(hd), half)
}

// SwiGLU: h1 = silu(h1) * h3 over n values.
func (k *Kernels) SwiGLU(h1, h3 nccl.Ptr, n int64) error {
	return k.swiglu.Launch(nccl.Dim3{X: blocks(n, 256)}, nccl.Dim3{X: 256}, h1, h3, n)
}

// Add: x += y over n values.
func (k *Kernels) Add(x, y nccl.Ptr, n int64) error {
	return k.add.Launch(nccl.Dim3{X: blocks(n, 256)}, nccl.Dim3{X: 256}, x, y, n)
}

// To16 converts n floats to dtype (1 F16, 2 BF16).
func (k *Kernels) To16(out, x nccl.Ptr, dtype int, n int64) error {
	return k.to16.Launch(nccl.Dim3{X: blocks(n, 256)}, nccl.Dim3{X: 256}, out, x, int32(dtype), n)
}

// Attention is layers.Attention on the device: out [nq, H*D], lse [nq, H]
// from q [nq, H*D], k, v [nk, HKV*D] (float32); causal: the queries are
// the last nq of the nk key positions.
func (k *Kernels) Attention(out, lse, q, kk, v nccl.Ptr, nq, nk, H, HKV, D int, causal bool) error {
	return k.AttentionKV(out, lse, q, 0, 0, 0, kk, v, nq, nk, H, HKV, D, causal, 0)
}

// AttentionKV is Attention over keys and values in two segments of
// element type dtype (0 F32, 1 F16, 2 BF16), each token-major [rows,
// HKV*D]: keys 0 .. n1-1 are rows of (k1, v1), the others rows of (k2, v2).
func (k *Kernels) AttentionKV(out, lse, q, k1, v1 nccl.Ptr, n1 int, k2, v2 nccl.Ptr, nq, nk, H, HKV, D int, causal bool, dtype int) error {
	if D > 256 {
		return fmt.Errorf("attention: head size %d over the kernel's 256", D)
	}
	if nq == 0 {
		return nil
	}
	c := int32(0)
	if causal {
		c = 1
	}
	if hpg := H / HKV; nq >= TiledRows && D <= 128 && hpg <= 16 {
		// a block of R rows of a kv head's hpg query heads shares each K/V tile
		R := max(16/hpg, 1)
		return k.attentionTiled.Launch(nccl.Dim3{X: (nq + R - 1) / R, Y: HKV}, nccl.Dim3{X: 32, Y: R * hpg}, out, lse, q,
			k1, v1, int32(n1), k2, v2, int32(nq), int32(nk), int32(H), int32(HKV), int32(D), c, int32(dtype), int32(R))
	}
	return k.attention.Launch(nccl.Dim3{X: nq, Y: H}, nccl.Dim3{X: 32}, out, lse, q, k1, v1, int32(n1), k2, v2,
		int32(nq), int32(nk), int32(H), int32(HKV), int32(D), c, int32(dtype))
}

// SplitKeys is the fewest keys per block of decode's split attention
// (AttentionSplit): one query row over more than twice as many keys is
// split into blocks of this many, or more when that would make more than
// MaxSplits blocks.
var SplitKeys = 512

// MaxSplits bounds the blocks of a split attention (its partials are
// MaxSplits·H·(D+1) floats of every rank's activations).
const MaxSplits = 256

// AttentionSplit is AttentionKV for one query row that sees every key
// (decode), split over blocks of chunk keys: the partials go to parts
// [S][H][D+1] (S = ceil(nk/chunk), allocated by the caller), then are
// merged into out [H*D], lse [H].
func (k *Kernels) AttentionSplit(out, lse, parts, q, k1, v1 nccl.Ptr, n1 int, k2, v2 nccl.Ptr, nk, H, HKV, D, dtype, chunk int) error {
	if D > 256 {
		return fmt.Errorf("attention: head size %d over the kernel's 256", D)
	}
	S := (nk + chunk - 1) / chunk
	if err := k.attentionSplit.Launch(nccl.Dim3{X: S, Y: H}, nccl.Dim3{X: 32}, parts, q, k1, v1, int32(n1), k2, v2,
		int32(nk), int32(H), int32(HKV), int32(D), int32(dtype), int32(chunk)); err != nil {
		return err
	}
	return k.MergePacked(out, lse, parts, S, H, D)
}

// TiledRows is the fewest query rows AttentionKV runs with the tiled
// kernel (star_attention_tiled: K/V tiles shared by a block's rows and
// heads); fewer (decode) run one warp per (row, head).
var TiledRows = 8

// StoreKV writes n rows of x [n, w] (float32) into rows j0.. of dst [.., w]
// of element type dtype (0 F32, 1 F16, 2 BF16).
func (k *Kernels) StoreKV(dst, x nccl.Ptr, dtype int, j0, n, w int) error {
	if n == 0 {
		return nil
	}
	return k.storeKV.Launch(nccl.Dim3{X: n}, nccl.Dim3{X: 256}, dst, x, int32(dtype), int64(j0), int32(w))
}

// MergeInto folds (o2, lse2) into (o, lse) in place: rows of D.
func (k *Kernels) MergeInto(o, lse, o2, lse2 nccl.Ptr, rows, D int) error {
	if rows == 0 {
		return nil
	}
	return k.merge.Launch(nccl.Dim3{X: rows}, nccl.Dim3{X: 32}, o, lse, o2, lse2, int32(D))
}

// Pack writes (o [rows, D], lse [rows]) as dst [rows, D+1].
func (k *Kernels) Pack(dst, o, lse nccl.Ptr, rows, D int) error {
	if rows == 0 {
		return nil
	}
	return k.pack.Launch(nccl.Dim3{X: rows}, nccl.Dim3{X: 32}, dst, o, lse, int32(D))
}

// MergePacked sets (o, lse) to the exact merge of P packed partials
// parts [P][rows][D+1] (Pack's rows of every rank, in rank order).
func (k *Kernels) MergePacked(o, lse, parts nccl.Ptr, P, rows, D int) error {
	if rows == 0 {
		return nil
	}
	return k.mergePacked.Launch(nccl.Dim3{X: rows}, nccl.Dim3{X: 32}, o, lse, parts, int32(P), int64(rows), int32(D))
}
