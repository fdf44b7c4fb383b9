package tokenizer

import (
	"unicode/utf8"
)

// StreamDecoder turns ids into text as they are generated, one id at a
// time, without ever splitting a UTF-8 character: byte tokens and
// byte-level pieces that end inside a character are held back until the
// character is complete. Bytes that can never form a valid character come
// out as U+FFFD, one per byte. For ids whose Decode is valid UTF-8, the
// concatenated output of Add and Flush equals Decode(ids).
//
// A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       Tokenizer
	prev    int    // the last id added, -1 at the start
	pending []byte // bytes not yet emitted (an incomplete character)
}

// NewStreamDecoder starts a stream for t.
func NewStreamDecoder(t Tokenizer) *StreamDecoder {
	return &StreamDecoder{t: t, prev: -1}
}

// After makes the stream continue after id (the last prompt token, say)
// without emitting id's own text: the next piece is decoded as following it.
func (s *StreamDecoder) After(id int) { s.prev = id }

// Add appends the piece of id and returns the text it completes, which
// may be "" (a partial character is waiting for its next bytes). BOS adds
// nothing, as in Decode.
func (s *StreamDecoder) Add(id int) string {
	prev := s.prev
	s.prev = id
	if id == s.t.BOS() {
		return ""
	}
	s.pending = append(s.pending, s.t.Piece(prev, id)...)
	return s.take(false)
}

// Flush returns whatever is held back, as U+FFFD for each byte of an
// unfinished character, and empties the stream's buffer. The stream can
// go on after it (it still remembers the last id).
func (s *StreamDecoder) Flush() string {
	return s.take(true)
}

// take emits the complete characters of pending. Unless all, an
// unfinished character at the end stays pending.
func (s *StreamDecoder) take(all bool) string {
	p := s.pending
	var out []byte
	for len(p) > 0 {
		if !all && !utf8.FullRune(p) {
			break // the start of a character whose next bytes are to come
		}
		r, n := utf8.DecodeRune(p)
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	s.pending = append(s.pending[:0], p...)
	return string(out)
}
