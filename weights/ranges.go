package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// byteRange is the bytes [start, end) a tensor occupies in a file.
type byteRange struct {
	name       string
	start, end int64
}

// checkOverlaps refuses tensors that share bytes: every tensor must have
// its own bytes, or a crafted file could make one tensor an alias of
// another (or of the header). what names the format ("GGUF", ...).
// Empty tensors occupy no bytes and overlap nothing.
func checkOverlaps(rs []byteRange, what string) error {
	sorted := make([]byteRange, 0, len(rs))
	for _, r := range rs {
		if r.end > r.start {
			sorted = append(sorted, r)
		}
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].start != sorted[j].start {
			return sorted[i].start < sorted[j].start
		}
		return sorted[i].name < sorted[j].name
	})
	// Sorted by start, a range overlaps an earlier one exactly when it
	// starts before the furthest end seen so far.
	far := -1
	for i, r := range sorted {
		if far >= 0 && r.start < sorted[far].end {
			a := sorted[far]
			return fmt.Errorf("%s tensors %q (bytes [%d, %d)) and %q (bytes [%d, %d)) overlap; every tensor needs bytes of its own: the file is corrupt or crafted",
				what, a.name, a.start, a.end, r.name, r.start, r.end)
		}
		if far < 0 || r.end > sorted[far].end {
			far = i
		}
	}
	return nil
}

// ggmlBlock is the storage of a ggml tensor type: elems elements in bytes
// bytes (1 element for plain types, blocks of 32 or 256 for quantized
// ones). The sizes are ggml's (ggml.c type_traits), so that every tensor's
// byte range can be checked, including the types star does not compute
// with.
type ggmlBlock struct{ elems, bytes int64 }

var ggmlBlocks = map[uint32]ggmlBlock{
	0: {1, 4}, 1: {1, 2}, 30: {1, 2}, // F32, F16, BF16
	2: {32, 18}, 3: {32, 20}, 6: {32, 22}, 7: {32, 24}, 8: {32, 34}, 9: {32, 36}, // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1
	10: {256, 84}, 11: {256, 110}, 12: {256, 144}, 13: {256, 176}, 14: {256, 210}, 15: {256, 292}, // Q2_K..Q8_K
	16: {256, 66}, 17: {256, 74}, 18: {256, 98}, 19: {256, 50}, 20: {32, 18}, 21: {256, 110}, // IQ2_XXS IQ2_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S
	22: {256, 82}, 23: {256, 136}, 29: {256, 56}, // IQ2_S IQ4_XS IQ1_M
	24: {1, 1}, 25: {1, 2}, 26: {1, 4}, 27: {1, 8}, 28: {1, 8}, // I8 I16 I32 I64 F64
	34: {256, 54}, 35: {256, 66}, 39: {32, 17}, // TQ1_0 TQ2_0 MXFP4
}

// ggufTensorBytes is the byte size of a tensor of the given GGUF dims and
// ggml type; ok is false when the size is unknown (an unknown type, or
// rows that are not whole blocks of a quantized type). Sizes that
// cannot fit in limit bytes are an error (they cannot lie in the file).
func ggufTensorBytes(info *ggufTensorInfo, limit int64) (n int64, ok bool, err error) {
	blk, ok := ggmlBlocks[info.typ]
	if !ok {
		return 0, false, nil
	}
	// No type takes less than a bit per element, so a tensor of more
	// than 8 elements per byte of the file cannot lie in it.
	maxElems := limit*8 + 256
	numel, zero := int64(1), false
	for _, d := range info.dims {
		if d == 0 {
			zero = true
			continue
		}
		if d > uint64(maxElems) || numel > maxElems/int64(d) {
			return 0, true, fmt.Errorf("GGUF tensor %q has dimensions %v that do not fit in the %d-byte file; the header is corrupt", info.name, info.dims, limit)
		}
		numel *= int64(d)
	}
	if zero {
		numel = 0
	}
	if len(info.dims) > 0 && int64(info.dims[0])%blk.elems != 0 {
		// Rows must be whole blocks; such a tensor has no defined size.
		// Using it fails (ggufFile.tensor names the tensor and its row
		// length), and an unused one is left alone.
		return 0, false, nil
	}
	return numel / blk.elems * blk.bytes, true, nil
}

// checkRanges checks every tensor of the table whose type has a known
// size: its offset is aligned, its bytes lie within the file's data
// section, and no two tensors share bytes.
func (g *ggufFile) checkRanges(size int64) error {
	rs := make([]byteRange, 0, len(g.order))
	for _, name := range g.order {
		info := g.tensors[name]
		if info.offset > uint64(size) {
			return fmt.Errorf("GGUF tensor %q: data offset %d lies past the end of the %d-byte file; the file is truncated or its header is corrupt",
				name, info.offset, size)
		}
		if int64(info.offset)%g.alignment != 0 {
			return fmt.Errorf("GGUF tensor %q: data offset %d is not a multiple of the alignment %d; the header is corrupt", name, info.offset, g.alignment)
		}
		n, known, err := ggufTensorBytes(info, size)
		if err != nil {
			return err
		}
		if !known {
			continue
		}
		start := g.dataStart + int64(info.offset)
		if start > size || n > size-start {
			return fmt.Errorf("GGUF tensor %q (%s %v): needs bytes [%d, %d) but the file has %d; the file is truncated or its header is corrupt",
				name, ggmlTypeName(info.typ), info.dims, start, start+n, size)
		}
		rs = append(rs, byteRange{name: name, start: start, end: start + n})
	}
	return checkOverlaps(rs, "GGUF")
}

// duplicateKey returns the first key that appears twice in the JSON object
// b, or, with path, in the object found under those keys (each level on
// the way is checked too); level is how many keys of path lead to the
// object holding it. encoding/json keeps the last of duplicate keys
// silently; for a tensor table that would hide a second tensor of the
// same name. Text that is not such an object gives "": the caller's own
// decoding reports it.
func duplicateKey(b []byte, path ...string) (key string, level int) {
	dec := json.NewDecoder(bytes.NewReader(b))
	key, level, _ = dupInObject(dec, path, 0)
	return key, level
}

func dupInObject(dec *json.Decoder, path []string, level int) (string, int, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", 0, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		if ok { // an array: skip to its end
			for dec.More() {
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return "", 0, err
				}
			}
			_, err = dec.Token()
		}
		return "", 0, err
	}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return "", 0, err
		}
		key, _ := kt.(string)
		if seen[key] {
			return key, level, nil
		}
		seen[key] = true
		if len(path) > 0 && key == path[0] {
			if k, l, err := dupInObject(dec, path[1:], level+1); k != "" || err != nil {
				return k, l, err
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", 0, err
		}
	}
	_, err = dec.Token()
	return "", 0, err
}
