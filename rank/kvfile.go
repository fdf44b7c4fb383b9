package rank

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// KV files keep one rank's phase-1 K/V of a document so a later job can
// skip phase 1: a uint32 header length, a MessagePack KVHeader, then for
// each block, each layer: K then V as little-endian float32. The header
// holds the CRC-32C of those data; a file whose data do not match it is
// not used.

// KVHeader identifies what a KV file holds; a file is used only if every
// field matches what the run expects.
type KVHeader struct {
	Magic       string  `msgpack:"magic"`       // "star-kv/1"
	Fingerprint string  `msgpack:"fingerprint"` // model fingerprint
	DocKey      string  `msgpack:"doc"`         // hash of the context tokens and layout
	Rank        int     `msgpack:"rank"`
	Ranks       int     `msgpack:"ranks"`
	BlockSize   int     `msgpack:"block_size"`
	AnchorSize  int     `msgpack:"anchor_size"`
	Blocks      []Block `msgpack:"blocks"`
	DType       string  `msgpack:"dtype"` // "f32"
	Layers      int     `msgpack:"layers"`
	KVDim       int     `msgpack:"kv_dim"`
	CRC32C      uint32  `msgpack:"crc32c"` // of the K/V data after the header
}

const kvMagic = "star-kv/2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// KVPath is the file of rank r for a document key.
func KVPath(dir, docKey string, r, ranks int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.rank%d-of-%d.kv", docKey, r, ranks))
}

func (h *KVHeader) matches(o *KVHeader) error {
	switch {
	case h.Magic != o.Magic:
		return fmt.Errorf("not a star KV file (magic %q)", h.Magic)
	case h.Fingerprint != o.Fingerprint:
		return fmt.Errorf("made with another model (fingerprint %s, now %s)", h.Fingerprint, o.Fingerprint)
	case h.DocKey != o.DocKey || h.Rank != o.Rank || h.Ranks != o.Ranks || h.BlockSize != o.BlockSize || h.AnchorSize != o.AnchorSize:
		return fmt.Errorf("made for another document or layout")
	case h.DType != o.DType || h.Layers != o.Layers || h.KVDim != o.KVDim || len(h.Blocks) != len(o.Blocks):
		return fmt.Errorf("dtype or shape differs")
	}
	for i := range h.Blocks {
		if h.Blocks[i] != o.Blocks[i] {
			return fmt.Errorf("block %d differs", i)
		}
	}
	return nil
}

func f32bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// SaveKV writes this worker's block caches to path atomically (a temporary
// file renamed into place), so a crash never leaves a half-written file
// under the final name.
func (w *Worker) SaveKV(path string, h KVHeader) error {
	h.Magic, h.DType, h.Layers, h.KVDim, h.Blocks = kvMagic, "f32", w.M.Cfg.NLayers, w.M.Cfg.KVDim(), w.Blocks
	h.CRC32C = 0
	for _, kv := range w.KV {
		for l := range kv.K {
			h.CRC32C = crc32.Update(h.CRC32C, castagnoli, f32bytes(kv.K[l]))
			h.CRC32C = crc32.Update(h.CRC32C, castagnoli, f32bytes(kv.V[l]))
		}
	}
	hb, err := msgpack.Marshal(&h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("KV dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.kv")
	if err != nil {
		return fmt.Errorf("save KV: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(hb)))
	bw.Write(n[:])
	bw.Write(hb)
	for _, kv := range w.KV {
		for l := range kv.K {
			bw.Write(f32bytes(kv.K[l]))
			bw.Write(f32bytes(kv.V[l]))
		}
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("save KV %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save KV %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LoadKV fills the worker's block caches from path if the file's header
// matches want (blocks included) and its size is exact; any mismatch or
// corruption is an error and leaves the worker without blocks, so the
// caller recomputes.
func (w *Worker) LoadKV(path string, want KVHeader, blocks []Block) error {
	want.Magic, want.DType, want.Layers, want.KVDim, want.Blocks = kvMagic, "f32", w.M.Cfg.NLayers, w.M.Cfg.KVDim(), blocks
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var n [4]byte
	if _, err := io.ReadFull(br, n[:]); err != nil {
		return fmt.Errorf("%s: truncated header", path)
	}
	hl := int64(binary.LittleEndian.Uint32(n[:]))
	if hl > 1<<24 || hl+4 > st.Size() {
		return fmt.Errorf("%s: corrupt header length %d", path, hl)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(br, hb); err != nil {
		return fmt.Errorf("%s: truncated header", path)
	}
	var h KVHeader
	if err := msgpack.Unmarshal(hb, &h); err != nil {
		return fmt.Errorf("%s: corrupt header: %v", path, err)
	}
	if err := h.matches(&want); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	var total int64
	for _, b := range blocks {
		total += int64(b.Len) * int64(want.KVDim) * int64(want.Layers) * 2 * 4
	}
	if st.Size() != 4+hl+total {
		return fmt.Errorf("%s: %d bytes, expected %d: truncated or corrupt", path, st.Size(), 4+hl+total)
	}
	var crc uint32
	kvs := make([]*KV, 0, len(blocks))
	for _, b := range blocks {
		kv := newKV(want.Layers, b.Len, want.KVDim)
		for l := 0; l < want.Layers; l++ {
			for _, dst := range []*[]float32{&kv.K[l], &kv.V[l]} {
				*dst = (*dst)[:b.Len*want.KVDim]
				if _, err := io.ReadFull(br, f32bytes(*dst)); err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				crc = crc32.Update(crc, castagnoli, f32bytes(*dst))
				for _, x := range *dst {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						return fmt.Errorf("%s: NaN or Inf in cached K/V: corrupt", path)
					}
				}
			}
		}
		kv.Len = b.Len
		kvs = append(kvs, kv)
	}
	if crc != h.CRC32C {
		return fmt.Errorf("%s: K/V data checksum %08x, the header says %08x: the file was altered or damaged", path, crc, h.CRC32C)
	}
	w.Blocks, w.KV = blocks, kvs
	return nil
}
