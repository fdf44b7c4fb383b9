package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/nccl/standin"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// --device cuda end to end on the CUDA stand-in (nccl/standin: the
// kernels' CUDA C compiled for the CPU, cuBLASLt as a host GEMM): the
// GPU path of the binary runs in CI and gives the CPU's answers, alone
// and with two ranks sharing the one device. scripts/gpu-check.sh runs
// the same comparisons on a real GPU.

var (
	standinOnce sync.Once
	standinDir  string
	standinErr  error
)

// useStandin builds the stand-in once and points STAR_CUDA_LIBDIR at it
// for the test.
func useStandin(t *testing.T) {
	t.Helper()
	standinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "star-standin-")
		if err == nil {
			standinDir = dir
			err = standin.Build(dir, []string{filepath.Join("layers", "cuda", "kernels.cu")}, standin.Options{})
		}
		standinErr = err
	})
	if standinErr != nil {
		shared.Missing(t, "the CUDA stand-in could not be built (gcc, g++): %v", standinErr)
	}
	t.Setenv("STAR_CUDA_LIBDIR", standinDir)
}

// bf16Stories is the shared stories260K model with its matrices stored as
// BF16 (its tokenizer kept), written to a temporary GGUF.
func bf16Stories(t *testing.T) string {
	t.Helper()
	src := shared.Path(t, "models/gguf/stories260K.gguf")
	m, err := weights.Load(src, weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys, kv, err := weights.GGUFMetadata(src)
	if err != nil {
		t.Fatal(err)
	}
	var extra []weightstest.GGUFKV
	for _, k := range keys {
		if strings.HasPrefix(k, "tokenizer.") {
			extra = append(extra, weightstest.GGUFKV{Key: k, Value: kv[k]})
		}
	}
	out := filepath.Join(t.TempDir(), "stories260K-bf16.gguf")
	if err := weightstest.WriteGGUFWithMetadata(out, m, weights.BF16, extra); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeviceCUDAMatchesCPU(t *testing.T) {
	useStandin(t)
	prompt := writeFile(t, "p.txt", mpiStory)
	models := []struct {
		name, path string
		tol        float64 // logprobs, relative to max(1, |logprob|)
		mean       float64 // and their mean absolute difference (0: tol)
	}{
		{"F32", shared.Path(t, "models/stories260K/stories260K.bin"), 1e-5, 0},
		// the device's products round activations to BF16 (tensor cores;
		// README's contract of rounded activations: 0.06 a token, mean
		// 1e-2), the CPU's are exact on this machine's default kernels
		{"BF16", bf16Stories(t), 0.06, 1e-2},
	}
	for _, m := range models {
		for _, att := range [][]string{
			{"--attention", "star", "--block-size", "12", "--anchor-size", "6"},
			{"--attention", "global"},
			{"--attention", "ring"},
		} {
			t.Run(m.name+"/"+att[1], func(t *testing.T) {
				args := append([]string{"--model", m.path, "--prompt", prompt, "--max-tokens", "12", "--json", "--threads", "1"}, att...)
				var runs []runJSON
				for _, dev := range []string{"cpu", "cuda"} {
					// a process of its own: this one may have looked for a driver before
					code, out, errOut := starProcess(t, []string{"STAR_CUDA_LIBDIR=" + standinDir}, append(args, "--device", dev)...)
					if code != 0 {
						t.Fatalf("--device %s: exit %d: %s", dev, code, errOut)
					}
					runs = append(runs, parseRun(t, out))
				}
				sameRunRel(t, "cuda (stand-in) vs cpu", runs[0], runs[1], m.tol, m.mean)
			})
		}
	}
}

// sameRunRel is sameRun with logprobs compared relative to max(1, |ref|)
// (within tol) and on average (mean absolute difference within mean; 0:
// tol).
func sameRunRel(t *testing.T, what string, ref, got runJSON, tol, mean float64) {
	t.Helper()
	if fmt.Sprint(ref.Tokens) != fmt.Sprint(got.Tokens) {
		t.Fatalf("%s: tokens differ\n%v\n%v", what, ref.Tokens, got.Tokens)
	}
	if mean == 0 {
		mean = tol
	}
	var worst, sum float64
	for i := range ref.Logprobs {
		d := math.Abs(ref.Logprobs[i] - got.Logprobs[i])
		worst, sum = math.Max(worst, d/math.Max(1, math.Abs(ref.Logprobs[i]))), sum+d
	}
	avg := sum / float64(max(len(ref.Logprobs), 1))
	if worst > tol || avg > mean {
		t.Fatalf("%s: logprobs differ by %.3g relative (tolerance %g), %.3g on average (tolerance %g)", what, worst, tol, avg, mean)
	}
	t.Logf("%s: %d tokens equal, logprobs differ by %.2g relative at most (tolerance %g), %.2g on average (%g)", what, len(ref.Tokens), worst, tol, avg, mean)
}

// Two ranks on GPUs of the stand-in: on one device (each rank's blocks
// there, the partials merged through MPI from the host) and on a device
// each (merged on the devices through NCCL: the stand-in's NCCL meets its
// ranks through files). Both give one CPU process's answer.
func TestMPIDeviceCUDA(t *testing.T) {
	needMPI(t)
	useStandin(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	base := []string{"--model", model, "--prompt", prompt, "--max-tokens", "12", "--json", "--threads", "1"}
	for _, c := range []struct {
		name, devices, exchange string
		att                     []string
	}{
		{"star/one device", "1", "mpi-gather", []string{"--attention", "star", "--block-size", "12", "--anchor-size", "6"}},
		{"ring/one device", "1", "mpi-gather", []string{"--attention", "ring"}},
		{"star/a device each", "2", "nccl", []string{"--attention", "star", "--block-size", "12", "--anchor-size", "6"}},
		{"star/a device each/allreduce", "2", "nccl", []string{"--attention", "star", "--block-size", "12", "--merge", "allreduce"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{}, base...), c.att...)
			code, out, errOut := starProcess(t, nil, append(args, "--device", "cpu")...)
			if code != 0 {
				t.Fatalf("cpu: exit %d: %s", code, errOut)
			}
			ref := parseRun(t, out)
			t.Setenv("STAR_STANDIN_DEVICES", c.devices)
			code, out, errOut, _ = mpirun(t, mpiLimit, append([]string{"-np", "2"}, append(args, "--device", "cuda")...)...)
			if code != 0 {
				t.Fatalf("mpirun -np 2 --device cuda: exit %d\n%s", code, errOut)
			}
			got := parseRun(t, out)
			sameRunRel(t, "2 ranks on "+c.devices+" stand-in device(s) vs one CPU process", ref, got, 1e-5, 0)
			if len(got.Ranks) != 2 {
				t.Fatalf("%d rank stats", len(got.Ranks))
			}
			for _, r := range got.Ranks {
				if r.Exchange != c.exchange || !strings.HasPrefix(r.Device, "cuda:") {
					t.Fatalf("rank %d on %q merged by %q, want %q on a cuda device", r.Rank, r.Device, r.Exchange, c.exchange)
				}
			}
			if c.devices == "2" && (got.Ranks[0].Device == got.Ranks[1].Device) {
				t.Fatalf("both ranks on %s", got.Ranks[0].Device)
			}
			if c.exchange != "nccl" && !strings.Contains(errOut, "phase 2 merges through MPI from the host: ranks 0 and 1 share GPU") {
				t.Fatalf("no line saying why not NCCL:\n%s", errOut)
			}
		})
	}
}

// What --device refuses, in one line each, and auto's fallback.
func TestDeviceChoice(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	prompt := writeFile(t, "p.txt", mpiStory)
	args := []string{"--model", model, "--prompt", prompt, "--max-tokens", "2", "--json"}
	empty := t.TempDir()
	cases := []struct {
		name, device, libdir string
		code                 int
		stderr               string // must contain
	}{
		{"unknown device", "gpu", empty, 1, `--device "gpu": use auto, cpu or cuda`},
		{"cuda without a driver", "cuda", empty, 1, "--device cuda: no CUDA driver found"},
		{"auto without a driver", "auto", empty, 0, "star: computing on CPU (--device auto): no CUDA driver found"},
		{"cpu", "cpu", empty, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// a process of its own: a driver this process loaded stays loaded
			code, _, errOut := starProcess(t, []string{"STAR_CUDA_LIBDIR=" + c.libdir}, append(args, "--device", c.device)...)
			if code != c.code || !strings.Contains(errOut, c.stderr) {
				t.Fatalf("exit %d, want %d; stderr must contain %q:\n%s", code, c.code, c.stderr, errOut)
			}
			if c.code != 0 && strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Fatalf("want one line, got:\n%s", errOut)
			}
			if c.device == "cpu" && errOut != "" {
				t.Fatalf("--device cpu printed %q", errOut)
			}
		})
	}
	t.Run("quantized weights on cuda", func(t *testing.T) {
		useStandin(t)
		q := shared.Path(t, "reference/quant")
		files, _ := filepath.Glob(filepath.Join(q, "*Q8_0*.gguf"))
		if len(files) == 0 {
			shared.Missing(t, "no Q8_0 GGUF in %s", q)
		}
		code, _, errOut := starProcess(t, []string{"STAR_CUDA_LIBDIR=" + standinDir}, "--model", files[0], "--prompt", prompt, "--max-tokens", "2", "--device", "cuda")
		if code == 0 || !strings.Contains(errOut, "Q8_0 weights are not supported on CUDA devices") || !strings.Contains(errOut, "--device cpu") {
			t.Fatalf("exit %d; want a refusal naming Q8_0 and --device cpu:\n%s", code, errOut)
		}
	})
}

// starProcess runs star (this test binary as main) in a process of its
// own with env added.
func starProcess(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "STAR_AS_MAIN=1"), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

// A document whose K/V does not fit in the device's free memory is
// refused before it is encoded, naming the device, the parts and what to
// do; every rank exits, nothing hangs.
func TestDeviceMemoryRefusal(t *testing.T) {
	useStandin(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	wb := deviceWeightBytes(t, model)
	prompt := writeFile(t, "p.txt", mpiStory)
	env := []string{"STAR_CUDA_LIBDIR=" + standinDir, fmt.Sprintf("STAR_STANDIN_MEM=%d", wb+16<<10)}
	code, out, errOut := starProcess(t, env, "--model", model, "--prompt", prompt, "--max-tokens", "2", "--device", "cuda", "--json")
	if code == 0 || out != "" || !strings.Contains(errOut, "of device memory") || !strings.Contains(errOut, "cuda:0") || !strings.Contains(errOut, "--kv-dtype f16") {
		t.Fatalf("exit %d, stdout %q; want a refusal naming device memory, cuda:0 and --kv-dtype f16:\n%s", code, out, errOut)
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
}

// inspect reports what each rank holds on a GPU (the numbers the
// backend allocates: layers/cuda's TestDeviceFootprint) and refuses a
// layout that does not fit, before anything is allocated.
func TestInspectDevice(t *testing.T) {
	useStandin(t)
	args := []string{"inspect", "--load-format", "dummy", "--model-config", "configs/llama-3.1-8b.json", "--dtype", "bf16",
		"--context", "131072", "--block-size", "16384", "--json"}
	for _, c := range []struct {
		mem   int64
		ranks string
		code  int
	}{{141 << 30, "1", 0}, {141 << 30, "8", 0}, {16 << 30, "1", 1}} {
		env := []string{"STAR_CUDA_LIBDIR=" + standinDir, fmt.Sprintf("STAR_STANDIN_MEM=%d", c.mem)}
		code, out, errOut := starProcess(t, env, append(args, "--ranks", c.ranks, "--device", "cuda")...)
		if code != c.code {
			t.Fatalf("%d GiB, %s ranks: exit %d, want %d\n%s", c.mem>>30, c.ranks, code, c.code, errOut)
		}
		var rep struct {
			Device *struct {
				Name       string `json:"name"`
				TotalBytes int64  `json:"total_bytes"`
			} `json:"device"`
			Ranks []struct {
				KV     int64 `json:"kv_cache_bytes"`
				Device int64 `json:"device_bytes"`
			} `json:"ranks"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if rep.Device == nil || rep.Device.TotalBytes != c.mem || len(rep.Ranks) == 0 {
			t.Fatalf("device %+v, %d ranks: want the stand-in's %d bytes", rep.Device, len(rep.Ranks), c.mem)
		}
		for r, m := range rep.Ranks {
			if m.Device <= m.KV+15<<30 { // 8B BF16 weights are 15 GiB
				t.Fatalf("rank %d holds %d bytes on the device with %d of K/V: the weights are missing", r, m.Device, m.KV)
			}
		}
		if c.code != 0 && !strings.Contains(errOut, "of device memory") {
			t.Fatalf("refusal without the reason:\n%s", errOut)
		}
		t.Logf("%s ranks on %d GiB: rank 0 needs %.1f GiB (exit %d) %s", c.ranks, c.mem>>30, float64(rep.Ranks[0].Device)/(1<<30), code, strings.TrimSpace(errOut))
	}
	// --device cpu: no device section
	code, out, errOut := starProcess(t, nil, append(args, "--ranks", "1", "--device", "cpu")...)
	if code != 0 || strings.Contains(out, `"device":{`) {
		t.Fatalf("--device cpu: exit %d, %s %s", code, out, errOut)
	}
}

// A batch job on a GPU: every document's caches are freed when the next
// one starts (the device has room for one document at a time besides the
// weights), the answers are the CPU's, and phase-1 K/V saved from the
// device (--kv-dir) are read back by CPU ranks and the other way round.
func TestDeviceJobsAndKVDir(t *testing.T) {
	useStandin(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	wb := deviceWeightBytes(t, model)
	in := writeJobInput(t, 6, false)
	dir := t.TempDir()
	// 4.5 MiB besides the weights: a document needs 3.1 (K/V, activations), two do not fit
	env := []string{"STAR_CUDA_LIBDIR=" + standinDir, fmt.Sprintf("STAR_STANDIN_MEM=%d", wb+9<<19)}
	job := func(name, device, kvdir string) (map[string]jobLine, string) {
		out := filepath.Join(dir, name+".jsonl")
		args := []string{"jobs", "run", "--model", model, "--input", in, "--output", out, "--threads", "1", "--max-tokens", "8",
			"--block-size", "16", "--anchor-size", "8", "--device", device}
		if kvdir != "" {
			args = append(args, "--kv-dir", kvdir)
		}
		code, _, errOut := starProcess(t, env, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", name, code, errOut)
		}
		return readJobOutput(t, out), errOut
	}
	same := func(what string, got, want map[string]jobLine) {
		t.Helper()
		if len(got) != len(want) || len(want) != 12 {
			t.Fatalf("%s: %d results, want %d = 12", what, len(got), len(want))
		}
		for k, w := range want {
			if g := got[k]; g.Error != "" || !slices.Equal(g.Tokens, w.Tokens) {
				t.Fatalf("%s: %s: %v (%q), want %v", what, k, g.Tokens, g.Error, w.Tokens)
			}
		}
	}
	ref, _ := job("cpu", "cpu", "")
	got, _ := job("cuda", "cuda", "")
	same("cuda job vs cpu job", got, ref)
	for _, c := range []struct{ save, load string }{{"cuda", "cpu"}, {"cpu", "cuda"}} {
		kv := filepath.Join(dir, "kv-"+c.save)
		job("save-"+c.save, c.save, kv)
		if files, _ := filepath.Glob(filepath.Join(kv, "*")); len(files) == 0 {
			t.Fatalf("--device %s wrote no K/V files to %s", c.save, kv)
		}
		got, errOut := job("load-"+c.load+"-from-"+c.save, c.load, kv)
		if strings.Contains(errOut, "recomputing phase 1") {
			t.Fatalf("--device %s did not read the K/V --device %s saved:\n%s", c.load, c.save, errOut)
		}
		same(fmt.Sprintf("--device %s on K/V saved by --device %s", c.load, c.save), got, ref)
	}
}

// deviceWeightBytes is what the weights of the model at path take on a GPU.
func deviceWeightBytes(t *testing.T, path string) int64 {
	t.Helper()
	m, err := weights.Load(path, weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return rank.DeviceWeightBytes(m)
}
