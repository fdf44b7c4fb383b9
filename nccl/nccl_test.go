package nccl_test

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/nccl"
	"github.com/star-attn/star/nccl/standin"
)

// The bindings are tested against the stand-in (nccl/standin) built from
// the test kernels: every entry point star declares, the thread model's
// barriers and shuffles, and the failure paths (in child processes, since
// a process loads its libraries once).

const childEnv = "STAR_NCCL_CHILD"

var standinDir string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" { // a failure-path child: the library dir is set by the parent
		os.Exit(m.Run())
	}
	if os.Getenv("STAR_CUDA_REAL") != "" { // scripts/gpu-check.sh: NVIDIA's libraries on a GPU
		realGPU = true
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "star-standin-")
	if err == nil {
		err = standin.Build(dir, []string{"testdata/test.cu"}, standin.Options{})
	}
	if err != nil {
		os.Stderr.WriteString("nccl tests: cannot build the CUDA stand-in: " + err.Error() + "\n")
	} else {
		standinDir = dir
		os.Setenv("STAR_CUDA_LIBDIR", dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// realGPU: the tests run on NVIDIA's libraries and a GPU (STAR_CUDA_REAL
// set), not on the stand-in.
var realGPU bool

// needDevice skips unless a device is there: the real one, or the
// stand-in.
func needDevice(t *testing.T) {
	t.Helper()
	if !realGPU {
		needStandin(t)
	}
}

func needStandin(t *testing.T) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Skip("child process")
	}
	if realGPU {
		t.Skip("the stand-in's own checks: STAR_CUDA_REAL is set")
	}
	if standinDir == "" {
		shared.Missing(t, "gcc and g++ to build the CUDA stand-in (scripts/setup.sh installs them)")
	}
}

// compileTest compiles testdata/test.cu through NVRTC (the stand-in's)
// with the NVRTC prelude, and loads it.
func compileTest(t *testing.T, d *nccl.Device) *nccl.Module {
	t.Helper()
	pre, err := os.ReadFile("../layers/cuda/prelude_nvrtc.h")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("testdata/test.cu")
	if err != nil {
		t.Fatal(err)
	}
	img, kind, err := nccl.Compile(string(pre)+string(src), "test.cu", d.Arch())
	if err != nil {
		t.Fatal(err)
	}
	if kind != "cubin" && !(realGPU && kind == "ptx") {
		t.Fatalf("image kind %q, want cubin (the stand-in NVRTC makes cubins)", kind)
	}
	t.Logf("test.cu compiled by NVRTC to %s for %s", kind, d.Arch())
	m, err := d.Load(img)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func f32bytes(f []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

func upload(t *testing.T, d *nccl.Device, f []float32) nccl.Ptr {
	t.Helper()
	p, err := d.Alloc(int64(4 * len(f)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Upload(p, f32bytes(f)); err != nil {
		t.Fatal(err)
	}
	return p
}

func download(t *testing.T, d *nccl.Device, p nccl.Ptr, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := d.Download(f32bytes(out), p); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeviceAndKernels(t *testing.T) {
	needDevice(t)
	n, err := nccl.DeviceCount()
	if err != nil || n < 1 || (!realGPU && n != 1) {
		t.Fatalf("DeviceCount = %d, %v; want 1", n, err)
	}
	d, err := nccl.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if realGPU {
		v, _ := nccl.DriverVersion()
		t.Logf("GPU %d: %s, %s, %.1f GiB, bus %s, driver API %d; libraries %v", d.Ordinal, d.Name, d.Arch(), float64(d.TotalMemory)/(1<<30), d.BusID, v, nccl.Libraries())
	}
	if !strings.HasPrefix(d.Arch(), "sm_") || d.TotalMemory <= 0 || (!realGPU && (d.Arch() != "sm_90" || !strings.Contains(d.Name, "stand-in"))) {
		t.Fatalf("device %+v", d)
	}
	if v, err := nccl.DriverVersion(); err != nil || v < nccl.MinDriver {
		t.Fatalf("driver %d, %v", v, err)
	}
	m := compileTest(t, d)
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64}
	px := upload(t, d, x)
	t.Run("axpy", func(t *testing.T) {
		y := make([]float32, 300)
		xs := make([]float32, 300)
		for i := range xs {
			xs[i], y[i] = float32(i), 1
		}
		py, pxs := upload(t, d, y), upload(t, d, xs)
		k, err := m.Kernel("test_axpy")
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Launch(nccl.Dim3{X: 3}, nccl.Dim3{X: 128}, py, pxs, float32(2), int32(300)); err != nil {
			t.Fatal(err)
		}
		for i, v := range download(t, d, py, 300) {
			if v != 1+2*float32(i) {
				t.Fatalf("y[%d] = %g, want %g", i, v, 1+2*float32(i))
			}
		}
	})
	t.Run("warp shuffles", func(t *testing.T) {
		out, _ := d.Alloc(8)
		k, _ := m.Kernel("test_warp_sum")
		if err := k.Launch(nccl.Dim3{X: 1}, nccl.Dim3{X: 64}, out, px); err != nil {
			t.Fatal(err)
		}
		if got := download(t, d, out, 2); got[0] != 528 || got[1] != 1552 {
			t.Fatalf("warp sums %v, want [528 1552]", got)
		}
		b, _ := m.Kernel("test_broadcast")
		if err := b.Launch(nccl.Dim3{X: 1}, nccl.Dim3{X: 32}, out, px, int32(7)); err != nil {
			t.Fatal(err)
		}
		if got := download(t, d, out, 2); got[0] != 8 || got[1] != 8 {
			t.Fatalf("broadcast of lane 7: %v", got)
		}
	})
	t.Run("barrier and shared memory", func(t *testing.T) {
		v := make([]float32, 256)
		for i := range v {
			v[i] = float32(i)
		}
		p := upload(t, d, v)
		k, _ := m.Kernel("test_reverse")
		if err := k.Launch(nccl.Dim3{X: 2}, nccl.Dim3{X: 128}, p); err != nil {
			t.Fatal(err)
		}
		got := download(t, d, p, 256)
		for b := 0; b < 2; b++ {
			for i := 0; i < 128; i++ {
				if got[b*128+i] != float32(b*128+127-i) {
					t.Fatalf("block %d: x[%d] = %g", b, i, got[b*128+i])
				}
			}
		}
	})
	t.Run("unknown kernel", func(t *testing.T) {
		if _, err := m.Kernel("nope"); err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_NOT_FOUND") {
			t.Fatalf("err %v", err)
		}
	})
}

// cuBLASLt's product as star calls it (row-major out = x·wᵀ) equals a
// float64 reference, for F32 weights and 16-bit ones.
func TestBLAS(t *testing.T) {
	needDevice(t)
	d, err := nccl.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := d.NewBLAS()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n, rows, cols = 3, 5, 7
	r := rand.New(rand.NewPCG(1, 2))
	x, w := make([]float32, n*cols), make([]float32, rows*cols)
	for i := range x {
		x[i] = r.Float32() - 0.5
	}
	for i := range w {
		w[i] = r.Float32() - 0.5
	}
	px, pw := upload(t, d, x), upload(t, d, w)
	out, _ := d.Alloc(4 * n * rows)
	if err := b.LinearRows(out, px, pw, n, rows, cols, nccl.F32); err != nil {
		t.Fatal(err)
	}
	got := download(t, d, out, n*rows)
	for i := 0; i < n; i++ {
		for j := 0; j < rows; j++ {
			var s float64
			for k := 0; k < cols; k++ {
				s += float64(x[i*cols+k]) * float64(w[j*cols+k])
			}
			if math.Abs(float64(got[i*rows+j])-s) > 1e-5 {
				t.Fatalf("out[%d,%d] = %g, want %g", i, j, got[i*rows+j], s)
			}
		}
	}
	// BF16: weights and activations rounded to bf16 (truncation here)
	bf := func(f []float32) []byte {
		o := make([]byte, 2*len(f))
		for i, v := range f {
			u := math.Float32bits(v) >> 16
			o[2*i], o[2*i+1] = byte(u), byte(u>>8)
		}
		return o
	}
	pxb, _ := d.Alloc(int64(2 * len(x)))
	pwb, _ := d.Alloc(int64(2 * len(w)))
	d.Upload(pxb, bf(x))
	d.Upload(pwb, bf(w))
	if err := b.Linear16(out, pxb, pwb, n, rows, cols, nccl.BF16); err != nil {
		t.Fatal(err)
	}
	got = download(t, d, out, n*rows)
	for i := 0; i < n*rows; i++ {
		var s float64
		for k := 0; k < cols; k++ {
			s += float64(x[i/rows*cols+k]) * float64(w[i%rows*cols+k])
		}
		if math.Abs(float64(got[i])-s) > 2e-2 {
			t.Fatalf("bf16 out[%d] = %g, want %g within 2e-2", i, got[i], s)
		}
	}
}

// A 1-rank NCCL all-gather: the declarations of ncclUniqueId (by value)
// and ncclAllGather as the library sees them.
func TestNCCLOneRank(t *testing.T) {
	needDevice(t)
	d, err := nccl.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id, err := nccl.NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.NewComm(id, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := []float32{3, 1, 4, 1, 5}
	ps := upload(t, d, src)
	pr, _ := d.Alloc(4 * 5)
	if err := c.AllGatherF32(ps, pr, 5); err != nil {
		t.Fatal(err)
	}
	if got := download(t, d, pr, 5); got[2] != 4 || got[4] != 5 {
		t.Fatalf("all-gather gave %v", got)
	}
	if v, err := nccl.NCCLVersion(); err == nil {
		t.Logf("NCCL %d: a 1-rank all-gather through the hand-written declarations gave %v", v, download(t, d, pr, 5))
	}
	if realGPU {
		return // a real NCCL would wait for the second rank
	}
	t.Setenv("STAR_STANDIN_NCCL_TIMEOUT", "1") // rank 1 never comes
	if _, err := d.NewComm(id, 0, 2); err == nil || !strings.Contains(err.Error(), "ncclCommInitRank") {
		t.Fatalf("two ranks on the stand-in: err %v, want ncclCommInitRank's refusal", err)
	}
}

// Failure paths, each in a child process with its own libraries: the
// message names what is wrong.
func TestLoadFailures(t *testing.T) {
	needStandin(t)
	noSym := t.TempDir()
	if err := standin.Build(noSym, []string{"testdata/test.cu"}, standin.Options{Drop: []string{"cuMemAlloc_v2"}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"missing library", []string{"STAR_CUDA_LIBDIR=" + t.TempDir()}, "no CUDA driver found in STAR_CUDA_LIBDIR="},
		{"missing symbol", []string{"STAR_CUDA_LIBDIR=" + noSym}, "lacks cuMemAlloc_v2"},
		{"driver too old", []string{"STAR_CUDA_LIBDIR=" + standinDir, "STAR_STANDIN_DRIVER=11080"}, "supports CUDA 11.8; star needs 12.0"},
		{"out of device memory", []string{"STAR_CUDA_LIBDIR=" + standinDir, "STAR_STANDIN_MEM=4096"}, "CUDA_ERROR_OUT_OF_MEMORY"},
	}
	exe, _ := os.Executable()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run", "^TestChildOpen$", "-test.v")
			cmd.Env = append(append(os.Environ(), childEnv+"=1"), c.env...)
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), "CHILD ERROR: ") || !strings.Contains(string(out), c.want) {
				t.Fatalf("child output does not report %q:\n%s", c.want, out)
			}
		})
	}
}

// TestChildOpen is the child of TestLoadFailures: it opens device 0 and
// allocates 1 MiB, printing the first error.
func TestChildOpen(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("child of TestLoadFailures only")
	}
	d, err := nccl.Open(0)
	if err == nil {
		_, err = d.Alloc(1 << 20)
		if err != nil && !nccl.OutOfMemory(err) {
			t.Errorf("OutOfMemory(%v) is false", err)
		}
	}
	if err != nil {
		t.Logf("CHILD ERROR: %v", err)
		return
	}
	t.Log("CHILD OK")
}

var _ = filepath.Join
