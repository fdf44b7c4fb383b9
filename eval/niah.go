package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// noise is RULER's noise haystack: the default haystack, and the one
// niah_single_1 and vt always use.
const noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

// needleFormat is RULER's needle (its distractors in the "needle"
// haystack have the same form).
const needleFormat = "One of the special magic {type_needle_v} for {key} is: {value}."

// randomValue draws a key or value of kind "numbers" (7 digits), "words"
// (adjective-noun) or "uuids" (version 4), as RULER's niah.py does.
func randomValue(kind string, r *rand.Rand) string {
	switch kind {
	case "numbers":
		return fmt.Sprint(1000000 + r.IntN(9000000))
	case "uuids":
		hi, lo := r.Uint64(), r.Uint64()
		hi = hi&^0xf000 | 0x4000           // version 4
		lo = lo&^(0xc000<<48) | 0x8000<<48 // RFC 4122 variant
		return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
	}
	return keyWord(r)
}

// haystack is a sequence of units (sentences, noise paragraphs,
// distractor lines) joined by sep, of which the first n are used whole
// and the next cut to f bytes.
type haystack struct {
	unit func(i int) string
	sep  string
}

// tail is unit i cut to at most f bytes at a character boundary.
func (h haystack) tail(i, f int) string {
	u := h.unit(i)
	f = min(f, len(u))
	for f > 0 && !utf8.RuneStart(u[f]) {
		f--
	}
	return u[:f]
}

// essaySentences splits a text into sentences after RULER's
// normalisation (every run of white space is one space); a sentence ends
// at '.', '!' or '?' followed by a space.
func essaySentences(text string) []string {
	text = strings.TrimSpace(regexp.MustCompile(`\s+`).ReplaceAllString(text, " "))
	var out []string
	start := 0
	for i := 0; i+1 < len(text); i++ {
		if (text[i] == '.' || text[i] == '!' || text[i] == '?') && text[i+1] == ' ' {
			out = append(out, text[start:i+1])
			start = i + 2
		}
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

// depths are RULER's needle depths in percent: 40 points from 0 to 100.
func depths() []int {
	d := make([]int, 40)
	for i := range d {
		d[i] = int(math.Round(100 * float64(i) / 39))
	}
	return d
}

// niah is a needle-in-a-haystack sample with its random choices made.
type niah struct {
	c       niahConfig
	hay     haystack
	needles []string  // shuffled
	at      []float64 // where each needle goes, as a fraction of the haystack
	keys    []string  // the keys asked for
	answers []string
}

func (g *Generator) niahDraft(c niahConfig, r *rand.Rand) *niah {
	c.numK = max(c.numK, c.numQ)
	d := &niah{c: c}
	taken := map[string]bool{}
	var keys []string
	var values [][]string
	for len(keys) < c.numK {
		k := randomValue(c.keyType, r)
		if taken[k] {
			continue
		}
		taken[k] = true
		keys = append(keys, k)
		var vs []string
		for range c.numV {
			v := randomValue(c.valType, r)
			vs = append(vs, v)
			d.needles = append(d.needles, fill(needleFormat, "{type_needle_v}", c.valType, "{key}", k, "{value}", v))
		}
		values = append(values, vs)
	}
	r.Shuffle(len(d.needles), func(i, j int) { d.needles[i], d.needles[j] = d.needles[j], d.needles[i] })
	d.hay = g.niahHaystack(c, taken, r)
	if c.haystack == "essay" {
		ds := depths()
		r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
		for i := range d.needles {
			d.at = append(d.at, float64(ds[i%len(ds)])/100)
		}
	} else {
		for range d.needles {
			d.at = append(d.at, r.Float64())
		}
	}
	sort.Float64s(d.at)
	for _, i := range r.Perm(c.numK)[:c.numQ] {
		d.keys = append(d.keys, keys[i])
		d.answers = append(d.answers, values[i]...)
	}
	return d
}

// niahHaystack is the haystack of a NIAH variant: the noise paragraph
// repeated (one per line), the essay's sentences (the user's --haystack,
// else the noise sentences) repeated as long as needed, or distractor
// needles (one per line) whose keys are none of the real ones.
func (g *Generator) niahHaystack(c niahConfig, taken map[string]bool, r *rand.Rand) haystack {
	switch c.haystack {
	case "noise":
		return haystack{unit: func(int) string { return noise }, sep: "\n"}
	case "essay":
		text := g.Haystack
		if strings.TrimSpace(text) == "" {
			text = noise
		}
		s := essaySentences(text)
		return haystack{unit: func(i int) string { return s[i%len(s)] }, sep: " "}
	}
	var lines []string // made as needed; line i never changes
	seed1, seed2 := r.Uint64(), r.Uint64()
	lr := rand.New(rand.NewPCG(seed1, seed2))
	return haystack{sep: "\n", unit: func(i int) string {
		for len(lines) <= i {
			k := randomValue(c.keyType, lr)
			if taken[k] {
				continue
			}
			lines = append(lines, fill(needleFormat, "{type_needle_v}", c.valType, "{key}", k, "{value}", randomValue(c.valType, lr)))
		}
		return lines[i]
	}}
}

func (d *niah) minUnits() int  { return 1 }
func (d *niah) maxUnits() int  { return 1 << 30 }
func (d *niah) fine(n int) int { return len(d.hay.unit(n)) - 1 }

// render places the needles among n haystack units (the first n, then f
// bytes of the next as the last piece) and fills the templates.
func (d *niah) render(n, f int) parts {
	var pieces []string
	next := 0
	for i := 0; i <= n; i++ {
		for next < len(d.needles) && int(d.at[next]*float64(n)) <= i && (i < n || d.c.haystack == "essay") {
			pieces = append(pieces, d.needles[next])
			next++
		}
		if i < n {
			pieces = append(pieces, d.hay.unit(i))
		}
	}
	if f > 0 {
		pieces = append(pieces, d.hay.tail(n, f))
	}
	tmpl, typ := niahTemplate, d.c.valType
	if d.c.numQ*d.c.numV == 1 {
		tmpl = template{context: singular(tmpl.context), query: singular(tmpl.query), prefix: singular(tmpl.prefix)}
		typ = strings.TrimSuffix(typ, "s")
	}
	query := d.keys[0]
	if len(d.keys) > 1 {
		query = strings.Join(d.keys[:len(d.keys)-1], ", ") + ", and " + d.keys[len(d.keys)-1]
	}
	kv := []string{"{type_needle_v}", typ, "{query}", query}
	return parts{
		context: fill(tmpl.context, append(kv, "{context}", strings.Join(pieces, d.hay.sep))...),
		query:   fill(tmpl.query, kv...),
		prefix:  fill(tmpl.prefix, kv...),
		answers: d.answers,
	}
}

func sortFloats(a []float64) { sort.Float64s(a) }
