package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// `star inspect` predicts a run's peak resident memory within 10%: star
// bench (a separate process) measures it for a model whose K/V and
// activations dominate, in three layouts, against inspect's total.
func TestInspectPredictsPeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs phase 1 on 8192 tokens three times")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "config.json", `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512,
		"intermediate_size": 1024, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 8,
		"rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 16384, "vocab_size": 2000,
		"tie_word_embeddings": false, "hidden_act": "silu", "torch_dtype": "float32"}`)
	common := []string{"--load-format", "dummy", "--model-config", cfg, "--dtype", "f32", "--context", "8192"}
	for _, layout := range [][]string{{}, {"--block-size", "4096"}, {"--block-size", "2048", "--anchor-size", "512"}} {
		name := strings.Join(layout, " ")
		args := append(append([]string{"bench"}, common...), layout...)
		cmd := exec.Command(exe, append(args, "--decode-tokens", "1", "--score-tokens", "0", "--json")...)
		cmd.Env = append(os.Environ(), "STAR_AS_MAIN=1")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: bench: %v: %s", name, err, e.String())
		}
		var row struct {
			Peak int64 `json:"peak_rss_bytes"`
		}
		if err := json.Unmarshal(o.Bytes(), &row); err != nil || row.Peak <= 0 {
			t.Fatalf("%s: bench output %q: %v", name, o.String(), err)
		}
		code, out, errOut := star(t, append(append([]string{"inspect"}, common...), append(layout, "--json")...)...)
		if code != 0 {
			t.Fatalf("%s: inspect: %s", name, errOut)
		}
		var rep struct {
			Memory struct {
				Total int64 `json:"total_bytes"`
			} `json:"memory"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		ratio := float64(rep.Memory.Total) / float64(row.Peak)
		t.Logf("%s: inspect %.1f MiB, measured peak RSS %.1f MiB (%+.1f%%)", name, float64(rep.Memory.Total)/(1<<20), float64(row.Peak)/(1<<20), 100*(ratio-1))
		if math.Abs(ratio-1) > 0.10 {
			t.Errorf("%s: inspect predicts %d bytes, the run peaked at %d (%+.1f%%, tolerance 10%%)", name, rep.Memory.Total, row.Peak, 100*(ratio-1))
		}
	}
}
