package weights_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// Every tensor needs bytes of its own: overlapping byte ranges (between
// any two tensors of the table, used by the model or not), ranges past the
// end of the data, misaligned offsets and duplicate names are refused,
// naming the tensors.
func TestGGUFTensorRanges(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32}, 5)
	le := binary.LittleEndian
	encode := func(extra ...weightstest.GGUFTensor) []byte {
		kv, ts, err := weightstest.GGUFContent(src, weights.F16)
		if err != nil {
			t.Fatal(err)
		}
		return writeGGUFBytes(t, kv, append(ts, extra...))
	}
	// a tensor info is n_dims, dims, type, offset
	offsetAt := func(b []byte, name string) int {
		at := tensorInfoAt(t, b, name)
		return at + 4 + 8*int(le.Uint32(b[at:])) + 4
	}
	offsetOf := func(b []byte, name string) uint64 { return le.Uint64(b[offsetAt(b, name):]) }
	setOffset := func(b []byte, name string, off uint64) []byte {
		b = append([]byte(nil), b...)
		le.PutUint64(b[offsetAt(b, name):], off)
		return b
	}
	extraF32 := func(n int) weightstest.GGUFTensor {
		return weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{n}, Data: make([]byte, 4*n)}
	}
	g := encode()
	q, k, emb := "blk.1.attn_q.weight", "blk.1.attn_k.weight", "token_embd.weight"
	withExtra := encode(extraF32(8))
	withQuant := encode(weightstest.GGUFTensor{Name: "extra.q8", Type: weightstest.GGMLTypeQ8_0, Shape: []int{64}, Data: make([]byte, 68)})
	withDup := func() []byte {
		kv, ts, _ := weightstest.GGUFContent(src, weights.F16)
		ts = append(ts, ts[3])
		return writeGGUFBytes(t, kv, ts)
	}()
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"two tensors at one offset", setOffset(g, q, offsetOf(g, k)), []string{q, k, "overlap"}},
		{"a tensor inside another", setOffset(g, q, offsetOf(g, emb)+64), []string{q, emb, "overlap"}},
		{"the last tensor over the first", setOffset(g, "blk.1.ffn_up.weight", offsetOf(g, emb)), []string{"blk.1.ffn_up.weight", emb, "overlap"}},
		{"an unused tensor over a used one", setOffset(withExtra, "extra.weight", offsetOf(withExtra, k)), []string{"extra.weight", k, "overlap"}},
		{"an unused quantized tensor over a used one", setOffset(withQuant, "extra.q8", offsetOf(withQuant, q)), []string{"extra.q8", q, "overlap"}},
		{"an unused tensor past the end", encode(weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{1 << 20}, Data: make([]byte, 8)}),
			[]string{"extra.weight", "do not fit"}},
		{"an unused tensor running past the end", encode(weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{64}, Data: make([]byte, 8)}),
			[]string{"extra.weight", "needs bytes"}},
		{"an unused tensor's offset past the end", setOffset(withExtra, "extra.weight", 1<<40), []string{"extra.weight", "past the end"}},
		{"an unused tensor misaligned", setOffset(withExtra, "extra.weight", offsetOf(withExtra, "extra.weight")+4), []string{"extra.weight", "alignment"}},
		{"an unused tensor with absurd dimensions", encode(weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{1 << 40, 1 << 40}, Data: make([]byte, 8)}),
			[]string{"extra.weight", "dimensions"}},
		{"duplicate tensor name", withDup, []string{"appears twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectLoadError(t, c.data, c.want...) })
	}
	// Unused tensors that have bytes of their own, and tensors of a type
	// whose size is unknown, are fine.
	for name, b := range map[string][]byte{
		"plain":         g,
		"unused extra":  withExtra,
		"unused quant":  withQuant,
		"unknown type":  encode(weightstest.GGUFTensor{Name: "extra.x", Type: 99, Shape: []int{3}, Data: make([]byte, 3)}),
		"empty tensor":  setOffset(encode(weightstest.GGUFTensor{Name: "extra.e", Type: weightstest.GGMLTypeF32, Shape: []int{0}}), "extra.e", 0),
		"the whole set": encode(extraF32(3), weightstest.GGUFTensor{Name: "extra.q8", Type: weightstest.GGMLTypeQ8_0, Shape: []int{32}, Data: make([]byte, 34)}),
	} {
		if _, err := weights.ParseGGUFBytes(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// stFile lays out a safetensors file from a header written by hand (so it
// can hold what json.Marshal cannot, such as a key twice), padding the
// header with spaces until the data starts at a multiple of 8 plus shift.
func stFile(header string, body []byte, shift int) []byte {
	for (8+len(header))%8 != shift {
		header += " "
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(out, header...), body...)
}

func TestSafetensorsTensorRanges(t *testing.T) {
	ent := func(name, dtype string, shape []int, a, b int) string {
		s, _ := json.Marshal(map[string]any{"dtype": dtype, "shape": shape, "data_offsets": []int{a, b}})
		return fmt.Sprintf("%q:%s", name, s)
	}
	body := make([]byte, 64)
	cases := []struct {
		name   string
		header string
		want   []string // nil: accepted
	}{
		{"disjoint", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("b", "F32", []int{4}, 16, 32) + "}", nil},
		{"same range", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("b", "F32", []int{4}, 0, 16) + "}", []string{`"a"`, `"b"`, "overlap"}},
		{"partial overlap", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("b", "F16", []int{8}, 8, 24) + "}", []string{`"a"`, `"b"`, "overlap"}},
		{"one inside another", "{" + ent("big", "F32", []int{16}, 0, 64) + "," + ent("small", "BF16", []int{2}, 20, 24) + "}", []string{"big", "small", "overlap"}},
		{"overlap with an unread dtype", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("ids", "I64", []int{1}, 8, 16) + "}", []string{`"a"`, "ids", "overlap"}},
		{"third overlaps the first", "{" + ent("a", "F32", []int{8}, 0, 32) + "," + ent("b", "F32", []int{1}, 32, 36) + "," + ent("c", "F32", []int{1}, 28, 32) + "}", []string{`"a"`, `"c"`, "overlap"}},
		{"empty tensors overlap nothing", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("e", "F32", []int{0}, 8, 8) + "}", nil},
		{"duplicate name", "{" + ent("a", "F32", []int{4}, 0, 16) + "," + ent("a", "F32", []int{4}, 16, 32) + "}", []string{`"a"`, "twice"}},
		{"duplicate name, same range", "{" + ent("w", "F32", []int{4}, 0, 16) + "," + ent("w", "F32", []int{4}, 0, 16) + "}", []string{`"w"`, "twice"}},
		{"past the end", "{" + ent("a", "F32", []int{32}, 0, 128) + "}", []string{`"a"`, "data_offsets"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := weights.ParseSafetensorsBytes(stFile(c.header, body, 0))
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != nil && err == nil:
				t.Fatalf("accepted, want an error mentioning %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Safetensors does not require aligned data; a tensor whose bytes do not
// start at a multiple of its element size is read from an aligned copy,
// with the same values.
func TestSafetensorsMisalignedData(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 1, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32}, 3)
	cfg, ts, err := weightstest.HFContent(src, weights.F32)
	if err != nil {
		t.Fatal(err)
	}
	good, err := weightstest.EncodeSafetensors(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(good)
	header, body := strings.TrimRight(string(good[8:8+n]), " "), good[8+n:]
	for _, shift := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint("data at 8k+", shift), func(t *testing.T) {
			aligned, shifted := t.TempDir(), t.TempDir()
			if err := weightstest.WriteHFContent(aligned, cfg, ts, 1); err != nil {
				t.Fatal(err)
			}
			if err := weightstest.WriteHFContent(shifted, cfg, ts, 1); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(shifted, "model.safetensors"), stFile(header, body, shift), 0o644); err != nil {
				t.Fatal(err)
			}
			a, b := load(t, aligned), load(t, shifted)
			for i, pair := range [][2]*weights.Tensor{{&a.TokEmb, &b.TokEmb}, {&a.FinalNorm, &b.FinalNorm}, {&a.Layers[0].WQ, &b.Layers[0].WQ}, {&a.Layers[0].W2, &b.Layers[0].W2}} {
				if !bytes.Equal(pair[0].Data, pair[1].Data) {
					t.Errorf("tensor %d (%s): bytes differ", i, pair[1].Name)
				}
				if p := uintptr(unsafe.Pointer(&pair[1].Data[0])); p%4 != 0 {
					t.Errorf("tensor %s: F32 data at address %#x, not 4-byte aligned", pair[1].Name, p)
				}
			}
		})
	}
}

// A sharded checkpoint must store each tensor once: a tensor in two shard
// files, or listed twice in the index, is refused by name.
func TestHFShardedDuplicates(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32}, 11)
	cfg, ts, err := weightstest.HFContent(src, weights.BF16)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T) string {
		dir := t.TempDir()
		if err := weightstest.WriteHFContent(dir, cfg, ts, 3); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	shard := func(i int) string { return fmt.Sprintf("model-%05d-of-00003.safetensors", i) }
	// the tensors of shard 1 (WriteHFContent's split)
	part := func(s int) []weightstest.STTensor { return ts[s*len(ts)/3 : (s+1)*len(ts)/3] }
	moved := part(0)[0].Name

	t.Run("tensor in two shards", func(t *testing.T) {
		dir := write(t)
		// shard 3 also holds shard 1's first tensor
		b, err := weightstest.EncodeSafetensors(append(append([]weightstest.STTensor(nil), part(2)...), part(0)[0]), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, shard(3)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		expectPathError(t, dir, moved, shard(1), shard(3), "two shards")
	})
	t.Run("index lists a tensor twice", func(t *testing.T) {
		dir := write(t)
		p := filepath.Join(dir, "model.safetensors.index.json")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dup := fmt.Sprintf(`"weight_map": {%q: %q,`, moved, shard(2))
		b = bytes.Replace(b, []byte(`"weight_map": {`), []byte(dup), 1)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		expectPathError(t, dir, moved, "twice")
	})
	t.Run("untouched", func(t *testing.T) { load(t, write(t)) })
}

// llama2.c checkpoints have no tensor table: the header fixes every
// tensor's bytes, so the file must be exactly that long.
func TestLlama2CLength(t *testing.T) {
	src := weightstest.RandomModel(weights.Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 20, SeqLen: 32, NormEps: 1e-5, RopeTheta: 10000}, 4)
	b, err := weightstest.EncodeLlama2C(src)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, b []byte) string {
		p := filepath.Join(t.TempDir(), "model.bin")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		data []byte
		want []string
	}{
		{"one float short", b[:len(b)-4], []string{"truncated"}},
		{"one byte short", b[:len(b)-1], []string{"truncated"}},
		{"one float too many", append(append([]byte(nil), b...), 0, 0, 0, 0), []string{"file holds"}},
		{"header only", b[:28], []string{"header"}},
		{"half the header", b[:14], []string{"28-byte header"}},
	} {
		t.Run(c.name, func(t *testing.T) { expectPathError(t, write(t, c.data), c.want...) })
	}
	load(t, write(t, b))
}
