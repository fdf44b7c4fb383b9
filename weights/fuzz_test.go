package weights_test

import (
	"encoding/binary"
	"sort"
	"testing"
	"unsafe"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// touch reads every byte of a tensor view (a bad view would fault or
// panic here) and checks its length against its dtype and shape.
func touch(t *testing.T, tn *weights.Tensor) {
	if int64(len(tn.Data)) != tn.Bytes() {
		t.Fatalf("tensor %q: %d bytes for %v %v", tn.Name, len(tn.Data), tn.DType, tn.Shape)
	}
	if len(tn.Shape) == 0 || tn.Numel() == 0 {
		return
	}
	var sum byte
	for _, v := range tn.Data {
		sum += v
	}
	_ = sum
}

// disjoint fails when two of the views share bytes (a tied classifier is
// the embedding itself: the same view twice is fine).
func disjoint(t *testing.T, ts []*weights.Tensor) {
	type span struct {
		name   string
		lo, hi uintptr
	}
	var spans []span
	seen := map[span]bool{}
	for _, tn := range ts {
		if len(tn.Data) == 0 {
			continue
		}
		lo := uintptr(unsafe.Pointer(&tn.Data[0]))
		s := span{tn.Name, lo, lo + uintptr(len(tn.Data))}
		if !seen[s] {
			seen[s] = true
			spans = append(spans, s)
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			t.Fatalf("accepted tensors %q and %q share bytes", spans[i-1].name, spans[i].name)
		}
	}
}

func fuzzModel() *weights.Model {
	return weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 5, SeqLen: 8}, 1)
}

// FuzzGGUFHeader feeds arbitrary bytes through the whole GGUF reader
// (header, metadata, tensor table, hyperparameters, views, Validate,
// tokenizer metadata): it must return an error or a valid model, never
// panic or read out of bounds.
func FuzzGGUFHeader(f *testing.F) {
	m := fuzzModel()
	for _, dt := range []weights.DType{weights.F32, weights.F16, weights.BF16} {
		kv, ts, err := weightstest.GGUFContent(m, dt)
		if err != nil {
			f.Fatal(err)
		}
		if dt == weights.F16 {
			kv = append(kv,
				weightstest.GGUFKV{Key: "tokenizer.ggml.model", Value: "llama"},
				weightstest.GGUFKV{Key: "tokenizer.ggml.tokens", Value: []string{"<unk>", "<s>", "</s>", "a", "b"}},
				weightstest.GGUFKV{Key: "tokenizer.ggml.scores", Value: []float32{0, 0, 0, -1, -2}},
				weightstest.GGUFKV{Key: "tokenizer.ggml.token_type", Value: []int32{2, 3, 3, 1, 1}},
				weightstest.GGUFKV{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
				weightstest.GGUFKV{Key: "general.tags", Value: []uint8{1, 2, 3}},
				weightstest.GGUFKV{Key: "general.f64", Value: 1.5},
				weightstest.GGUFKV{Key: "general.i64s", Value: []int64{-1, 7}},
			)
		}
		b, err := weightstest.EncodeGGUF(kv, ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		// the same file with the second tensor moved onto the first, and
		// with the first tensor's name given to the second
		kv2, ts2, _ := weightstest.GGUFContent(m, dt)
		ts2 = append(ts2, weightstest.GGUFTensor{Name: "extra", Type: weightstest.GGMLTypeF32, Shape: []int{4}, Data: make([]byte, 16)})
		b2, err := weightstest.EncodeGGUF(kv2, ts2)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b2)
		ts2[1].Name = ts2[0].Name
		if b2, err = weightstest.EncodeGGUF(kv2, ts2); err != nil {
			f.Fatal(err)
		}
		f.Add(b2)
	}
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := weights.ParseGGUFBytes(data)
		if err != nil {
			return
		}
		all := []*weights.Tensor{&m.TokEmb, &m.Output, &m.FinalNorm}
		for i := range m.Layers {
			l := &m.Layers[i]
			all = append(all, &l.AttnNorm, &l.WQ, &l.WK, &l.WV, &l.WO, &l.FFNNorm, &l.W1, &l.W2, &l.W3)
		}
		for _, tn := range all {
			touch(t, tn)
		}
		disjoint(t, all)
	})
}

// FuzzSafetensorsHeader feeds arbitrary bytes to the safetensors parser.
func FuzzSafetensorsHeader(f *testing.F) {
	_, ts, err := weightstest.HFContent(fuzzModel(), weights.BF16)
	if err != nil {
		f.Fatal(err)
	}
	b, err := weightstest.EncodeSafetensors(ts[:4], map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-1])
	b, err = weightstest.EncodeSafetensors([]weightstest.STTensor{
		{Name: "a", DType: "F32", Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "b", DType: "I64", Shape: []int{1}, Data: make([]byte, 8)},
		{Name: "c", DType: "F16", Shape: []int{}, Data: make([]byte, 2)},
		{Name: "d", DType: "BF16", Shape: []int{0, 3}, Data: nil},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	// overlapping ranges, a name twice, and data that starts misaligned
	for _, h := range []string{
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}}`,
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`,
		`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}} `,
	} {
		f.Add(append(append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...), make([]byte, 16)...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tensors, err := weights.ParseSafetensorsBytes(data)
		if err != nil {
			return
		}
		var all []*weights.Tensor
		for name := range tensors {
			tn := tensors[name]
			touch(t, &tn)
			all = append(all, &tn)
		}
		disjoint(t, all)
	})
}

// FuzzHFConfig feeds arbitrary bytes to the config.json reader.
func FuzzHFConfig(f *testing.F) {
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":100,"num_hidden_layers":2,
		"num_attention_heads":4,"rms_norm_eps":1e-6,"max_position_embeddings":2048,"vocab_size":300,
		"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := weights.ParseHFConfigBytes(data)
		if err == nil {
			if err := c.Check(); err != nil {
				t.Fatalf("accepted config fails Check: %v", err)
			}
		}
	})
}

// FuzzSniff: telling what a file is never panics, and agrees with the
// readers: a file taken for a llama2.c checkpoint parses as one, and
// only files that start with the magic are GGUF.
func FuzzSniff(f *testing.F) {
	ckpt, err := weightstest.EncodeLlama2C(weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, VocabSize: 5, SeqLen: 8, NormEps: 1e-5, RopeTheta: 1e4}, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ckpt)
	f.Add(ckpt[:len(ckpt)-4])
	tokBin := binary.LittleEndian.AppendUint32(nil, 6)
	for _, tok := range []string{"<unk>", "\n<s>\n", "\n</s>\n", " a"} {
		tokBin = binary.LittleEndian.AppendUint32(tokBin, 0)
		tokBin = binary.LittleEndian.AppendUint32(tokBin, uint32(len(tok)))
		tokBin = append(tokBin, tok...)
	}
	f.Add(tokBin)
	for _, s := range []string{"", "GGUF\x03\x00\x00\x00", "\x0a\x0e\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02", "IQ== 0\nIg== 1\nIw== 2\n",
		`{"added_tokens": []}`, `{"weight_map": {}}`, `{"model_type": "llama"}`, "PK\x03\x04", "\x80\x02}q", "<!DOCTYPE html>",
		"version https://git-lfs.github.com/spec/v1\n", "Once upon a time", "\x02\x00\x00\x00\x00\x00\x00\x00{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k := weights.SniffBytes(data, int64(len(data)))
		if (k == weights.KindGGUF) != (len(data) >= 4 && string(data[:4]) == "GGUF") {
			t.Fatalf("GGUF verdict %v for %q", k, data[:min(len(data), 8)])
		}
		if k == weights.KindLlama2C {
			if _, err := weights.ParseLlama2CBytes(data); err != nil {
				t.Fatalf("taken for a llama2.c checkpoint, but: %v", err)
			}
		}
		_ = k.String()
	})
}
