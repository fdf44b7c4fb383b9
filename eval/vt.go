package eval

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// vtHops is RULER's vt: one chain of four hops (five variables).
const (
	vtChains = 1
	vtHops   = 4
)

// chain is a variable-tracking chain: VAR A = 12345, VAR B = VAR A, …
type chain struct {
	vars  []string
	value string
	stmts []string
	at    []float64 // sorted: where each statement goes in the noise
}

// newChain draws a chain with variable names of k uppercase letters.
func newChain(r *rand.Rand, k int) chain {
	seen := map[string]bool{"VAR": true}
	var c chain
	for len(c.vars) < vtHops+1 {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte('A' + r.IntN(26))
		}
		if v := string(b); !seen[v] {
			seen[v] = true
			c.vars = append(c.vars, v)
		}
	}
	c.value = fmt.Sprint(10000 + r.IntN(89999))
	c.stmts = []string{fmt.Sprintf("VAR %s = %s", c.vars[0], c.value)}
	for j := 0; j < vtHops; j++ {
		c.stmts = append(c.stmts, fmt.Sprintf("VAR %s = VAR %s ", c.vars[j+1], c.vars[j]))
	}
	for range c.stmts {
		c.at = append(c.at, r.Float64())
	}
	sortFloats(c.at)
	return c
}

// vtUnit is one noise paragraph of vt's haystack, with its line break.
const vtUnit = noise + "\n"

// render is the chain among n noise paragraphs (then f bytes of one
// more), joined as RULER joins them, in the template, with the question
// and answer prefix.
func (c chain) render(n, f int) parts {
	var s []string
	next := 0
	for i := 0; i < n; i++ {
		for next < len(c.stmts) && int(c.at[next]*float64(n)) <= i {
			s = append(s, c.stmts[next])
			next++
		}
		s = append(s, vtUnit)
	}
	if f > 0 {
		s = append(s, vtUnit[:min(f, len(vtUnit))])
	}
	text := strings.ReplaceAll(strings.Join(s, " "), ". \n", ".\n")
	kv := []string{"{query}", c.value, "{num_v}", fmt.Sprint(vtHops + 1)}
	return parts{context: fill(vtTemplate.context, "{context}", text), query: fill(vtTemplate.query, kv...),
		prefix: fill(vtTemplate.prefix, kv...), answers: c.vars}
}

// vt is a variable-tracking sample: a worked example (RULER's one-shot
// example, with three-letter names and its answer) before the task.
type vt struct {
	main    chain
	example string
}

func (g *Generator) vtDraft(length int, r *rand.Rand) (*vt, error) {
	ex := newChain(r, 3)
	main := newChain(r, 5)
	// RULER sizes its example to 500 tokens (with 30 to generate); below
	// 4000 tokens star gives it an eighth of the length, so that short
	// lengths still have room for the task.
	budget := min(500, length/8)
	size := func(n int) (int, error) {
		ids, err := g.Tok.Encode(exampleText(ex, n), false)
		return len(ids) + vtTemplate.gen, err
	}
	at, err := size(1)
	if err != nil {
		return nil, err
	}
	n := 1
	if at <= budget {
		if n, _, err = largest(1, at, budget, size, 1<<20); err != nil {
			return nil, err
		}
	}
	return &vt{main: main, example: exampleText(ex, n)}, nil
}

// exampleText is the worked example: the task at n noise paragraphs,
// its question and answer prefix, then the answer.
func exampleText(c chain, n int) string {
	p := c.render(n, 0)
	return p.context + p.query + p.prefix + " " + strings.Join(p.answers, " ") + "\n\n"
}

func (d *vt) minUnits() int { return 1 }
func (d *vt) maxUnits() int { return 1 << 30 }
func (d *vt) fine(int) int  { return len(vtUnit) - 1 }
func (d *vt) render(n, f int) parts {
	p := d.main.render(n, f)
	p.context = " " + d.example + "\n\n" + p.context // where RULER puts its example
	return p
}
