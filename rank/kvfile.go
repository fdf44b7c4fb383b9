package rank

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/layers"
)

// KV files keep one rank's phase-1 K/V of a document so a later job can
// skip phase 1: a uint32 header length, a MessagePack KVHeader, then for
// each block, each layer: K then V, each head-major ([KVHeads][Len][D])
// little-endian elements of the header's dtype (f32, f16 or bf16, as the
// run's caches hold them). The header holds the CRC-32C of those data; a
// file whose data do not match it is not used, nor one of another dtype
// or an older format (star-kv/2 held float32 token-major data): those are
// recomputed.

// KVHeader identifies what a KV file holds; a file is used only if every
// field matches what the run expects.
type KVHeader struct {
	Magic       string  `msgpack:"magic"`       // "star-kv/3"
	Fingerprint string  `msgpack:"fingerprint"` // model fingerprint
	DocKey      string  `msgpack:"doc"`         // hash of the context tokens, layout and K/V dtype
	Rank        int     `msgpack:"rank"`
	Ranks       int     `msgpack:"ranks"`
	BlockSize   int     `msgpack:"block_size"`
	AnchorSize  int     `msgpack:"anchor_size"`
	Blocks      []Block `msgpack:"blocks"`
	DType       string  `msgpack:"dtype"` // "f32", "f16" or "bf16"
	Layers      int     `msgpack:"layers"`
	KVDim       int     `msgpack:"kv_dim"`
	KVHeads     int     `msgpack:"kv_heads"`
	CRC32C      uint32  `msgpack:"crc32c"` // of the K/V data after the header
}

const kvMagic = "star-kv/3"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// KVPath is the file of rank r for a document key.
func KVPath(dir, docKey string, r, ranks int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.rank%d-of-%d.kv", docKey, r, ranks))
}

func (h *KVHeader) matches(o *KVHeader) error {
	switch {
	case h.Magic != o.Magic && strings.HasPrefix(h.Magic, "star-kv/"):
		return fmt.Errorf("written in another K/V file format (%s; this star reads %s)", h.Magic, o.Magic)
	case h.Magic != o.Magic:
		return fmt.Errorf("not a star KV file (magic %q)", h.Magic)
	case h.Fingerprint != o.Fingerprint:
		return fmt.Errorf("made with another model (fingerprint %s, now %s)", h.Fingerprint, o.Fingerprint)
	case h.DType != o.DType:
		return fmt.Errorf("holds %s K/V, this run keeps %s", h.DType, o.DType)
	case h.DocKey != o.DocKey || h.Rank != o.Rank || h.Ranks != o.Ranks || h.BlockSize != o.BlockSize || h.AnchorSize != o.AnchorSize:
		return fmt.Errorf("made for another document or layout")
	case h.Layers != o.Layers || h.KVDim != o.KVDim || h.KVHeads != o.KVHeads || len(h.Blocks) != len(o.Blocks):
		return fmt.Errorf("shape differs")
	}
	for i := range h.Blocks {
		if h.Blocks[i] != o.Blocks[i] {
			return fmt.Errorf("block %d differs", i)
		}
	}
	return nil
}

// fill sets the fields of h that the worker's model and dtype decide.
func (w *Worker) fill(h *KVHeader, blocks []Block) {
	c := &w.M.Cfg
	h.Magic, h.DType, h.Blocks = kvMagic, layers.KVDTypeName(w.DType), blocks
	h.Layers, h.KVDim, h.KVHeads = c.NLayers, c.KVDim(), c.NKVHeads
}

// eachRun calls f with the data of kv in file order: each layer's K then
// V, each head's tokens as one run.
func eachRun(kv *KV, f func([]byte) error) error {
	for l := range kv.K {
		for _, b := range []*layers.KVBuf{kv.K[l], kv.V[l]} {
			for h := 0; h < b.HKV; h++ {
				if err := f(b.HeadRaw(h, kv.Len)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// SaveKV writes this worker's block caches to path atomically (a temporary
// file renamed into place), so a crash never leaves a half-written file
// under the final name.
func (w *Worker) SaveKV(path string, h KVHeader) error {
	w.fill(&h, w.Blocks)
	h.CRC32C = 0
	hosts := make([]*KV, len(w.KV)) // the caches on the host (themselves on the CPU)
	for i, c := range w.KV {
		kv, err := c.Host()
		if err != nil {
			return fmt.Errorf("save KV: block %d from %s: %w", w.Blocks[i].Index, w.B.Name(), err)
		}
		hosts[i] = kv
	}
	for _, kv := range hosts {
		eachRun(kv, func(b []byte) error {
			h.CRC32C = crc32.Update(h.CRC32C, castagnoli, b)
			return nil
		})
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
	for _, kv := range hosts {
		eachRun(kv, func(b []byte) error {
			_, err := bw.Write(b)
			return err
		})
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
// matches want (blocks and the worker's K/V dtype included) and its size
// is exact; any mismatch or corruption is an error and leaves the worker
// without blocks, so the caller recomputes.
func (w *Worker) LoadKV(path string, want KVHeader, blocks []Block) error {
	w.fill(&want, blocks)
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
		total += KVBytesPerToken(&w.M.Cfg, w.DType) * int64(b.Len)
	}
	if st.Size() != 4+hl+total {
		return fmt.Errorf("%s: %d bytes, expected %d: truncated or corrupt", path, st.Size(), 4+hl+total)
	}
	var crc uint32
	kvs := make([]*KV, 0, len(blocks))
	for _, b := range blocks {
		kv := newKV(&w.M.Cfg, w.DType, b.Len)
		kv.Len = b.Len
		for l := range kv.K {
			kv.K[l].Len, kv.V[l].Len = b.Len, b.Len
		}
		err := eachRun(kv, func(d []byte) error {
			if _, err := io.ReadFull(br, d); err != nil {
				return err
			}
			crc = crc32.Update(crc, castagnoli, d)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		for l := range kv.K {
			if !kv.K[l].Finite(b.Len) || !kv.V[l].Finite(b.Len) {
				return fmt.Errorf("%s: NaN or Inf in cached K/V: corrupt", path)
			}
		}
		kvs = append(kvs, kv)
	}
	if crc != h.CRC32C {
		return fmt.Errorf("%s: K/V data checksum %08x, the header says %08x: the file was altered or damaged", path, crc, h.CRC32C)
	}
	caches := make([]layers.Cache, len(kvs))
	for i, kv := range kvs {
		c, err := w.B.Upload(kv)
		if err != nil {
			for _, c := range caches[:i] {
				c.Free()
			}
			return fmt.Errorf("%s: block %d to %s: %w", path, blocks[i].Index, w.B.Name(), err)
		}
		caches[i] = c
	}
	w.Blocks, w.KV = blocks, caches
	return nil
}
