package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

// A minimal GGUF (v2/v3) metadata reader, for the tests only: package
// weights has the real one. Layout: "GGUF", uint32 version, uint64
// tensor_count, uint64 kv_count, then kv_count pairs of a string key
// (uint64 length + bytes), a uint32 value type and the value.

type ggufReader struct {
	b   []byte
	off int
}

func (r *ggufReader) need(n int) error {
	if n < 0 || len(r.b)-r.off < n {
		return fmt.Errorf("GGUF metadata truncated at byte %d (needs %d more)", r.off, n)
	}
	return nil
}

func (r *ggufReader) u32() (uint32, error) {
	if err := r.need(4); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *ggufReader) u64() (uint64, error) {
	if err := r.need(8); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *ggufReader) str() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)) {
		return "", fmt.Errorf("GGUF string length %d at byte %d exceeds the file", n, r.off)
	}
	if err := r.need(int(n)); err != nil {
		return "", err
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

// value reads one value of GGUF type typ. Arrays of strings come back as
// []string, of float32 as []float32, of other numbers as []int64.
func (r *ggufReader) value(typ uint32) (any, error) {
	sizes := map[uint32]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
	switch typ {
	case 8:
		return r.str()
	case 9:
		et, err := r.u32()
		if err != nil {
			return nil, err
		}
		n, err := r.u64()
		if err != nil {
			return nil, err
		}
		if n > uint64(len(r.b)) {
			return nil, fmt.Errorf("GGUF array length %d exceeds the file", n)
		}
		switch et {
		case 8:
			out := make([]string, n)
			for i := range out {
				if out[i], err = r.str(); err != nil {
					return nil, err
				}
			}
			return out, nil
		case 6:
			out := make([]float32, n)
			for i := range out {
				v, err := r.u32()
				if err != nil {
					return nil, err
				}
				out[i] = math.Float32frombits(v)
			}
			return out, nil
		}
		out := make([]int64, n)
		for i := range out {
			v, err := r.value(et)
			if err != nil {
				return nil, err
			}
			x, ok := v.(int64)
			if !ok {
				return nil, fmt.Errorf("GGUF array of type %d is not supported by the test reader", et)
			}
			out[i] = x
		}
		return out, nil
	}
	n, ok := sizes[typ]
	if !ok {
		return nil, fmt.Errorf("GGUF value type %d is unknown", typ)
	}
	if err := r.need(n); err != nil {
		return nil, err
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	switch typ {
	case 0, 7:
		return int64(b[0]), nil
	case 1:
		return int64(int8(b[0])), nil
	case 2:
		return int64(binary.LittleEndian.Uint16(b)), nil
	case 3:
		return int64(int16(binary.LittleEndian.Uint16(b))), nil
	case 4:
		return int64(binary.LittleEndian.Uint32(b)), nil
	case 5:
		return int64(int32(binary.LittleEndian.Uint32(b))), nil
	case 6:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), nil
	case 10, 11:
		return int64(binary.LittleEndian.Uint64(b)), nil
	default: // 12
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	}
}

// readGGUFMetadata returns the key/value metadata of a GGUF file.
func readGGUFMetadata(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &ggufReader{b: data}
	if err := r.need(4); err != nil || string(data[:4]) != "GGUF" {
		return nil, fmt.Errorf("%s is not a GGUF file (no GGUF magic)", path)
	}
	r.off = 4
	version, err := r.u32()
	if err != nil {
		return nil, err
	}
	if version < 2 {
		return nil, fmt.Errorf("%s: GGUF version %d is not supported", path, version)
	}
	if _, err := r.u64(); err != nil { // tensor count
		return nil, err
	}
	nkv, err := r.u64()
	if err != nil {
		return nil, err
	}
	kv := map[string]any{}
	for i := uint64(0); i < nkv; i++ {
		k, err := r.str()
		if err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", path, i, err)
		}
		typ, err := r.u32()
		if err != nil {
			return nil, err
		}
		if kv[k], err = r.value(typ); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, k, err)
		}
	}
	return kv, nil
}

// ggufTokenizer builds the tokenizer a GGUF file's metadata describes.
func ggufTokenizer(t testing.TB, rel string) Tokenizer {
	t.Helper()
	kv, err := readGGUFMetadata(shared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	model, _ := kv["tokenizer.ggml.model"].(string)
	tokens, _ := kv["tokenizer.ggml.tokens"].([]string)
	scores, _ := kv["tokenizer.ggml.scores"].([]float32)
	var types []int32
	if tt, ok := kv["tokenizer.ggml.token_type"].([]int64); ok {
		for _, x := range tt {
			types = append(types, int32(x))
		}
	}
	intKey := func(k string) int {
		if v, ok := kv[k].(int64); ok {
			return int(v)
		}
		return -1
	}
	addSpace := true // llama's default when the key is absent
	if v, ok := kv["tokenizer.ggml.add_space_prefix"].(int64); ok {
		addSpace = v != 0
	}
	var tok Tokenizer
	switch model {
	case "llama":
		tok, err = NewSentencePiece(tokens, scores, types, intKey("tokenizer.ggml.bos_token_id"), intKey("tokenizer.ggml.eos_token_id"), addSpace)
	case "gpt2":
		merges, _ := kv["tokenizer.ggml.merges"].([]string)
		pre, _ := kv["tokenizer.ggml.pre"].(string)
		tok, err = NewGPT2BPE(tokens, merges, types, intKey("tokenizer.ggml.bos_token_id"), intKey("tokenizer.ggml.eos_token_id"), pre)
	default:
		t.Fatalf("%s: tokenizer.ggml.model %q", rel, model)
	}
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return tok
}
