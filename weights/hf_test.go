package weights_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

func TestHFRoundTrip(t *testing.T) {
	for _, tc := range roundTripConfigs {
		for _, dt := range []weights.DType{weights.F32, weights.BF16, weights.F16} {
			for _, shards := range []int{1, 3} {
				name := tc.name + "/" + dt.String() + "/" + map[int]string{1: "single", 3: "sharded"}[shards]
				t.Run(name, func(t *testing.T) {
					src := weightstest.RandomModel(tc.cfg, 7)
					dir := t.TempDir()
					if err := weightstest.WriteHF(dir, src, dt, shards); err != nil {
						t.Fatal(err)
					}
					m := load(t, dir)
					if m.Format != "hf" || !m.Config.RopeHalfSplit {
						t.Errorf("format %q RopeHalfSplit %v, want hf true", m.Format, m.Config.RopeHalfSplit)
					}
					// HF stores wq/wk half-split; compareModels un-permutes them.
					compareModels(t, m, src, dt, dt)
					if shards == 3 {
						if _, err := os.Stat(filepath.Join(dir, "model-00003-of-00003.safetensors")); err != nil {
							t.Error(err)
						}
					}
				})
			}
		}
	}
}

// The half-split permutation must really move rows: compare the stored
// q_proj against the source wq directly.
func TestHFWritesHalfSplitLayout(t *testing.T) {
	cfg := weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 4, SeqLen: 4}
	src := weightstest.RandomModel(cfg, 8)
	dir := t.TempDir()
	if err := weightstest.WriteHF(dir, src, weights.F32, 1); err != nil {
		t.Fatal(err)
	}
	m := load(t, dir)
	got, want := m.Layers[0].WQ.Floats(), src.Layers[0].WQ.Floats()
	d, half, cols := 4, 2, 8
	for h := 0; h < 2; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				hfRow, adjRow := h*d+j*half+i, h*d+2*i+j
				if got[hfRow*cols] != want[adjRow*cols] {
					t.Errorf("HF row %d should hold adjacent-layout row %d", hfRow, adjRow)
				}
			}
		}
	}
	if got[1*cols] == want[1*cols] {
		t.Errorf("q_proj row 1 equals wq row 1: no permutation happened")
	}
}

func TestHFPathsAndLlama3Scaling(t *testing.T) {
	src := weightstest.RandomModel(llama3Config(), 9)
	single, sharded := t.TempDir(), t.TempDir()
	if err := weightstest.WriteHF(single, src, weights.BF16, 1); err != nil {
		t.Fatal(err)
	}
	if err := weightstest.WriteHF(sharded, src, weights.BF16, 2); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		single, filepath.Join(single, "config.json"), filepath.Join(single, "model.safetensors"),
		sharded, filepath.Join(sharded, "model.safetensors.index.json"), filepath.Join(sharded, "model-00002-of-00002.safetensors"),
	} {
		m := load(t, p)
		compareModels(t, m, src, weights.BF16, weights.BF16)
		if m.Tokenizer != nil {
			t.Errorf("%s: tokenizer without tokenizer.json", p)
		}
	}
}

func TestHFConfigDefaults(t *testing.T) {
	c, tied, err := weights.ParseHFConfigBytes([]byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":64,
		"intermediate_size":100,"num_hidden_layers":2,"num_attention_heads":4,"rms_norm_eps":1e-6,
		"max_position_embeddings":2048,"vocab_size":300,"rope_scaling":null,"torch_dtype":"bfloat16"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := weights.Config{Arch: "llama", Dim: 64, HiddenDim: 100, NLayers: 2, NHeads: 4, NKVHeads: 4, HeadDim: 16,
		VocabSize: 300, SeqLen: 2048, NormEps: 1e-6, RopeTheta: 10000, RopeHalfSplit: true}
	if c != want || tied {
		t.Errorf("got %+v tied %v\nwant %+v", c, tied, want)
	}
	// Newer transformers: rope_parameters carries theta and the scaling.
	c, _, err = weights.ParseHFConfigBytes([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":100,
		"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,
		"max_position_embeddings":131072,"vocab_size":300,"tie_word_embeddings":true,
		"rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":32.0,"low_freq_factor":1.0,
		"high_freq_factor":4.0,"original_max_position_embeddings":8192}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 500000 || c.RopeScaling == nil || c.RopeScaling.Factor != 32 || c.NKVHeads != 2 {
		t.Errorf("rope_parameters: %+v %+v", c, c.RopeScaling)
	}
}

func TestHFTokenizerJSON(t *testing.T) {
	tokJSON := shared.Path(t, "tokenizers/llama3/tokenizer.json")
	cfg := weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 128256, SeqLen: 16, TiedEmbeddings: true}
	src := weightstest.RandomModel(cfg, 10)
	dir := t.TempDir()
	if err := weightstest.WriteHF(dir, src, weights.BF16, 1); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tokJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := weights.Load(dir, weights.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 128256 {
		t.Errorf("tokenizer from tokenizer.json: %v", m.Tokenizer)
	}
}

func TestHFBadInput(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32}, 11)
	base := func() (map[string]any, []weightstest.STTensor) {
		cfg, ts, err := weightstest.HFContent(src, weights.BF16)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, ts
	}
	write := func(t *testing.T, cfg map[string]any, ts []weightstest.STTensor, shards int) string {
		dir := t.TempDir()
		if err := weightstest.WriteHFContent(dir, cfg, ts, shards); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	withConfig := func(key string, v any) func(t *testing.T) string {
		return func(t *testing.T) string {
			cfg, ts := base()
			if v == nil {
				delete(cfg, key)
			} else {
				cfg[key] = v
			}
			return write(t, cfg, ts, 1)
		}
	}
	editTensor := func(name string, f func(*weightstest.STTensor)) func(t *testing.T) string {
		return func(t *testing.T) string {
			cfg, ts := base()
			var out []weightstest.STTensor
			for i := range ts {
				if ts[i].Name == name {
					f(&ts[i])
					if ts[i].Name == "" {
						continue
					}
				}
				out = append(out, ts[i])
			}
			return write(t, cfg, out, 1)
		}
	}
	editFile := func(shards int, file string, f func([]byte) []byte) func(t *testing.T) string {
		return func(t *testing.T) string {
			cfg, ts := base()
			dir := write(t, cfg, ts, shards)
			p := filepath.Join(dir, file)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f(b), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}
	}
	editIndex := func(f func(weightMap map[string]string)) func(t *testing.T) string {
		return editFile(3, "model.safetensors.index.json", func(b []byte) []byte {
			var idx map[string]any
			json.Unmarshal(b, &idx)
			wm := map[string]string{}
			for k, v := range idx["weight_map"].(map[string]any) {
				wm[k] = v.(string)
			}
			f(wm)
			idx["weight_map"] = wm
			out, _ := json.Marshal(idx)
			return out
		})
	}
	header := func(b []byte) (map[string]any, []byte) {
		n := binary.LittleEndian.Uint64(b)
		var h map[string]any
		if err := json.Unmarshal(b[8:8+n], &h); err != nil {
			panic(err)
		}
		return h, b[8+n:]
	}
	rewriteHeader := func(f func(h map[string]any)) func([]byte) []byte {
		return func(b []byte) []byte {
			h, body := header(b)
			f(h)
			hb, _ := json.Marshal(h)
			out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
			return append(append(out, hb...), body...)
		}
	}
	q0 := "model.layers.0.self_attn.q_proj.weight"

	cases := []struct {
		name string
		make func(t *testing.T) string
		want []string
	}{
		{"unsupported architecture", func(t *testing.T) string {
			cfg, ts := base()
			cfg["architectures"] = []string{"MistralForCausalLM"}
			cfg["model_type"] = "mistral"
			return write(t, cfg, ts, 1)
		}, []string{"unsupported architecture", "MistralForCausalLM"}},
		{"missing hidden_size", withConfig("hidden_size", nil), []string{"hidden_size"}},
		{"missing rms_norm_eps", withConfig("rms_norm_eps", nil), []string{"rms_norm_eps"}},
		{"zero layers", withConfig("num_hidden_layers", 0), []string{"num_hidden_layers"}},
		{"yarn scaling", withConfig("rope_scaling", map[string]any{"rope_type": "yarn", "factor": 4.0}), []string{"rope_scaling", "yarn"}},
		{"llama3 scaling without factor", withConfig("rope_scaling", map[string]any{"rope_type": "llama3"}), []string{"rope_scaling.factor"}},
		{"huge context", withConfig("max_position_embeddings", 1<<40), []string{"max_position_embeddings"}},
		{"too many layers", withConfig("num_hidden_layers", 1<<20), []string{"num_hidden_layers", "tensors"}},
		{"gelu", withConfig("hidden_act", "gelu"), []string{"hidden_act"}},
		{"attention bias", withConfig("attention_bias", true), []string{"attention_bias"}},
		{"config not JSON", func(t *testing.T) string {
			cfg, ts := base()
			dir := write(t, cfg, ts, 1)
			os.WriteFile(filepath.Join(dir, "config.json"), []byte("{not json"), 0o644)
			return dir
		}, []string{"config.json", "JSON"}},
		{"vocab mismatch", withConfig("vocab_size", 21), []string{"model.embed_tokens.weight", "shape"}},
		{"missing tensor", editTensor("model.layers.1.mlp.up_proj.weight", func(s *weightstest.STTensor) { s.Name = "" }),
			[]string{"model.layers.1.mlp.up_proj.weight", "missing"}},
		{"missing embedding", editTensor("model.embed_tokens.weight", func(s *weightstest.STTensor) { s.Name = "" }),
			[]string{"model.embed_tokens.weight", "missing"}},
		{"unsupported dtype", editTensor(q0, func(s *weightstest.STTensor) { s.DType = "I8"; s.Data = s.Data[:len(s.Data)/2] }),
			[]string{q0, "I8", "only F32, F16 and BF16"}},
		{"unknown dtype", editTensor(q0, func(s *weightstest.STTensor) { s.DType = "Q4" }), []string{q0, "Q4"}},
		{"wrong shape", editTensor("model.layers.0.self_attn.k_proj.weight", func(s *weightstest.STTensor) { s.Shape = []int{16, 8} }),
			[]string{"model.layers.0.self_attn.k_proj.weight", "shape [16 8]", "expected [8 16]"}},
		{"data_offsets mismatch", editTensor(q0, func(s *weightstest.STTensor) { s.Data = append(s.Data, 0, 0) }),
			[]string{q0, "data_offsets", "needs"}},
		{"data_offsets past EOF", editFile(1, "model.safetensors", rewriteHeader(func(h map[string]any) {
			h[q0].(map[string]any)["data_offsets"] = []int{1 << 40, 1<<40 + 512}
		})), []string{q0, "data_offsets"}},
		{"negative data_offsets", editFile(1, "model.safetensors", rewriteHeader(func(h map[string]any) {
			h[q0].(map[string]any)["data_offsets"] = []int{-2, 510}
		})), []string{q0, "data_offsets"}},
		{"huge shape", editFile(1, "model.safetensors", rewriteHeader(func(h map[string]any) {
			h[q0].(map[string]any)["shape"] = []int64{1 << 62, 1 << 62}
		})), []string{q0, "shape"}},
		{"truncated data", editFile(1, "model.safetensors", func(b []byte) []byte { return b[:len(b)-3] }),
			[]string{"model.safetensors", "data_offsets"}},
		{"truncated header", editFile(1, "model.safetensors", func(b []byte) []byte { return b[:100] }),
			[]string{"model.safetensors", "header length"}},
		{"too short", editFile(1, "model.safetensors", func(b []byte) []byte { return b[:5] }),
			[]string{"model.safetensors", "truncated"}},
		{"huge header length", editFile(1, "model.safetensors", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b, 1<<62)
			return b
		}), []string{"model.safetensors", "header length"}},
		{"header not JSON", editFile(1, "model.safetensors", func(b []byte) []byte {
			b[8] = '['
			return b
		}), []string{"model.safetensors", "JSON"}},
		{"shard missing", func(t *testing.T) string {
			cfg, ts := base()
			dir := write(t, cfg, ts, 3)
			os.Remove(filepath.Join(dir, "model-00002-of-00003.safetensors"))
			return dir
		}, []string{"model-00002-of-00003.safetensors", "model.safetensors.index.json"}},
		{"index path traversal", editIndex(func(wm map[string]string) { wm[q0] = "../../etc/passwd" }),
			[]string{q0, "../../etc/passwd", "not a file name"}},
		{"index names wrong shard", editIndex(func(wm map[string]string) { wm[q0] = "model-00003-of-00003.safetensors" }),
			[]string{q0, "model-00003-of-00003.safetensors", "missing although"}},
		{"index lacks tensor", editIndex(func(wm map[string]string) { delete(wm, "model.norm.weight") }),
			[]string{"model.norm.weight", "missing"}},
		{"index not JSON", editFile(3, "model.safetensors.index.json", func([]byte) []byte { return []byte("[]") }),
			[]string{"model.safetensors.index.json", "JSON"}},
		{"no weights", func(t *testing.T) string {
			cfg, ts := base()
			dir := write(t, cfg, ts, 1)
			os.Remove(filepath.Join(dir, "model.safetensors"))
			return dir
		}, []string{"model.safetensors", "neither"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectPathError(t, c.make(t), c.want...) })
	}
}

// TestHFRoPEEquivalence checks the meaning of the wq/wk permutation, not
// just that it round-trips: attention scores after RoPE, computed with
// adjacent pairs (2i, 2i+1) on the source model and with half-split pairs
// (i, i+d/2) on the loaded HF model, must agree.
func TestHFRoPEEquivalence(t *testing.T) {
	cfg := weights.Config{Dim: 32, HiddenDim: 16, NLayers: 1, NHeads: 4, NKVHeads: 2, VocabSize: 8, SeqLen: 64}
	src := weightstest.RandomModel(cfg, 12)
	dir := t.TempDir()
	if err := weightstest.WriteHF(dir, src, weights.F32, 1); err != nil {
		t.Fatal(err)
	}
	hf := load(t, dir)
	x := src.TokEmb.Floats()[3*cfg.Dim : 4*cfg.Dim]
	matvec := func(w *weights.Tensor) []float64 {
		v := w.Floats()
		out := make([]float64, w.Rows())
		for r := range out {
			for c, xv := range x {
				out[r] += float64(v[r*w.Cols()+c]) * float64(xv)
			}
		}
		return out
	}
	rope := func(v []float64, pos int, halfSplit bool) {
		d := cfg.Dim / cfg.NHeads
		for h := 0; h < len(v)/d; h++ {
			for i := 0; i < d/2; i++ {
				a, b := h*d+2*i, h*d+2*i+1
				if halfSplit {
					a, b = h*d+i, h*d+i+d/2
				}
				th := float64(pos) * math.Pow(10000, -float64(2*i)/float64(d))
				va, vb := v[a], v[b]
				v[a], v[b] = va*math.Cos(th)-vb*math.Sin(th), va*math.Sin(th)+vb*math.Cos(th)
			}
		}
	}
	scores := func(m *weights.Model, halfSplit bool) []float64 {
		q, k := matvec(&m.Layers[0].WQ), matvec(&m.Layers[0].WK)
		rope(q, 7, halfSplit)
		rope(k, 2, halfSplit)
		d := cfg.Dim / cfg.NHeads
		var out []float64
		for h := 0; h < cfg.NHeads; h++ {
			kh := h / (cfg.NHeads / cfg.NKVHeads)
			s := 0.0
			for i := 0; i < d; i++ {
				s += q[h*d+i] * k[kh*d+i]
			}
			out = append(out, s)
		}
		return out
	}
	want, got := scores(src, false), scores(hf, true)
	for h := range want {
		if math.Abs(got[h]-want[h]) > 1e-9*(1+math.Abs(want[h])) {
			t.Errorf("head %d: score %g with HF layout, %g with adjacent layout", h, got[h], want[h])
		}
	}
	// And the permutation matters: half-split RoPE on unpermuted weights
	// gives different scores.
	if bad := scores(src, true); math.Abs(bad[0]-want[0]) < 1e-6 {
		t.Errorf("test is not sensitive to the layout")
	}
}
