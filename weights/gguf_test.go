package weights_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

func load(t testing.TB, path string) *weights.Model {
	t.Helper()
	m, err := weights.Load(path, weights.Options{})
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// equalBits reports whether two tensors have identical dtype, shape and bytes.
func equalBits(t *testing.T, what string, got, want *weights.Tensor) {
	t.Helper()
	if got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		t.Errorf("%s: got %v %v, want %v %v", what, got.DType, got.Shape, want.DType, want.Shape)
		return
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("%s (%s vs %s): data differ", what, got.Name, want.Name)
	}
}

func TestGGUFStories260KMatchesLlama2C(t *testing.T) {
	g := load(t, shared.Path(t, "models/gguf/stories260K.gguf"))
	b := load(t, shared.Path(t, "models/stories260K/stories260K.bin"))

	want := weights.Config{
		Arch: "llama", Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, HeadDim: 8,
		VocabSize: 512, SeqLen: 128, NormEps: 1e-5, RopeTheta: 10000,
		// The converter writes output.weight (a copy of token_embd), so
		// the GGUF model is not marked tied.
		TiedEmbeddings: false,
	}
	if fmt.Sprintf("%+v", g.Config) != fmt.Sprintf("%+v", want) {
		t.Errorf("config:\n got %+v\nwant %+v", g.Config, want)
	}
	if g.Format != "gguf" || g.DType() != weights.F32 {
		t.Errorf("format %q dtype %v, want gguf F32", g.Format, g.DType())
	}
	if g.Tokenizer == nil || g.Tokenizer.VocabSize() != 512 || g.Tokenizer.BOS() != 1 {
		t.Errorf("GGUF tokenizer: %v", g.Tokenizer)
	}
	// The llama2.c file says context 512; the GGUF converter wrote 128.
	if b.Config.SeqLen != 512 {
		t.Errorf("llama2.c seq_len %d, want 512", b.Config.SeqLen)
	}

	// llama.cpp's llama2.c converter copies the arrays unpermuted: wq and wk
	// are bitwise equal, because llama2.c and GGUF "llama" share the
	// adjacent-pair RoPE layout (only HF->GGUF conversion permutes).
	equalBits(t, "token embedding", &g.TokEmb, &b.TokEmb)
	equalBits(t, "output (GGUF copy of the tied embedding)", &g.Output, &b.TokEmb)
	equalBits(t, "final norm", &g.FinalNorm, &b.FinalNorm)
	for i := range b.Layers {
		gl, bl := &g.Layers[i], &b.Layers[i]
		for _, p := range []struct {
			name string
			g, b *weights.Tensor
		}{
			{"attn_norm", &gl.AttnNorm, &bl.AttnNorm}, {"wq", &gl.WQ, &bl.WQ}, {"wk", &gl.WK, &bl.WK},
			{"wv", &gl.WV, &bl.WV}, {"wo", &gl.WO, &bl.WO}, {"ffn_norm", &gl.FFNNorm, &bl.FFNNorm},
			{"w1", &gl.W1, &bl.W1}, {"w2", &gl.W2, &bl.W2}, {"w3", &gl.W3, &bl.W3},
		} {
			equalBits(t, fmt.Sprintf("layer %d %s", i, p.name), p.g, p.b)
		}
	}
	if got := g.Layers[2].WK.Shape; fmt.Sprint(got) != "[32 64]" {
		t.Errorf("blk.2.attn_k shape %v, want [32 64]", got)
	}
}

func TestGGUFTinyRandomLlama2(t *testing.T) {
	m := load(t, shared.Path(t, "models/gguf/tiny-random-llama2.gguf"))
	want := weights.Config{
		Arch: "llama", Dim: 8, HiddenDim: 32, NLayers: 1, NHeads: 2, NKVHeads: 2, HeadDim: 4,
		VocabSize: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000,
	}
	if fmt.Sprintf("%+v", m.Config) != fmt.Sprintf("%+v", want) {
		t.Errorf("config:\n got %+v\nwant %+v", m.Config, want)
	}
	if m.DType() != weights.F16 || m.TokEmb.DType != weights.F16 || m.FinalNorm.DType != weights.F32 {
		t.Errorf("dtypes: layers %v, embedding %v, norm %v; want F16, F16, F32", m.DType(), m.TokEmb.DType, m.FinalNorm.DType)
	}
	if fmt.Sprint(m.TokEmb.Shape, m.Output.Shape, m.Layers[0].W2.Shape) != "[32000 8] [32000 8] [8 32]" {
		t.Errorf("shapes: emb %v, output %v, ffn_down %v", m.TokEmb.Shape, m.Output.Shape, m.Layers[0].W2.Shape)
	}
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 32000 {
		t.Errorf("tokenizer: %v", m.Tokenizer)
	}
	// Values read independently from the file (offsets computed by hand).
	row := func(tn *weights.Tensor, r int) []float32 {
		out := make([]float32, tn.Cols())
		tn.RowsTo(out, r, 1)
		return out
	}
	checks := []struct {
		what string
		got  []float32
		want []float32
	}{
		{"token_embd row 31999", row(&m.TokEmb, 31999)[:3], []float32{0.0030269622802734375, -0.0377197265625, 0.007541656494140625}},
		{"attn_q row 1", row(&m.Layers[0].WQ, 1)[:2], []float32{0.0072784423828125, 0.0092315673828125}},
		{"ffn_down row 7 tail", row(&m.Layers[0].W2, 7)[28:], []float32{0.0250244140625, 0.0105743408203125, 0.015594482421875, -0.0231170654296875}},
		{"output row 5", row(&m.Output, 5)[:2], []float32{0.0074462890625, 0.026519775390625}},
		{"output_norm", m.FinalNorm.Floats()[:2], []float32{1, 1}},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// Round trips ---------------------------------------------------------------

var roundTripConfigs = []struct {
	name string
	cfg  weights.Config
}{
	{"tied", weights.Config{Dim: 32, HiddenDim: 48, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 40, SeqLen: 64, TiedEmbeddings: true}},
	{"untied", weights.Config{Dim: 16, HiddenDim: 24, NLayers: 3, NHeads: 2, VocabSize: 33, SeqLen: 16}},
	{"headdim", weights.Config{Dim: 24, HiddenDim: 40, NLayers: 1, NHeads: 4, NKVHeads: 1, HeadDim: 10, VocabSize: 17, SeqLen: 32,
		NormEps: 1e-6, RopeTheta: 500000}},
}

// compareModels checks that got (loaded from a file written as dtype)
// holds src's tensors. halfSplit means got's wq/wk are in HF layout.
func compareModels(t *testing.T, got, src *weights.Model, dtype weights.DType, normDType weights.DType) {
	t.Helper()
	gc, sc := got.Config, src.Config
	gc.RopeHalfSplit, sc.RopeHalfSplit = false, false
	gc.RopeScaling, sc.RopeScaling = nil, nil // compared below
	if fmt.Sprintf("%+v", gc) != fmt.Sprintf("%+v", sc) {
		t.Errorf("config:\n got %+v\nwant %+v", got.Config, src.Config)
	}
	if got.Config.RopeScaling != nil || src.Config.RopeScaling != nil {
		if got.Config.RopeScaling == nil || src.Config.RopeScaling == nil || *got.Config.RopeScaling != *src.Config.RopeScaling {
			t.Errorf("rope scaling: got %+v, want %+v", got.Config.RopeScaling, src.Config.RopeScaling)
		}
	}
	c := got.Config
	cmp := func(what string, g *weights.Tensor, want []float32, dt weights.DType, unpermuteHeads int) {
		t.Helper()
		if g.DType != dt {
			t.Errorf("%s: dtype %v, want %v", what, g.DType, dt)
			return
		}
		v := g.Floats()
		if unpermuteHeads > 0 && c.RopeHalfSplit {
			v = weightstest.ToAdjacent(v, unpermuteHeads, c.HeadDim, c.Dim)
		}
		want = weightstest.Round(want, dt)
		if len(v) != len(want) {
			t.Errorf("%s: %d values, want %d", what, len(v), len(want))
			return
		}
		for i := range v {
			if math.Float32bits(v[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s[%d] = %g, want %g (source %v, stored %v)", what, i, v[i], want[i], "F32", dt)
				return
			}
		}
	}
	cmp("embedding", &got.TokEmb, src.TokEmb.Floats(), dtype, 0)
	cmp("output", &got.Output, src.Output.Floats(), dtype, 0)
	cmp("final norm", &got.FinalNorm, src.FinalNorm.Floats(), normDType, 0)
	for i := range src.Layers {
		g, s := &got.Layers[i], &src.Layers[i]
		p := fmt.Sprintf("layer %d ", i)
		cmp(p+"attn_norm", &g.AttnNorm, s.AttnNorm.Floats(), normDType, 0)
		cmp(p+"wq", &g.WQ, s.WQ.Floats(), dtype, c.NHeads)
		cmp(p+"wk", &g.WK, s.WK.Floats(), dtype, c.NKVHeads)
		cmp(p+"wv", &g.WV, s.WV.Floats(), dtype, 0)
		cmp(p+"wo", &g.WO, s.WO.Floats(), dtype, 0)
		cmp(p+"ffn_norm", &g.FFNNorm, s.FFNNorm.Floats(), normDType, 0)
		cmp(p+"w1", &g.W1, s.W1.Floats(), dtype, 0)
		cmp(p+"w2", &g.W2, s.W2.Floats(), dtype, 0)
		cmp(p+"w3", &g.W3, s.W3.Floats(), dtype, 0)
	}
	if got.Config.TiedEmbeddings && &got.Output.Data[0] != &got.TokEmb.Data[0] {
		t.Errorf("tied model: Output does not share TokEmb's data")
	}
}

func TestLlama2CRoundTrip(t *testing.T) {
	for _, tc := range roundTripConfigs {
		if tc.cfg.HeadDim != 0 {
			continue // llama2.c fixes head_dim = dim/n_heads, eps and theta
		}
		t.Run(tc.name, func(t *testing.T) {
			src := weightstest.RandomModel(tc.cfg, 1)
			path := filepath.Join(t.TempDir(), "model.bin")
			if err := weightstest.WriteLlama2C(path, src); err != nil {
				t.Fatal(err)
			}
			m := load(t, path)
			if m.Format != "llama2c" {
				t.Errorf("format %q", m.Format)
			}
			compareModels(t, m, src, weights.F32, weights.F32)
		})
	}
}

func TestGGUFRoundTrip(t *testing.T) {
	for _, tc := range roundTripConfigs {
		for _, dt := range []weights.DType{weights.F32, weights.F16, weights.BF16} {
			t.Run(tc.name+"/"+dt.String(), func(t *testing.T) {
				src := weightstest.RandomModel(tc.cfg, 2)
				path := filepath.Join(t.TempDir(), "model.gguf")
				if err := weightstest.WriteGGUF(path, src, dt); err != nil {
					t.Fatal(err)
				}
				m := load(t, path)
				if m.Format != "gguf" || m.Config.RopeHalfSplit {
					t.Errorf("format %q RopeHalfSplit %v", m.Format, m.Config.RopeHalfSplit)
				}
				compareModels(t, m, src, dt, weights.F32)
				if m.Tokenizer != nil {
					t.Errorf("tokenizer-less GGUF produced a tokenizer")
				}
			})
		}
	}
}

func llama3Config() weights.Config {
	return weights.Config{Dim: 128, HiddenDim: 64, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 20, SeqLen: 4096,
		RopeTheta: 500000, RopeScaling: &weights.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}}
}

// llama3RopeRef reads ../shared/reference/llama3_rope_inv_freq.json: the
// Llama 3.1 and 3.2 inverse frequencies, unscaled and scaled, computed by
// an independent port of Hugging Face's _compute_llama3_parameters.
func llama3RopeRef(t *testing.T) []llama3RopeCase {
	var ref struct{ Cases []llama3RopeCase }
	shared.ReadJSON(t, "reference/llama3_rope_inv_freq.json", &ref)
	if len(ref.Cases) < 2 {
		t.Fatalf("%d reference cases, want Llama 3.1 and 3.2", len(ref.Cases))
	}
	return ref.Cases
}

type llama3RopeCase struct {
	Model       string  `json:"model"`
	HeadDim     int     `json:"head_dim"`
	RopeTheta   float64 `json:"rope_theta"`
	RopeScaling struct {
		Factor   float64 `json:"factor"`
		Low      float64 `json:"low_freq_factor"`
		High     float64 `json:"high_freq_factor"`
		Original int     `json:"original_max_position_embeddings"`
	} `json:"rope_scaling"`
	Unscaled []float64 `json:"inv_freq_unscaled"`
	Scaled   []float64 `json:"inv_freq"`
}

func (c llama3RopeCase) scaling() *weights.RopeScaling {
	r := c.RopeScaling
	return &weights.RopeScaling{Type: "llama3", Factor: r.Factor, LowFreqFactor: r.Low, HighFreqFactor: r.High, OriginalMaxPos: r.Original}
}

// The divisors Llama3RopeFactors gives (what llama.cpp stores in
// rope_freqs.weight) are the reference's unscaled / scaled frequencies, to
// a few float64 ulps (relative tolerance 1e-12).
func TestLlama3RopeFactorsReference(t *testing.T) {
	const tol = 1e-12
	for _, c := range llama3RopeRef(t) {
		t.Run(c.Model, func(t *testing.T) {
			got := weights.Llama3RopeFactors(c.scaling(), c.RopeTheta, c.HeadDim)
			if len(got) != len(c.Scaled) {
				t.Fatalf("%d factors, reference has %d frequencies", len(got), len(c.Scaled))
			}
			worst, at := 0.0, 0
			for i := range got {
				want := c.Unscaled[i] / c.Scaled[i]
				if d := math.Abs(got[i]-want) / want; d > worst {
					worst, at = d, i
				}
			}
			if worst > tol {
				t.Errorf("max relative difference %.3g > %g at pair %d (got %.17g, reference %.17g)", worst, tol, at, got[at], c.Unscaled[at]/c.Scaled[at])
			}
		})
	}
}

// A GGUF whose rope_freqs.weight holds the reference's factors (as
// llama.cpp's converter writes them, float32) loads as Llama 3 scaling with
// the reference's parameters; a factor off the formula is refused.
func TestGGUFLlama3RopeFreqs(t *testing.T) {
	for _, c := range llama3RopeRef(t) {
		t.Run(c.Model, func(t *testing.T) {
			cfg := weights.Config{Dim: c.HeadDim, HiddenDim: 16, NLayers: 1, NHeads: 1, NKVHeads: 1, VocabSize: 20, SeqLen: 4096,
				RopeTheta: c.RopeTheta, RopeScaling: c.scaling()}
			src := weightstest.RandomModel(cfg, 3)
			kv, ts, err := weightstest.GGUFContent(src, weights.F32)
			if err != nil {
				t.Fatal(err)
			}
			rf := -1
			for i := range ts {
				if ts[i].Name == "rope_freqs.weight" {
					rf = i
				}
			}
			if rf < 0 {
				t.Fatal("the writer left out rope_freqs.weight")
			}
			ref := make([]float32, len(c.Scaled))
			for i := range ref {
				ref[i] = float32(c.Unscaled[i] / c.Scaled[i])
			}
			ts[rf].Data = weightstest.EncodeFloats(ref, weights.F32)
			path := filepath.Join(t.TempDir(), "llama3.gguf")
			if err := os.WriteFile(path, writeGGUFBytes(t, kv, ts), 0o644); err != nil {
				t.Fatal(err)
			}
			m := load(t, path)
			if got := m.Config.RopeScaling; got == nil || *got != *c.scaling() {
				t.Fatalf("rope scaling %+v, want %+v", got, c.scaling())
			}
			compareModels(t, m, src, weights.F32, weights.F32)

			// one factor in the blended band moved: not Llama 3's formula
			bad := append([]float32(nil), ref...)
			mid := -1
			for i, f := range ref {
				if f > 1.01 && f < float32(c.RopeScaling.Factor)*0.99 {
					mid = i
				}
			}
			if mid < 0 {
				t.Fatal("reference has no blended factor")
			}
			bad[mid] *= 1.01
			ts[rf].Data = weightstest.EncodeFloats(bad, weights.F32)
			expectLoadError(t, writeGGUFBytes(t, kv, ts), "rope_freqs.weight")
		})
	}
	// The writer's own rope_freqs (BF16 model) round-trips too.
	src := weightstest.RandomModel(llama3Config(), 3)
	path := filepath.Join(t.TempDir(), "llama3.gguf")
	if err := weightstest.WriteGGUF(path, src, weights.BF16); err != nil {
		t.Fatal(err)
	}
	compareModels(t, load(t, path), src, weights.BF16, weights.F32)
}

func TestGGUFTokenizerMetadata(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 6, SeqLen: 8}, 4)
	toks := []string{"<unk>", "<s>", "</s>", "a", "b", "ab"}
	dir := t.TempDir()
	spm := filepath.Join(dir, "spm.gguf")
	err := weightstest.WriteGGUFWithMetadata(spm, src, weights.F32, []weightstest.GGUFKV{
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.scores", Value: []float32{0, 0, 0, -1, -2, -0.5}},
		{Key: "tokenizer.ggml.token_type", Value: []int32{2, 3, 3, 1, 1, 1}},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, spm)
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 6 || m.Tokenizer.BOS() != 1 {
		t.Fatalf("tokenizer from GGUF metadata: %v", m.Tokenizer)
	}
	tok, err := weights.LoadTokenizer(spm)
	if err != nil || tok.VocabSize() != 6 {
		t.Fatalf("LoadTokenizer(gguf): %v, %v", tok, err)
	}

	// A byte-level BPE vocabulary: the 256 byte tokens (GPT-2's
	// byte-to-unicode mapping), one merge, and two special tokens.
	var bpeToks []string
	next := 256
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae) {
			r = rune(next)
			next++
		}
		bpeToks = append(bpeToks, string(r))
	}
	bpeToks = append(bpeToks, "ab", "<|begin_of_text|>", "<|end_of_text|>")
	types := make([]int32, len(bpeToks))
	for i := range types {
		types[i] = 1
	}
	types[257], types[258] = 3, 3
	src = weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: len(bpeToks), SeqLen: 8}, 4)
	bpe := filepath.Join(dir, "bpe.gguf")
	err = weightstest.WriteGGUFWithMetadata(bpe, src, weights.F32, []weightstest.GGUFKV{
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: "llama-bpe"},
		{Key: "tokenizer.ggml.tokens", Value: bpeToks},
		{Key: "tokenizer.ggml.merges", Value: []string{"a b"}},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(257)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(258)},
	})
	if err != nil {
		t.Fatal(err)
	}
	m = load(t, bpe)
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 259 || m.Tokenizer.BOS() != 257 {
		t.Fatalf("gpt2 tokenizer from GGUF metadata: %v", m.Tokenizer)
	}

	// A file without tokenizer metadata: LoadTokenizer says so.
	plain := filepath.Join(dir, "plain.gguf")
	if err := weightstest.WriteGGUF(plain, src, weights.F32); err != nil {
		t.Fatal(err)
	}
	if _, err := weights.LoadTokenizer(plain); err == nil || !strings.Contains(err.Error(), "tokenizer.ggml.model") {
		t.Errorf("LoadTokenizer on a GGUF without vocabulary: %v", err)
	}
}

// Bad input -----------------------------------------------------------------

func writeGGUFBytes(t *testing.T, kv []weightstest.GGUFKV, ts []weightstest.GGUFTensor) []byte {
	t.Helper()
	b, err := weightstest.EncodeGGUF(kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectLoadError writes b to a file, loads it and requires an error
// containing every string in want (and no panic).
func expectLoadError(t *testing.T, b []byte, want ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad.gguf")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	expectPathError(t, path, want...)
}

func expectPathError(t *testing.T, path string, want ...string) {
	t.Helper()
	var m *weights.Model
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("PANIC: %v", r)
				t.Errorf("Load panicked: %v", r)
			}
		}()
		m, err = weights.Load(path, weights.Options{})
	}()
	if err == nil {
		m.Close()
		t.Fatalf("Load succeeded, want an error containing %q", want)
	}
	t.Logf("error (as expected): %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// tensorInfoAt finds where name's tensor info lies in an encoded GGUF:
// the returned index points at its uint32 n_dims.
func tensorInfoAt(t *testing.T, b []byte, name string) int {
	t.Helper()
	key := append(binary.LittleEndian.AppendUint64(nil, uint64(len(name))), name...)
	i := bytes.Index(b, key)
	if i < 0 {
		t.Fatalf("tensor info %q not found", name)
	}
	return i + len(key)
}

func TestGGUFBadInput(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32}, 5)
	le := binary.LittleEndian
	base := func() ([]weightstest.GGUFKV, []weightstest.GGUFTensor) {
		kv, ts, err := weightstest.GGUFContent(src, weights.F16)
		if err != nil {
			t.Fatal(err)
		}
		return kv, ts
	}
	good := func() []byte { kv, ts := base(); return writeGGUFBytes(t, kv, ts) }
	withKV := func(key string, v any) []byte {
		kv, ts := base()
		found := false
		for i := range kv {
			if kv[i].Key == key {
				kv[i].Value, found = v, true
			}
		}
		if !found {
			kv = append(kv, weightstest.GGUFKV{Key: key, Value: v})
		}
		return writeGGUFBytes(t, kv, ts)
	}
	withoutKV := func(key string) []byte {
		kv, ts := base()
		var out []weightstest.GGUFKV
		for _, e := range kv {
			if e.Key != key {
				out = append(out, e)
			}
		}
		return writeGGUFBytes(t, out, ts)
	}
	editTensor := func(name string, f func(*weightstest.GGUFTensor)) []byte {
		kv, ts := base()
		var out []weightstest.GGUFTensor
		for i := range ts {
			if ts[i].Name == name {
				f(&ts[i])
				if ts[i].Name == "" {
					continue // dropped
				}
			}
			out = append(out, ts[i])
		}
		return writeGGUFBytes(t, kv, out)
	}
	patch := func(b []byte, at int, v uint64, size int) []byte {
		b = append([]byte(nil), b...)
		if size == 4 {
			le.PutUint32(b[at:], uint32(v))
		} else {
			le.PutUint64(b[at:], v)
		}
		return b
	}
	g := good()
	q := tensorInfoAt(t, g, "blk.1.attn_q.weight") // n_dims at q, dims at q+4, type at q+20, offset at q+24
	lastTensor := "blk.1.ffn_up.weight"

	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"truncated in header", g[:11], []string{"GGUF header", "truncated"}},
		{"truncated in metadata", g[:200], []string{"truncated"}},
		{"truncated in tensor data", g[:len(g)-1], []string{lastTensor, "truncated"}},
		{"truncated before data", g[:q+30], []string{"truncated"}},
		{"version 1", patch(g, 4, 1, 4), []string{"version 1"}},
		{"big-endian", patch(g, 4, 3<<24, 4), []string{"big-endian"}},
		{"huge tensor count", patch(g, 8, 1<<62, 8), []string{"tensors", "corrupt"}},
		{"huge metadata count", patch(g, 16, 1<<62, 8), []string{"metadata entries", "corrupt"}},
		{"huge key length", patch(g, 24, 1<<62, 8), []string{"key of metadata entry 0", "truncated"}},
		{"huge array length", withKV("tokenizer.ggml.scores", []float32{1, 2}), nil}, // patched below
		{"tensor offset past EOF", patch(g, q+24, 1<<40, 8), []string{"blk.1.attn_q.weight", "past the end"}},
		{"tensor offset misaligned", patch(g, q+24, 4, 8), []string{"blk.1.attn_q.weight", "alignment"}},
		{"tensor data overruns", patch(g, q+4, 1<<20, 8), []string{"blk.1.attn_q.weight"}},
		{"huge dimension", patch(g, q+4, 1<<63, 8), []string{"blk.1.attn_q.weight", "dimensions"}},
		{"too many dims", patch(g, q, 9, 4), []string{"blk.1.attn_q.weight", "dimensions"}},
		{"unsupported tensor type", editTensor("blk.1.attn_q.weight", func(t *weightstest.GGUFTensor) { t.Type = 17 }),
			[]string{"tensor blk.1.attn_q.weight has ggml type IQ2_XS (17), which star does not read: use a Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16, BF16 or F32 file"}},
		{"unknown tensor type", editTensor("blk.1.attn_q.weight", func(t *weightstest.GGUFTensor) { t.Type = 77 }),
			[]string{"blk.1.attn_q.weight", "unknown (77)", "does not read"}},
		{"rows not whole blocks", editTensor("blk.1.attn_q.weight", func(t *weightstest.GGUFTensor) { t.Type = weightstest.GGMLTypeQ8_0 }),
			[]string{"blk.1.attn_q.weight", "rows of 16 weights are not whole Q8_0 blocks of 32"}},
		{"missing tensor", editTensor("blk.1.ffn_up.weight", func(t *weightstest.GGUFTensor) { t.Name = "" }), []string{"blk.1.ffn_up.weight", "missing"}},
		{"missing norm", editTensor("output_norm.weight", func(t *weightstest.GGUFTensor) { t.Name = "" }), []string{"output_norm.weight", "missing"}},
		{"wrong shape", editTensor("blk.0.attn_k.weight", func(t *weightstest.GGUFTensor) { t.Shape = []int{16, 8} }),
			[]string{"blk.0.attn_k.weight", "shape [16 8]", "expected [8 16]"}},
		{"unsupported architecture", withKV("general.architecture", "gemma"), []string{"unsupported architecture", "gemma"}},
		{"architecture not a string", withKV("general.architecture", uint32(7)), []string{"general.architecture"}},
		{"missing architecture", withoutKV("general.architecture"), []string{"general.architecture"}},
		{"missing block count", withoutKV("llama.block_count"), []string{"llama.block_count", "missing"}},
		{"missing eps", withoutKV("llama.attention.layer_norm_rms_epsilon"), []string{"llama.attention.layer_norm_rms_epsilon"}},
		{"wrong head count", withKV("llama.attention.head_count", uint32(3)), []string{"head_count"}},
		{"negative context", withKV("llama.context_length", int32(-5)), []string{"llama.context_length"}},
		{"too many blocks", withKV("llama.block_count", uint32(1<<20)), []string{"llama.block_count", "tensors"}},
		{"huge context", withKV("llama.context_length", uint64(1)<<40), []string{"llama.context_length"}},
		{"kv heads not dividing", withKV("llama.attention.head_count_kv", uint32(3)), []string{"n_kv_heads"}},
		{"partial rotary", withKV("llama.rope.dimension_count", uint32(2)), []string{"llama.rope.dimension_count"}},
		{"vocab mismatch", withKV("llama.vocab_size", uint32(21)), []string{"token_embd.weight", "shape"}},
		{"yarn scaling", withKV("llama.rope.scaling.type", "yarn"), []string{"llama.rope.scaling.type", "yarn"}},
		{"bad alignment", withKV("general.alignment", uint32(3)), []string{"general.alignment"}},
		{"unsupported tokenizer", withKV("tokenizer.ggml.model", "bert"), []string{"tokenizer.ggml.model", "bert"}},
		{"tokenizer without tokens", withKV("tokenizer.ggml.model", "llama"), []string{"tokenizer.ggml.tokens"}},
	}
	// Patch the array length of tokenizer.ggml.scores to a huge count.
	for i := range cases {
		if cases[i].name == "huge array length" {
			b := cases[i].data
			key := []byte("tokenizer.ggml.scores")
			at := bytes.Index(b, key) + len(key) + 4 + 4 // value type, element type
			cases[i].data = patch(b, at, 1<<61, 8)
			cases[i].want = []string{"tokenizer.ggml.scores", "array claims"}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectLoadError(t, c.data, c.want...) })
	}
	// Sanity: the unpatched bytes load, and so does the same file marked
	// GGUF v2 (whose layout v3 only extends with big-endian files).
	for _, v := range []uint64{3, 2} {
		path := filepath.Join(t.TempDir(), "good.gguf")
		if err := os.WriteFile(path, patch(g, 4, v, 4), 0o644); err != nil {
			t.Fatal(err)
		}
		load(t, path)
	}
}

// TestGGUFTruncatedEverywhere cuts a valid file at many lengths: every
// cut must give an error, never a panic.
func TestGGUFTruncatedEverywhere(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 5, SeqLen: 8}, 6)
	kv, ts, err := weightstest.GGUFContent(src, weights.BF16)
	if err != nil {
		t.Fatal(err)
	}
	kv = append(kv, weightstest.GGUFKV{Key: "tokenizer.ggml.model", Value: "llama"},
		weightstest.GGUFKV{Key: "tokenizer.ggml.tokens", Value: []string{"<unk>", "<s>", "</s>", "x", "y"}})
	b := writeGGUFBytes(t, kv, ts)
	for n := 0; n < len(b); n += 1 + n/64 {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("cut at %d of %d bytes: panic %v", n, len(b), r)
				}
			}()
			if _, err := weights.ParseGGUFBytes(b[:n]); err == nil {
				t.Fatalf("cut at %d of %d bytes: no error", n, len(b))
			}
		}()
	}
	if _, err := weights.ParseGGUFBytes(b); err != nil {
		t.Fatalf("whole file: %v", err)
	}
}
