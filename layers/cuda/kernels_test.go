package cuda_test

import (
	"fmt"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/layers/cuda"
	"github.com/star-attn/star/nccl"
	"github.com/star-attn/star/nccl/standin"
)

// The device kernels against package layers' CPU functions, run on the
// CUDA stand-in in CI (the same CUDA C compiled for the CPU) and on a GPU
// by scripts/gpu-check.sh. F32 results agree within 1e-5 relative.

var standinErr error

func TestMain(m *testing.M) {
	if os.Getenv("STAR_CUDA_LIBDIR") == "" && os.Getenv("STAR_CUDA_REAL") == "" {
		dir, err := os.MkdirTemp("", "star-standin-")
		if err == nil {
			err = standin.Build(dir, []string{"kernels.cu"}, standin.Options{})
			defer os.RemoveAll(dir)
		}
		if err != nil {
			standinErr = err
		} else {
			os.Setenv("STAR_CUDA_LIBDIR", dir)
		}
	}
	os.Exit(m.Run())
}

func device(t *testing.T) (*nccl.Device, *cuda.Kernels) {
	t.Helper()
	if standinErr != nil {
		shared.Missing(t, "the CUDA stand-in could not be built (gcc, g++): %v", standinErr)
	}
	d, err := nccl.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	k, err := cuda.LoadKernels(d)
	if err != nil {
		t.Fatal(err)
	}
	return d, k
}

func bytesOf(f []float32) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f)) }

func up(t *testing.T, d *nccl.Device, f []float32) nccl.Ptr {
	t.Helper()
	p, err := d.Alloc(int64(4 * max(len(f), 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(f) > 0 {
		if err := d.Upload(p, bytesOf(f)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func upInts(t *testing.T, d *nccl.Device, v []int32) nccl.Ptr {
	t.Helper()
	p, _ := d.Alloc(int64(4 * len(v)))
	if err := d.Upload(p, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))); err != nil {
		t.Fatal(err)
	}
	return p
}

func down(t *testing.T, d *nccl.Device, p nccl.Ptr, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := d.Download(bytesOf(out), p); err != nil {
		t.Fatal(err)
	}
	return out
}

func randn(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// same checks got against want: |got - want| <= tol * (1 + |want|).
func same(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	var worst float64
	at := -1
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(w, -1) && math.IsInf(g, -1) {
			continue
		}
		if d := math.Abs(g-w) / (1 + math.Abs(w)); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > tol || at >= 0 && math.IsNaN(worst) {
		t.Fatalf("%s: max relative difference %.3g at %d (device %g, CPU %g), tolerance %g", what, worst, at, got[at], want[at], tol)
	}
}

func TestKernelsMatchCPU(t *testing.T) {
	d, k := device(t)
	r := rand.New(rand.NewPCG(3, 4))
	const tol = 1e-5
	t.Run("rmsnorm", func(t *testing.T) {
		n, D := 3, 300
		x, w := randn(r, n*D), randn(r, D)
		out, _ := d.Alloc(int64(4 * n * D))
		if err := k.RMSNorm(out, up(t, d, x), up(t, d, w), n, D, 1e-5); err != nil {
			t.Fatal(err)
		}
		want := make([]float32, n*D)
		for i := 0; i < n; i++ {
			layers.RMSNorm(want[i*D:(i+1)*D], x[i*D:(i+1)*D], w, 1e-5)
		}
		same(t, "rmsnorm", down(t, d, out, n*D), want, tol)
	})
	t.Run("rope", func(t *testing.T) {
		for _, half := range []bool{false, true} {
			n, heads, hd := 4, 3, 16
			freqs := layers.RopeFreqs(hd, 500000, nil)
			x := randn(r, n*heads*hd)
			pos := []int{0, 7, 1000, 1 << 20}
			cos, sin := make([]float32, n*hd/2), make([]float32, n*hd/2)
			want := append([]float32(nil), x...)
			for i := 0; i < n; i++ {
				layers.RoPE(want[i*heads*hd:(i+1)*heads*hd], pos[i], heads, hd, freqs, half, cos[i*hd/2:(i+1)*hd/2], sin[i*hd/2:(i+1)*hd/2])
			}
			px := up(t, d, x)
			if err := k.RoPE(px, up(t, d, cos), up(t, d, sin), n, heads, hd, half); err != nil {
				t.Fatal(err)
			}
			same(t, "rope", down(t, d, px, len(x)), want, tol)
		}
	})
	t.Run("swiglu and add", func(t *testing.T) {
		n := 1000
		h1, h3 := randn(r, n), randn(r, n)
		p1, p3 := up(t, d, h1), up(t, d, h3)
		if err := k.SwiGLU(p1, p3, int64(n)); err != nil {
			t.Fatal(err)
		}
		want := append([]float32(nil), h1...)
		layers.SwiGLU(layers.NewCPUReference(1), want, h3)
		same(t, "swiglu", down(t, d, p1, n), want, tol)
		if err := k.Add(p1, p3, int64(n)); err != nil {
			t.Fatal(err)
		}
		layers.Add(want, h3)
		same(t, "add", down(t, d, p1, n), want, tol)
	})
	t.Run("embed and 16-bit conversion", func(t *testing.T) {
		V, D := 10, 40
		table := randn(r, V*D)
		tok := []int32{3, 0, 9, 3}
		out, _ := d.Alloc(int64(4 * len(tok) * D))
		if err := k.Embed(out, up(t, d, table), 0, upInts(t, d, tok), len(tok), D); err != nil {
			t.Fatal(err)
		}
		got := down(t, d, out, len(tok)*D)
		for i, id := range tok {
			same(t, "embed", got[i*D:(i+1)*D], table[int(id)*D:(int(id)+1)*D], 0)
		}
		// to BF16 and back through the embedding of a BF16 table
		b16, _ := d.Alloc(int64(2 * V * D))
		if err := k.To16(b16, up(t, d, table), 2, int64(V*D)); err != nil {
			t.Fatal(err)
		}
		if err := k.Embed(out, b16, 2, upInts(t, d, tok), len(tok), D); err != nil {
			t.Fatal(err)
		}
		got = down(t, d, out, len(tok)*D)
		for i, id := range tok {
			same(t, "bf16 round trip", got[i*D:(i+1)*D], table[int(id)*D:(int(id)+1)*D], 1.0/256)
		}
		f16, _ := d.Alloc(int64(2 * V * D))
		if err := k.To16(f16, up(t, d, table), 1, int64(V*D)); err != nil {
			t.Fatal(err)
		}
		if err := k.Embed(out, f16, 1, upInts(t, d, tok), len(tok), D); err != nil {
			t.Fatal(err)
		}
		got = down(t, d, out, len(tok)*D)
		for i, id := range tok {
			same(t, "f16 round trip", got[i*D:(i+1)*D], table[int(id)*D:(int(id)+1)*D], 1.0/1024)
		}
	})
	t.Run("attention", func(t *testing.T) {
		// both kernels on every case: one warp per (row, head), and tiled
		// (K/V tiles shared by a block's rows and heads; D > 128 and more
		// than 16 heads per kv head stay on the first)
		defer func(n int) { cuda.TiledRows = n }(cuda.TiledRows)
		for _, tiled := range []int{1 << 30, 1} {
			cuda.TiledRows = tiled
			attentionCases(t, d, k, r, tol)
		}
	})
	t.Run("split decode attention", func(t *testing.T) {
		for _, c := range []struct{ nk, H, HKV, D, chunk int }{{1000, 8, 2, 64, 64}, {130, 4, 4, 128, 32}, {77, 2, 1, 256, 16}, {5, 2, 2, 8, 16}} {
			q, kk, v := randn(r, c.H*c.D), randn(r, c.nk*c.HKV*c.D), randn(r, c.nk*c.HKV*c.D)
			kb, vb := weightstest.Round(kk, weights.BF16), weightstest.Round(v, weights.BF16)
			want, wlse := make([]float32, c.H*c.D), make([]float32, c.H)
			layers.Attention(layers.NewCPUReference(1), want, wlse, q, kb, vb, 1, c.nk, layers.AttnShape{H: c.H, HKV: c.HKV, D: c.D}, false)
			S := (c.nk + c.chunk - 1) / c.chunk
			out, _ := d.Alloc(int64(4 * len(want)))
			lse, _ := d.Alloc(int64(4 * len(wlse)))
			parts, _ := d.Alloc(int64(4 * S * c.H * (c.D + 1)))
			n1, row := c.nk/3, c.HKV*c.D
			k16, v16 := to16(t, d, k, kk), to16(t, d, k, v)
			if err := k.AttentionSplit(out, lse, parts, up(t, d, q), k16, v16, n1, k16+nccl.Ptr(2*n1*row), v16+nccl.Ptr(2*n1*row),
				c.nk, c.H, c.HKV, c.D, 2, c.chunk); err != nil {
				t.Fatal(err)
			}
			same(t, fmt.Sprintf("split attention out %+v", c), down(t, d, out, len(want)), want, tol)
			same(t, fmt.Sprintf("split attention lse %+v", c), down(t, d, lse, len(wlse)), wlse, tol)
		}
	})
	t.Run("pack and merge packed", func(t *testing.T) {
		rows, D, P := 7, 16, 3
		o, l := randn(r, rows*D), randn(r, rows)
		l[2] = float32(math.Inf(-1))
		packed := make([]float32, rows*(D+1))
		layers.Pack(packed, o, l, D)
		pp := up(t, d, make([]float32, rows*(D+1)))
		if err := k.Pack(pp, up(t, d, o), up(t, d, l), rows, D); err != nil {
			t.Fatal(err)
		}
		same(t, "pack", down(t, d, pp, rows*(D+1)), packed, 0)
		parts := randn(r, P*rows*(D+1))
		for p := 0; p < P; p++ { // row 4: no keys anywhere; row 5: keys on part 1 only
			parts[(p*rows+4)*(D+1)+D] = float32(math.Inf(-1))
			if p != 1 {
				parts[(p*rows+5)*(D+1)+D] = float32(math.Inf(-1))
			}
		}
		want, wl := make([]float32, rows*D), make([]float32, rows)
		layers.MergePacked(want, wl, parts, P, D)
		po, pl := up(t, d, make([]float32, rows*D)), up(t, d, make([]float32, rows))
		if err := k.MergePacked(po, pl, up(t, d, parts), P, rows, D); err != nil {
			t.Fatal(err)
		}
		same(t, "merge packed out", down(t, d, po, rows*D), want, tol)
		same(t, "merge packed lse", down(t, d, pl, rows), wl, tol)
	})
	t.Run("merge", func(t *testing.T) {
		rows, D := 6, 16
		o1, o2 := randn(r, rows*D), randn(r, rows*D)
		l1, l2 := randn(r, rows), randn(r, rows)
		l1[1], l2[2] = float32(math.Inf(-1)), float32(math.Inf(-1))
		l1[3], l2[3] = float32(math.Inf(-1)), float32(math.Inf(-1))
		want, wl := append([]float32(nil), o1...), append([]float32(nil), l1...)
		layers.MergeInto(want, wl, o2, l2, D)
		po, pl := up(t, d, o1), up(t, d, l1)
		if err := k.MergeInto(po, pl, up(t, d, o2), up(t, d, l2), rows, D); err != nil {
			t.Fatal(err)
		}
		same(t, "merge out", down(t, d, po, rows*D), want, tol)
		same(t, "merge lse", down(t, d, pl, rows), wl, tol)
	})
}

// The kernels compile as CUDA for a real architecture with clang (no CUDA
// SDK): syntax and type errors fail here, before any GPU sees them.
func TestKernelsCompileToPTX(t *testing.T) {
	clang, err := exec.LookPath("clang-14")
	if err != nil {
		shared.Missing(t, "clang-14 (scripts/setup.sh installs it) to compile the CUDA kernels to PTX")
	}
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	cmd := exec.Command(clang, "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
		"-Xclang", "-target-feature", "-Xclang", "+ptx72", "-include", "prelude_clang.h", "-S", "-o", out, "kernels.cu")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, b)
	}
	ptx, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"star_embed", "star_rmsnorm", "star_rope", "star_swiglu", "star_add", "star_to16", "star_attention", "star_merge"} {
		if !strings.Contains(string(ptx), ".entry "+k+"(") {
			t.Fatalf("PTX lacks the entry %s", k)
		}
	}
}

// attentionCases checks AttentionKV against layers.Attention (causal or
// not, grouped heads, an empty key set, rows over several tiles and a
// two-segment split of the keys in F32 and as bfloat16).
func attentionCases(t *testing.T, d *nccl.Device, k *cuda.Kernels, r *rand.Rand, tol float64) {
	t.Helper()
	for _, c := range []struct {
		nq, nk, H, HKV, D int
		causal            bool
	}{{1, 1, 1, 1, 8, true}, {5, 5, 4, 2, 16, true}, {3, 70, 4, 1, 64, false}, {4, 40, 8, 4, 128, true}, {2, 0, 2, 2, 8, false},
		{37, 100, 8, 2, 64, true}, {20, 20, 16, 1, 32, true}, {9, 45, 4, 4, 128, false}, {6, 33, 2, 1, 256, true}} {
		q, kk, v := randn(r, c.nq*c.H*c.D), randn(r, max(c.nk, 1)*c.HKV*c.D), randn(r, max(c.nk, 1)*c.HKV*c.D)
		want, wlse := make([]float32, c.nq*c.H*c.D), make([]float32, c.nq*c.H)
		sh := layers.AttnShape{H: c.H, HKV: c.HKV, D: c.D}
		layers.Attention(layers.NewCPUReference(1), want, wlse, q, kk, v, c.nq, c.nk, sh, c.causal)
		out, _ := d.Alloc(int64(4 * len(want)))
		lse, _ := d.Alloc(int64(4 * len(wlse)))
		if err := k.Attention(out, lse, up(t, d, q), up(t, d, kk), up(t, d, v), c.nq, c.nk, c.H, c.HKV, c.D, c.causal); err != nil {
			t.Fatal(err)
		}
		same(t, fmt.Sprintf("attention out %+v", c), down(t, d, out, len(want)), want, tol)
		same(t, fmt.Sprintf("attention lse %+v", c), down(t, d, lse, len(wlse)), wlse, tol)
		if c.nk < 2 {
			continue
		}
		// the keys in two segments, stored as bfloat16: the reference sees the rounded values
		n1 := c.nk / 3
		kb, vb := weightstest.Round(kk, weights.BF16), weightstest.Round(v, weights.BF16)
		layers.Attention(layers.NewCPUReference(1), want, wlse, q, kb, vb, c.nq, c.nk, sh, c.causal)
		row := c.HKV * c.D
		k16, v16 := to16(t, d, k, kk), to16(t, d, k, v)
		if err := k.AttentionKV(out, lse, up(t, d, q), k16, v16, n1, k16+nccl.Ptr(2*n1*row), v16+nccl.Ptr(2*n1*row),
			c.nq, c.nk, c.H, c.HKV, c.D, c.causal, 2); err != nil {
			t.Fatal(err)
		}
		same(t, fmt.Sprintf("bf16 two-segment attention out %+v", c), down(t, d, out, len(want)), want, tol)
		same(t, fmt.Sprintf("bf16 two-segment attention lse %+v", c), down(t, d, lse, len(wlse)), wlse, tol)
	}
}

// to16 is x on the device as bfloat16.
func to16(t *testing.T, d *nccl.Device, k *cuda.Kernels, x []float32) nccl.Ptr {
	t.Helper()
	p, err := d.Alloc(int64(2 * len(x)))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.To16(p, up(t, d, x), 2, int64(len(x))); err != nil {
		t.Fatal(err)
	}
	return p
}
