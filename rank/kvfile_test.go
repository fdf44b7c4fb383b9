package rank

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// kvFixture encodes two blocks of a small model, saves them and returns
// the file, its header and the blocks.
func kvFixture(t testing.TB) (path string, h KVHeader, blocks []Block, saved *Worker) {
	return kvFixtureOf(t, weights.F32)
}

// kvFixtureOf is kvFixture with K/V of dtype dt.
func kvFixtureOf(t testing.TB, dt weights.DType) (path string, h KVHeader, blocks []Block, saved *Worker) {
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
	w := NewWorker(m, 1, false, 32, dt)
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

// A saved file loads back bit for bit, for every K/V dtype, and takes
// that dtype's bytes; any changed byte of its data is caught by the
// checksum (or the NaN/Inf check), and a rejected file leaves the worker
// without blocks.
func TestKVFileChecksum(t *testing.T) {
	for _, dt := range layers.KVDTypes {
		t.Run(layers.KVDTypeName(dt), func(t *testing.T) {
			path, h, blocks, saved := kvFixtureOf(t, dt)
			m := saved.M
			w := NewWorker(m, 1, false, 32, dt)
			if err := w.LoadKV(path, h, blocks); err != nil {
				t.Fatal(err)
			}
			for i := range saved.KV {
				if hkv(w.KV[i]).Len != hkv(saved.KV[i]).Len || w.KV[i].DType() != dt {
					t.Fatalf("block %d: %d tokens of %v loaded, want %d of %v", i, hkv(w.KV[i]).Len, w.KV[i].DType(), hkv(saved.KV[i]).Len, dt)
				}
				for l := range hkv(saved.KV[i]).K {
					n := hkv(saved.KV[i]).Len
					for hd := 0; hd < m.Cfg.NKVHeads; hd++ {
						if !bytes.Equal(hkv(saved.KV[i]).K[l].HeadRaw(hd, n), hkv(w.KV[i]).K[l].HeadRaw(hd, n)) ||
							!bytes.Equal(hkv(saved.KV[i]).V[l].HeadRaw(hd, n), hkv(w.KV[i]).V[l].HeadRaw(hd, n)) {
							t.Fatalf("block %d layer %d head %d differs after the round trip", i, l, hd)
						}
					}
				}
			}
			st, _ := os.Stat(path)
			want := int64(0)
			for _, b := range blocks {
				want += int64(b.Len*2*m.Cfg.NLayers*m.Cfg.KVDim()) * int64(dt.Size())
			}
			if data := st.Size() - headerBytes(t, path); data != want {
				t.Fatalf("%v file holds %d bytes of K/V data, want %d (%d bytes an element)", dt, data, want, dt.Size())
			}
			orig, _ := os.ReadFile(path)
			for _, off := range []int{len(orig) - 1, len(orig) - 4*100, len(orig) / 2} {
				for _, bit := range []byte{0x01, 0x40} {
					b := append([]byte(nil), orig...)
					b[off] ^= bit
					os.WriteFile(path, b, 0o644)
					w := NewWorker(m, 1, false, 32, dt)
					err := w.LoadKV(path, h, blocks)
					if err == nil || (!strings.Contains(err.Error(), "checksum") && !strings.Contains(err.Error(), "NaN")) {
						t.Fatalf("byte %d ^ %#x: LoadKV gave %v, want a checksum error", off, bit, err)
					}
					if w.KV != nil || w.Blocks != nil {
						t.Fatalf("byte %d: a rejected file left blocks in the worker", off)
					}
				}
			}
		})
	}
}

// headerBytes is the length of a K/V file's header with its length word.
func headerBytes(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 {
		t.Fatalf("read %s: %v", path, err)
	}
	return 4 + int64(binary.LittleEndian.Uint32(b))
}

// A file of another K/V dtype, or of the older format (star-kv/2,
// float32 token-major), is never read as this run's: LoadKV refuses it,
// saying why, and leaves the worker without blocks (phase 1 reruns).
func TestKVFileOfAnotherDTypeIsRefused(t *testing.T) {
	for _, c := range []struct {
		saved, run weights.DType
		magic      string // "": as written
		want       string
	}{
		{weights.F32, weights.F16, "", "holds f32 K/V, this run keeps f16"},
		{weights.F16, weights.BF16, "", "holds f16 K/V, this run keeps bf16"},
		{weights.BF16, weights.F32, "", "holds bf16 K/V, this run keeps f32"},
		{weights.F32, weights.F32, "star-kv/2", "another K/V file format (star-kv/2"},
	} {
		t.Run(fmt.Sprintf("%v_as_%v%s", c.saved, c.run, c.magic), func(t *testing.T) {
			path, h, blocks, saved := kvFixtureOf(t, c.saved)
			if c.magic != "" {
				rewriteMagic(t, path, c.magic)
			}
			w := NewWorker(saved.M, 1, false, 32, c.run)
			err := w.LoadKV(path, h, blocks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadKV gave %v, want an error saying %q", err, c.want)
			}
			if w.KV != nil || w.Blocks != nil {
				t.Fatal("a refused file left blocks in the worker")
			}
		})
	}
}

// rewriteMagic replaces the magic of the K/V file at path.
func rewriteMagic(t *testing.T, path, magic string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hl := binary.LittleEndian.Uint32(b)
	var h KVHeader
	if err := msgpack.Unmarshal(b[4:4+hl], &h); err != nil {
		t.Fatal(err)
	}
	h.Magic = magic
	hb, _ := msgpack.Marshal(&h)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(hb)))
	out = append(append(out, hb...), b[4+hl:]...)
	os.WriteFile(path, out, 0o644)
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
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.kv")
		os.WriteFile(p, b, 0o644)
		w := NewWorker(saved.M, 1, false, 32, weights.F32)
		if err := w.LoadKV(p, h, blocks); err != nil {
			if w.KV != nil {
				t.Fatalf("rejected (%v) but blocks kept", err)
			}
			return
		}
		if len(w.KV) != len(blocks) {
			t.Fatalf("%d blocks loaded, want %d", len(w.KV), len(blocks))
		}
		for i, c := range w.KV {
			kv := hkv(c)
			for l := range kv.K {
				if kv.K[l].Len != blocks[i].Len || kv.V[l].Len != blocks[i].Len || kv.Len != blocks[i].Len {
					t.Fatalf("block %d layer %d: %d/%d tokens", i, l, kv.K[l].Len, kv.V[l].Len)
				}
				for _, x := range append(tokenMajor(kv.K[l], kv.Len), tokenMajor(kv.V[l], kv.Len)...) {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						t.Fatal("non-finite K/V accepted")
					}
				}
			}
		}
	})
}
