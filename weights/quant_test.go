package weights_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// quantConfig has rows of 256 weights (whole K-quant super-blocks) and of
// 768 (three), and KV rows of 128.
var quantConfig = weights.Config{Arch: "llama", Dim: 256, HiddenDim: 768, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 64,
	VocabSize: 40, SeqLen: 64, NormEps: 1e-5, RopeTheta: 10000}

// q4km is a per-tensor mix like llama.cpp's Q4_K_M: Q6_K for the
// classifier, layer 1's values and MLP down projection, Q4_K elsewhere.
func q4km(name string) weights.DType {
	if name == "output.weight" || name == "blk.1.attn_v.weight" || name == "blk.1.ffn_down.weight" {
		return weights.Q6_K
	}
	return weights.Q4_K
}

// Quantized GGUFs (every type, and a mix) load with each tensor's dtype
// and its blocks' bytes in place: the data is a view of the file's bytes
// (no copy, no conversion), norms stay F32, and the sizes follow the
// blocks.
func TestQuantizedGGUFLoadsInPlace(t *testing.T) {
	src := weightstest.RandomModel(quantConfig, 31)
	cases := map[string]func(string) weights.DType{"Q4_K_M mix": q4km}
	for _, dt := range weights.QuantTypes() {
		cases[dt.String()] = func(string) weights.DType { return dt }
	}
	for name, typeOf := range cases {
		t.Run(name, func(t *testing.T) {
			kv, ts, err := weightstest.GGUFContentTypes(src, typeOf)
			if err != nil {
				t.Fatal(err)
			}
			b, err := weightstest.EncodeGGUF(kv, ts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "q.gguf")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			m := load(t, path)
			written := map[string]weightstest.GGUFTensor{}
			for _, tn := range ts {
				written[tn.Name] = tn
			}
			var bytesSum int64
			err = m.Walk(weights.CheckOrder, func(s *weights.TensorSpec, layer int, tn *weights.Tensor) error {
				if s.Classifier && m.Config.TiedEmbeddings {
					return nil
				}
				w := written[tn.Name]
				want := weights.F32
				if !s.Norm {
					want = typeOf(tn.Name)
				}
				if tn.DType != want || !bytes.Equal(tn.Data, w.Data) || int64(len(tn.Data)) != tn.Bytes() {
					t.Errorf("%s: %v with %d bytes (Bytes() %d), want %v and the %d bytes written", tn.Name, tn.DType, len(tn.Data), tn.Bytes(), want, len(w.Data))
				}
				bytesSum += tn.Bytes()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if m.WeightBytes() != bytesSum {
				t.Errorf("WeightBytes %d, tensors hold %d", m.WeightBytes(), bytesSum)
			}
			wantTypes := name
			if name == "Q4_K_M mix" {
				wantTypes = "mixed Q4_K/Q6_K"
			}
			if got := m.WeightTypes(); got != wantTypes {
				t.Errorf("WeightTypes %q, want %q", got, wantTypes)
			}
		})
	}
}

// Bad quantized tensors are refused with one line naming the tensor:
// truncated blocks, rows that are not whole blocks, and types star does
// not read.
func TestQuantizedGGUFBadBlocks(t *testing.T) {
	src := weightstest.RandomModel(quantConfig, 32)
	kv, ts, err := weightstest.GGUFContentTypes(src, q4km)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(ts []weightstest.GGUFTensor) []byte {
		b, err := weightstest.EncodeGGUF(kv, ts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	edit := func(name string, f func(*weightstest.GGUFTensor)) []byte {
		out := append([]weightstest.GGUFTensor(nil), ts...)
		for i := range out {
			if out[i].Name == name {
				f(&out[i])
			}
		}
		return enc(out)
	}
	good := enc(ts)
	last := ts[len(ts)-1].Name
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"truncated last tensor", good[:len(good)-100], []string{last, "Q4_K", "truncated"}},
		{"a block short", edit("blk.0.attn_q.weight", func(g *weightstest.GGUFTensor) { g.Data = g.Data[:len(g.Data)-144] }),
			[]string{"overlap"}}, // the next tensor now starts inside its claimed bytes
		{"rows not whole super-blocks", edit("blk.0.ffn_gate.weight", func(g *weightstest.GGUFTensor) { g.Shape = []int{1536, 128} }),
			[]string{"blk.0.ffn_gate.weight", "rows of 128 weights are not whole Q4_K blocks of 256"}},
		{"Q8_0 rows not whole blocks", edit("blk.0.attn_k.weight", func(g *weightstest.GGUFTensor) {
			g.Type, g.Shape = weightstest.GGMLTypeQ8_0, []int{136, 240}
		}), []string{"blk.0.attn_k.weight", "rows of 240 weights are not whole Q8_0 blocks of 32"}},
		{"IQ4_XS", edit("blk.1.attn_q.weight", func(g *weightstest.GGUFTensor) { g.Type = 23 }),
			[]string{"tensor blk.1.attn_q.weight has ggml type IQ4_XS (23), which star does not read: use a Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16, BF16 or F32 file"}},
		{"Q2_K", edit("token_embd.weight", func(g *weightstest.GGUFTensor) { g.Type = 10 }),
			[]string{"token_embd.weight", "Q2_K (10)", "does not read"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectLoadError(t, c.data, c.want...)
		})
	}
	// The error is one line.
	path := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(path, cases[0].data, 0o644)
	if _, err := weights.Load(path, weights.Options{}); err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %v: want one line", err)
	}
}

// Dummy weights of every quantized dtype: whole blocks of the dtype with
// the sizes DummyBytes predicts, random, reproducible from the seed, and
// written to a GGUF as they are (for comparisons with other programs).
func TestDummyQuantized(t *testing.T) {
	for _, dt := range weights.QuantTypes() {
		m, err := weights.NewDummy(quantConfig, dt, 5)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		want, _ := weights.DummyBytes(quantConfig, dt)
		if m.WeightBytes() != want || m.DType() != dt || m.WeightTypes() != dt.String() {
			t.Fatalf("%v: %d bytes (DummyBytes %d), dtype %v, types %s", dt, m.WeightBytes(), want, m.DType(), m.WeightTypes())
		}
		m2, _ := weights.NewDummy(quantConfig, dt, 5)
		m3, _ := weights.NewDummy(quantConfig, dt, 6)
		if !bytes.Equal(m.Layers[1].W2.Data, m2.Layers[1].W2.Data) || bytes.Equal(m.Layers[1].W2.Data, m3.Layers[1].W2.Data) {
			t.Fatalf("%v: weights not reproducible from the seed, or equal across seeds", dt)
		}
		path := filepath.Join(t.TempDir(), "d.gguf")
		if err := weightstest.WriteGGUFTypes(path, m, func(string) weights.DType { return dt }); err != nil {
			t.Fatal(err)
		}
		g := load(t, path)
		if !bytes.Equal(g.Layers[1].W2.Data, m.Layers[1].W2.Data) || !bytes.Equal(g.TokEmb.Data, m.TokEmb.Data) {
			t.Fatalf("%v: GGUF of dummy weights does not hold their blocks", dt)
		}
	}
	if _, err := weights.ParseDType("Q4_K"); err != nil {
		t.Fatal(err)
	}
	if d, err := weights.ParseDType("q5_k"); err != nil || d != weights.Q5_K {
		t.Fatalf("q5_k: %v %v", d, err)
	}
	if _, err := weights.ParseDType("q4_k_m"); err == nil || !strings.Contains(err.Error(), "q8_0") {
		t.Fatalf("q4_k_m: %v", err)
	}
}
