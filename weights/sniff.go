package weights

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Kind is what a file is, judged from its content (extensions lie: a
// renamed file, a failed download, a tokenizer given as the model).
type Kind int

const (
	KindUnknown Kind = iota
	KindEmpty
	KindGGUF
	KindSafetensors
	KindHFConfig         // a model's config.json
	KindHFIndex          // model.safetensors.index.json
	KindTokenizerJSON    // a Hugging Face tokenizer.json
	KindTokenizerConfig  // tokenizer_config.json
	KindJSON             // some other JSON
	KindTiktoken         // Llama 3's tokenizer.model (tiktoken BPE ranks)
	KindSentencePiece    // a SentencePiece tokenizer.model (protobuf)
	KindLlama2C          // a llama2.c checkpoint
	KindLlama2CTokenizer // a llama2.c tokenizer.bin
	KindZip              // a zip archive (PyTorch .bin/.pt)
	KindPickle           // a Python pickle (old PyTorch checkpoints)
	KindLFSPointer       // a Git LFS pointer instead of the file
	KindHTML             // a web page instead of the file
	KindText             // some other text (a prompt?)
)

// String describes the kind for messages ("a GGUF model", ...).
func (k Kind) String() string {
	switch k {
	case KindEmpty:
		return "empty (0 bytes)"
	case KindGGUF:
		return "a GGUF file"
	case KindSafetensors:
		return "a safetensors weight file"
	case KindHFConfig:
		return "a model's config.json"
	case KindHFIndex:
		return "a safetensors index (model.safetensors.index.json)"
	case KindTokenizerJSON:
		return "a Hugging Face tokenizer.json"
	case KindTokenizerConfig:
		return "a tokenizer_config.json"
	case KindJSON:
		return "a JSON file"
	case KindTiktoken:
		return "a tiktoken BPE file (Llama 3's tokenizer.model)"
	case KindSentencePiece:
		return "a SentencePiece tokenizer.model (protobuf)"
	case KindLlama2C:
		return "a llama2.c checkpoint"
	case KindLlama2CTokenizer:
		return "a llama2.c tokenizer (tokenizer.bin)"
	case KindZip:
		return "a zip archive (a PyTorch .bin/.pt checkpoint?)"
	case KindPickle:
		return "a Python pickle (an old PyTorch checkpoint?)"
	case KindLFSPointer:
		return "a Git LFS pointer, not the file itself"
	case KindHTML:
		return "an HTML page (a failed download?)"
	case KindText:
		return "a text file"
	}
	return "of an unknown format"
}

// sniffBytes is how much of a file Sniff reads.
const sniffBytes = 64 << 10

// Sniff reads the start of the file at path and tells what it is.
func Sniff(path string) (Kind, error) {
	f, err := os.Open(path)
	if err != nil {
		return KindUnknown, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return KindUnknown, err
	}
	head := make([]byte, min(st.Size(), sniffBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		return KindUnknown, err
	}
	return SniffBytes(head, st.Size()), nil
}

// SniffBytes tells what a file of size bytes is from its first bytes
// (head; Sniff reads 64 KiB).
func SniffBytes(head []byte, size int64) Kind {
	if size == 0 {
		return KindEmpty
	}
	switch {
	case bytes.HasPrefix(head, []byte("GGUF")):
		return KindGGUF
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return KindZip
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return KindPickle
	case bytes.HasPrefix(head, []byte("version https://git-lfs.github.com/spec/")):
		return KindLFSPointer
	}
	if isSafetensors(head, size) {
		return KindSafetensors
	}
	// llama2.c files have no magic. A checkpoint's header fixes its size;
	// a tokenizer's records must parse. (A checkpoint of the wrong size is
	// no tokenizer either: its loader says what is wrong with it.)
	switch n := llama2cSize(head); {
	case n == size:
		return KindLlama2C
	case n < 0 && isLlama2CTokenizer(head):
		return KindLlama2CTokenizer
	}
	if isSentencePiece(head) {
		return KindSentencePiece
	}
	text := bytes.TrimLeft(head, " \t\r\n\xef\xbb\xbf") // BOM too
	if len(text) > 0 && text[0] == '{' {
		switch {
		case bytes.Contains(head, []byte(`"weight_map"`)):
			return KindHFIndex
		case bytes.Contains(head, []byte(`"added_tokens_decoder"`)) || bytes.Contains(head, []byte(`"tokenizer_class"`)):
			return KindTokenizerConfig
		case bytes.Contains(head, []byte(`"added_tokens"`)) || bytes.Contains(head, []byte(`"pre_tokenizer"`)) ||
			bytes.Contains(head, []byte(`"normalizer"`)):
			return KindTokenizerJSON
		case bytes.Contains(head, []byte(`"model_type"`)) || bytes.Contains(head, []byte(`"architectures"`)) ||
			bytes.Contains(head, []byte(`"hidden_size"`)):
			return KindHFConfig
		}
		return KindJSON
	}
	lower := bytes.ToLower(text[:min(len(text), 512)])
	if bytes.HasPrefix(lower, []byte("<!doctype html")) || bytes.HasPrefix(lower, []byte("<html")) {
		return KindHTML
	}
	if isTiktoken(head) {
		return KindTiktoken
	}
	if isText(head) {
		return KindText
	}
	return KindUnknown
}

// isText: valid UTF-8 without control bytes other than tab, newline,
// carriage return and form feed (a rune cut at the end of head does not
// count).
func isText(head []byte) bool {
	for _, c := range head {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' || c == 0x7f {
			return false
		}
	}
	for i := 0; i < 3 && len(head) > 0 && !utf8.Valid(head); i++ {
		head = head[:len(head)-1]
	}
	return len(head) > 0 && utf8.Valid(head)
}

// isSafetensors: a uint64 header length that fits the file, then a JSON
// object.
func isSafetensors(head []byte, size int64) bool {
	if len(head) < 9 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && n <= stMaxHeaderBytes && n <= uint64(size-8) && head[8] == '{'
}

// llama2cSize is the file size a llama2.c header describes (tied or
// untied classifier), or -1 when head does not start with a plausible one.
func llama2cSize(head []byte) int64 {
	if len(head) < llama2cHeaderBytes {
		return -1
	}
	var h [7]int64
	for i := range h {
		h[i] = int64(int32(binary.LittleEndian.Uint32(head[4*i:])))
	}
	dim, hidden, layers, heads, kvHeads, vocab, seq := h[0], h[1], h[2], h[3], h[4], h[5], h[6]
	if vocab < 0 {
		vocab = -vocab
	}
	for _, v := range []int64{dim, hidden, layers, heads, kvHeads, vocab, seq} {
		if v <= 0 || v > 1<<24 {
			return -1
		}
	}
	if dim%heads != 0 || heads%kvHeads != 0 || (dim/heads)%2 != 0 {
		return -1
	}
	hd := dim / heads
	kv := kvHeads * hd
	// float64 first: absurd (but in-range) values overflow int64
	floats := float64(vocab)*float64(dim) + float64(layers)*(2*float64(dim)+2*float64(dim)*float64(dim)+2*float64(kv)*float64(dim)+3*float64(hidden)*float64(dim)) +
		float64(dim) + float64(seq)*float64(hd)
	if h[5] < 0 {
		floats += float64(vocab) * float64(dim)
	}
	if floats*4 > 1<<60 {
		return -1
	}
	n := vocab*dim + layers*(2*dim+2*dim*dim+2*kv*dim+3*hidden*dim) + dim + seq*hd
	if h[5] < 0 {
		n += vocab * dim
	}
	return n*4 + llama2cHeaderBytes
}

// isLlama2CTokenizer: an int32 max_token_length, then records of a finite
// float32 score, an int32 length up to it and that many bytes, as far as
// head reaches (at least three records).
func isLlama2CTokenizer(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	maxLen := int64(int32(binary.LittleEndian.Uint32(head)))
	if maxLen <= 0 || maxLen > 1<<16 {
		return false
	}
	off, n := int64(4), 0
	for off+8 <= int64(len(head)) {
		score := math.Float32frombits(binary.LittleEndian.Uint32(head[off:]))
		l := int64(int32(binary.LittleEndian.Uint32(head[off+4:])))
		if math.IsNaN(float64(score)) || math.IsInf(float64(score), 0) || l < 0 || l > maxLen {
			return false
		}
		if end := min(off+8+l, int64(len(head))); n < 3 && !utf8.Valid(head[off+8:end]) && end == off+8+l {
			return false // the first tokens (<unk>, <s>, </s>) are text
		}
		off += 8 + l
		n++
	}
	return n >= 3 // every vocabulary has <unk>, <s> and </s>
}

// isSentencePiece: a ModelProto starts with its pieces (field 1), each a
// message whose first field is the piece text (field 1, a string).
func isSentencePiece(head []byte) bool {
	if len(head) < 4 || head[0] != 0x0A {
		return false
	}
	l, k := binary.Uvarint(head[1:])
	if k <= 0 || l < 2 || l > 1<<16 {
		return false
	}
	p := 1 + k
	if p >= len(head) || head[p] != 0x0A {
		return false
	}
	pl, k2 := binary.Uvarint(head[p+1:])
	if k2 <= 0 || pl+uint64(k2)+1 > l {
		return false
	}
	s := p + 1 + k2
	return s+int(pl) <= len(head) && utf8.Valid(head[s:s+int(pl)])
}

// isTiktoken: lines of "<base64 token> <rank>".
func isTiktoken(head []byte) bool {
	lines := bytes.SplitN(head, []byte("\n"), 4)
	if len(lines) < 2 {
		return false
	}
	if len(lines) == 4 || len(head) == sniffBytes {
		lines = lines[:len(lines)-1] // the last may be cut short
	}
	for _, ln := range lines {
		tok, rank, ok := bytes.Cut(ln, []byte(" "))
		if !ok || len(tok) == 0 || len(rank) == 0 {
			return false
		}
		for _, c := range tok {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
				return false
			}
		}
		for _, c := range rank {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// notAModel explains why a file of kind k cannot be loaded as a model, and
// what to pass instead; "" when it may be one.
func notAModel(path string, k Kind) string {
	what := fmt.Sprintf("%s is %s", path, k)
	switch k {
	case KindGGUF, KindSafetensors, KindHFConfig, KindHFIndex, KindLlama2C:
		return ""
	case KindEmpty:
		return what + ": pass a model file (.gguf or llama2.c .bin) or a Hugging Face folder with --model"
	case KindTokenizerJSON, KindLlama2CTokenizer:
		return what + ", not a model: pass it with --tokenizer, and the model (.gguf, llama2.c .bin or Hugging Face folder) with --model"
	case KindTokenizerConfig:
		return what + ", not a model: pass the model (.gguf, llama2.c .bin or Hugging Face folder) with --model"
	case KindTiktoken, KindSentencePiece:
		return what + ", a tokenizer and not a model: pass the model (.gguf, llama2.c .bin or Hugging Face folder) with --model"
	case KindJSON:
		return what + " but neither a model's config.json nor a safetensors index: pass a .gguf, a llama2.c .bin or a Hugging Face folder with --model"
	case KindZip, KindPickle:
		return what + ": star reads safetensors, GGUF and llama2.c checkpoints; convert it (transformers' save_pretrained(safe_serialization=True), or llama.cpp's convert_hf_to_gguf.py)"
	case KindLFSPointer:
		return what + ": fetch the weights (git lfs pull) and pass the real file"
	case KindHTML:
		return what + ", not a model: download the file itself"
	case KindText:
		return what + ", not a model: pass the model (.gguf, llama2.c .bin or Hugging Face folder) with --model (and text with --prompt)"
	}
	return ""
}

// notATokenizer is notAModel for --tokenizer.
func notATokenizer(path string, k Kind) string {
	what := fmt.Sprintf("%s is %s", path, k)
	const use = "pass a tokenizer.json, a llama2.c tokenizer.bin or a .gguf holding a vocabulary with --tokenizer"
	switch k {
	case KindGGUF, KindTokenizerJSON, KindLlama2CTokenizer:
		return ""
	case KindEmpty:
		return what + ": " + use
	case KindTiktoken:
		return what + ", which star does not read: pass the tokenizer.json of the same model (its Hugging Face folder has one) or the model's .gguf with --tokenizer"
	case KindSentencePiece:
		return what + ", which star does not read: pass the model's tokenizer.json or .gguf, or a llama2.c tokenizer.bin made from it (llama2.c's tokenizer.py), with --tokenizer"
	case KindLlama2C:
		return what + ", not a tokenizer: pass it with --model (its tokenizer.bin is found beside it), and a tokenizer.bin with --tokenizer"
	case KindSafetensors, KindHFConfig, KindHFIndex:
		return what + ", not a tokenizer: pass the model folder with --model; its tokenizer.json is read from there, or " + use
	case KindTokenizerConfig:
		return what + ", which holds no vocabulary: pass the tokenizer.json beside it with --tokenizer"
	case KindText:
		return what + ", not a tokenizer: " + use
	case KindZip, KindPickle, KindLFSPointer, KindHTML:
		return notAModel(path, k)
	}
	return ""
}

// describeFolder says what a folder without config.json holds, for the
// message that refuses it as a Hugging Face checkpoint.
func describeFolder(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var models, tokenizers, weightFiles []string
	for i, e := range ents {
		if i >= 1000 || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		k, err := Sniff(p)
		if err != nil {
			continue
		}
		switch k {
		case KindGGUF, KindLlama2C:
			models = append(models, e.Name())
		case KindTokenizerJSON, KindLlama2CTokenizer:
			tokenizers = append(tokenizers, e.Name())
		case KindSafetensors, KindHFIndex:
			weightFiles = append(weightFiles, e.Name())
		}
	}
	sort.Strings(models)
	switch {
	case len(weightFiles) > 0:
		return fmt.Sprintf("; it holds %s but a Hugging Face checkpoint needs its config.json too (download it)", strings.Join(weightFiles, ", "))
	case len(models) > 0:
		return fmt.Sprintf("; it holds %s: pass that file with --model", strings.Join(models, ", "))
	case len(tokenizers) > 0:
		return fmt.Sprintf("; it holds only tokenizer files (%s): pass the model with --model and these with --tokenizer", strings.Join(tokenizers, ", "))
	}
	return ": pass a .gguf or llama2.c .bin file, or a Hugging Face folder (config.json and safetensors)"
}
