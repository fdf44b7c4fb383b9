package tokenizer

import (
	"sort"
	"strings"
)

// specialToken is a token matched as a whole in the text before the
// ordinary tokenizer runs (Hugging Face "added tokens", GGUF control and
// user-defined tokens).
type specialToken struct {
	text string
	id   int
	// control tokens (special=true in tokenizer.json, type 3 in GGUF) are
	// only recognised with EncodeOptions.ParseSpecial; the others
	// (user-defined) always are.
	control bool
}

// specialMatcher finds special tokens in text: leftmost match first, the
// longest one where several start at the same byte.
type specialMatcher struct {
	byFirst [256][]specialToken // candidates by first byte, longest first
	count   int
}

// newSpecialMatcher indexes toks (empty texts are ignored). Where two
// tokens have the same text, the first one wins.
func newSpecialMatcher(toks []specialToken) *specialMatcher {
	m := &specialMatcher{}
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		if t.text == "" || seen[t.text] {
			continue
		}
		seen[t.text] = true
		b := t.text[0]
		m.byFirst[b] = append(m.byFirst[b], t)
		m.count++
	}
	for b := range m.byFirst {
		c := m.byFirst[b]
		// Longest first, so that the longest match at a position wins.
		sort.SliceStable(c, func(i, j int) bool { return len(c[i].text) > len(c[j].text) })
	}
	return m
}

// fragment is a piece of the input: either text for the ordinary
// tokenizer (id < 0) or one special token id.
type fragment struct {
	text string
	id   int
}

// split cuts text into text fragments and special tokens. With
// parseSpecial false, control tokens are left in the text.
func (m *specialMatcher) split(text string, parseSpecial bool) []fragment {
	if m.count == 0 {
		if text == "" {
			return nil
		}
		return []fragment{{text: text, id: -1}}
	}
	var out []fragment
	start := 0 // start of the pending text fragment
	for i := 0; i < len(text); {
		cands := m.byFirst[text[i]]
		matched := false
		for _, c := range cands {
			if (parseSpecial || !c.control) && strings.HasPrefix(text[i:], c.text) {
				if i > start {
					out = append(out, fragment{text: text[start:i], id: -1})
				}
				out = append(out, fragment{id: c.id})
				i += len(c.text)
				start = i
				matched = true
				break
			}
		}
		if !matched {
			i++
		}
	}
	if start < len(text) {
		out = append(out, fragment{text: text[start:], id: -1})
	}
	return out
}
