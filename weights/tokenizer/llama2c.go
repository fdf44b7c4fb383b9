package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// llama2.c reserves these ids (SentencePiece's Llama 2 layout).
const (
	llama2cBOS = 1
	llama2cEOS = 2
)

// LoadLlama2C reads a llama2.c tokenizer.bin: a little-endian int32
// max_token_length, then for each token a float32 score, an int32 byte
// length and the token's bytes, until the end of the file. Spaces are
// stored as ' ', byte-fallback tokens as "<0xNN>" (token id = byte + 3),
// BOS is id 1 and EOS id 2. Encoding and decoding follow llama2.c's run.c;
// see SentencePiece.
func LoadLlama2C(path string) (Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer %s: %w", path, err)
	}
	t, err := ParseLlama2C(data)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ParseLlama2C parses the bytes of a llama2.c tokenizer.bin (see
// LoadLlama2C). Errors name the token record that is wrong.
func ParseLlama2C(data []byte) (*SentencePiece, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("file is %d bytes, too short for the int32 max_token_length header; is this a llama2.c tokenizer.bin?", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 {
		return nil, fmt.Errorf("header max_token_length = %d, expected a positive length; is this a llama2.c tokenizer.bin?", maxLen)
	}
	var tokens []string
	var scores []float32
	for off := 4; off < len(data); {
		i := len(tokens)
		if len(data)-off < 8 {
			return nil, fmt.Errorf("token %d (at byte %d) is truncated: %d bytes left, a record needs 8 for score and length; the file is cut short", i, off, len(data)-off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxLen {
			return nil, fmt.Errorf("token %d (at byte %d) has length %d, outside 0..%d (max_token_length); the file is corrupt", i, off-4, n, maxLen)
		}
		if int(n) > len(data)-off {
			return nil, fmt.Errorf("token %d (at byte %d) has length %d but only %d bytes are left; the file is cut short", i, off-4, n, len(data)-off)
		}
		tokens = append(tokens, string(data[off:off+int(n)]))
		scores = append(scores, score)
		off += int(n)
	}
	if len(tokens) <= llama2cEOS {
		return nil, fmt.Errorf("file has %d tokens; a llama2.c vocabulary needs at least 3 (<unk>, BOS, EOS)", len(tokens))
	}
	return newLlama2C(tokens, scores), nil
}

// newLlama2C sets up the run.c semantics: every token may be produced by
// lookups and merges (a merge needs a score above -1e10, run.c's initial
// best score), and byte fallback is id byte+3.
func newLlama2C(tokens []string, scores []float32) *SentencePiece {
	n := len(tokens)
	s := &SentencePiece{
		kind:           "llama2c",
		tokens:         tokens,
		scores:         scores,
		pieces:         make([][]byte, n),
		isByte:         make([]bool, n),
		lookup:         make(map[string]int, n),
		unk:            -1,
		bos:            llama2cBOS,
		eos:            llama2cEOS,
		addSpacePrefix: true,
		space:          " ",
		minScore:       -1e10,
		mergeBytes:     true,
		specials:       newSpecialMatcher(nil),
	}
	for id, tok := range tokens {
		if _, ok := s.lookup[tok]; !ok {
			s.lookup[tok] = id
		}
		if b, ok := parseByteToken(tok); ok {
			s.pieces[id] = []byte{b}
			s.isByte[id] = true
		} else {
			s.pieces[id] = []byte(tok)
		}
	}
	s.all = s.lookup
	for b := range s.byteIDs {
		s.byteIDs[b] = -1
		if b+3 < n {
			s.byteIDs[b] = b + 3
		}
	}
	s.eosList = endIDs(llama2cEOS, func(text string) (int, bool) {
		id, ok := s.all[text]
		return id, ok
	})
	return s
}
