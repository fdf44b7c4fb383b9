package rank

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kvFixture encodes two blocks of a small model, saves them and returns
// the file, its header and the blocks.
func kvFixture(t testing.TB) (path string, h KVHeader, blocks []Block, saved *Worker) {
	m := testModel(t)
	lay, err := NewLayout(40, 16, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := randTokens(40, m.Cfg.VocabSize, 3)
	blocks = lay.Of(1)
	var toks [][]int
	for _, b := range blocks {
		toks = append(toks, ctx[b.Start:b.Start+b.Len])
	}
	w := NewWorker(m, 1, false, 32)
	if err := w.EncodeBlocks(ctx[:lay.AnchorSize], blocks, toks); err != nil {
		t.Fatal(err)
	}
	h = KVHeader{Fingerprint: "fp", DocKey: "doc", Rank: 1, Ranks: 2, BlockSize: 16, AnchorSize: 8}
	path = filepath.Join(t.TempDir(), "x.kv")
	if err := w.SaveKV(path, h); err != nil {
		t.Fatal(err)
	}
	return path, h, blocks, w
}

// A saved file loads back bit for bit; any changed byte of its data is
// caught by the checksum (or the NaN/Inf check), and a rejected file
// leaves the worker without blocks.
func TestKVFileChecksum(t *testing.T) {
	path, h, blocks, saved := kvFixture(t)
	m := saved.M
	w := NewWorker(m, 1, false, 32)
	if err := w.LoadKV(path, h, blocks); err != nil {
		t.Fatal(err)
	}
	for i := range saved.KV {
		for l := range saved.KV[i].K {
			if maxDiff(saved.KV[i].K[l], w.KV[i].K[l]) != 0 || maxDiff(saved.KV[i].V[l], w.KV[i].V[l]) != 0 {
				t.Fatalf("block %d layer %d differs after the round trip", i, l)
			}
		}
	}
	orig, _ := os.ReadFile(path)
	for _, off := range []int{len(orig) - 1, len(orig) - 4*100, len(orig) / 2} {
		for _, bit := range []byte{0x01, 0x40} {
			b := append([]byte(nil), orig...)
			b[off] ^= bit
			os.WriteFile(path, b, 0o644)
			w := NewWorker(m, 1, false, 32)
			err := w.LoadKV(path, h, blocks)
			if err == nil || (!strings.Contains(err.Error(), "checksum") && !strings.Contains(err.Error(), "NaN")) {
				t.Fatalf("byte %d ^ %#x: LoadKV gave %v, want a checksum error", off, bit, err)
			}
			if w.KV != nil || w.Blocks != nil {
				t.Fatalf("byte %d: a rejected file left blocks in the worker", off)
			}
		}
	}
}

// Any bytes as a K/V file: LoadKV never panics, and a file it accepts
// fills every block with finite values of the right shape. (The checksum
// guards against damage, not forgery: a fuzzer may well write a matching
// one.)
func FuzzLoadKV(f *testing.F) {
	path0, h, blocks, saved := kvFixture(f)
	orig, err := os.ReadFile(path0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(orig)
	f.Add(orig[:len(orig)/2])
	f.Add([]byte("garbage"))
	kvd := saved.M.Cfg.KVDim()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.kv")
		os.WriteFile(p, b, 0o644)
		w := NewWorker(saved.M, 1, false, 32)
		if err := w.LoadKV(p, h, blocks); err != nil {
			if w.KV != nil {
				t.Fatalf("rejected (%v) but blocks kept", err)
			}
			return
		}
		if len(w.KV) != len(blocks) {
			t.Fatalf("%d blocks loaded, want %d", len(w.KV), len(blocks))
		}
		for i, kv := range w.KV {
			for l := range kv.K {
				if len(kv.K[l]) != blocks[i].Len*kvd || len(kv.V[l]) != blocks[i].Len*kvd {
					t.Fatalf("block %d layer %d: %d/%d values", i, l, len(kv.K[l]), len(kv.V[l]))
				}
				for _, x := range append(kv.K[l], kv.V[l]...) {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						t.Fatal("non-finite K/V accepted")
					}
				}
			}
		}
	})
}
