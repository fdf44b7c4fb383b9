package weights

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// The ggml block sizes behind the range checks, checked against files
// llama.cpp wrote: its writer packs tensors back to back (each padded to
// the alignment), so with the right sizes every tensor ends at most one
// alignment before the next begins, and the last at the end of the file.
func TestGGMLBlockSizesMatchLlamaCpp(t *testing.T) {
	wd, _ := os.Getwd()
	files, _ := filepath.Glob(filepath.Join(wd, "..", "..", "shared", "reference", "quant", "*.gguf"))
	files = append(files, filepath.Join(wd, "..", "..", "shared", "models", "gguf", "tiny-random-llama2.gguf"))
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("shared reference files absent (%v); skipping", err)
		}
		g, err := parseGGUF(data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		type span struct {
			name       string
			start, end int64
		}
		var spans []span
		for _, name := range g.order {
			info := g.tensors[name]
			n, ok, err := ggufTensorBytes(info, int64(len(data)))
			if err != nil || !ok {
				t.Fatalf("%s: tensor %s of type %s: size unknown (%v)", filepath.Base(f), name, ggmlTypeName(info.typ), err)
			}
			seen[ggmlTypeName(info.typ)] = true
			s := g.dataStart + int64(info.offset)
			spans = append(spans, span{name, s, s + n})
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
		for i, s := range spans {
			next := int64(len(data))
			if i+1 < len(spans) {
				next = spans[i+1].start
			}
			if s.end > next || next-s.end >= g.alignment {
				t.Errorf("%s: tensor %s ends at %d, the next data starts at %d (alignment %d): wrong block size", filepath.Base(f), s.name, s.end, next, g.alignment)
			}
		}
	}
	t.Logf("types checked: %v", seen)
}

// The block geometry of every dtype star reads is the one the range
// checks use for its ggml type.
func TestDTypeGeometryMatchesGGML(t *testing.T) {
	seen := map[DType]bool{}
	for typ, dt := range ggmlDTypes {
		blk, ok := ggmlBlocks[typ]
		if !ok || blk.elems != int64(dt.BlockElems()) || blk.bytes != int64(dt.BlockBytes()) {
			t.Errorf("ggml type %d (%s): ranges know %+v, %v has %d weights in %d bytes", typ, ggmlTypeName(typ), blk, dt, dt.BlockElems(), dt.BlockBytes())
		}
		if ggmlTypeName(typ) != dt.String() {
			t.Errorf("ggml type %d is named %s, its dtype %v", typ, ggmlTypeName(typ), dt)
		}
		seen[dt] = true
	}
	for _, dt := range DTypes() {
		if !seen[dt] {
			t.Errorf("dtype %v has no ggml type", dt)
		}
	}
}
