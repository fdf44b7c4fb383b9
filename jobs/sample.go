package jobs

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/star-attn/star/layers"
)

// Sampler picks the next token from logits: greedy at temperature 0,
// otherwise softmax(logits/T) restricted to the top-p nucleus.
type Sampler struct {
	Temperature float64 // 0: greedy
	TopP        float64 // (0, 1]; 1: no nucleus cut
	rng         *rand.Rand
	logp        []float32 // [V] scratch
	probs       []idProb  // [V] scratch
}

type idProb struct {
	id int
	p  float64
}

// NewSampler seeds a sampler; equal seeds give equal choices.
func NewSampler(temperature, topP float64, seed uint64) *Sampler {
	if topP <= 0 || topP > 1 {
		topP = 1
	}
	return &Sampler{Temperature: temperature, TopP: topP, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Sample returns the chosen id and its natural-log probability under the
// model's own distribution (softmax of the raw logits, before temperature
// and nucleus). logits: [V].
func (s *Sampler) Sample(logits []float32) (int, float64) {
	if cap(s.logp) < len(logits) {
		s.logp = make([]float32, len(logits))
	}
	logp := s.logp[:len(logits)]
	layers.LogSoftmax(logp, logits)
	if s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best, float64(logp[best])
	}
	// p_i ∝ exp(logp_i / T), max subtracted.
	m := math.Inf(-1)
	for _, v := range logp {
		m = math.Max(m, float64(v))
	}
	s.probs = s.probs[:0]
	var sum float64
	for i, v := range logp {
		p := math.Exp((float64(v) - m) / s.Temperature)
		s.probs = append(s.probs, idProb{i, p})
		sum += p
	}
	cands := s.probs
	if s.TopP < 1 {
		sort.Slice(cands, func(a, b int) bool {
			if cands[a].p != cands[b].p {
				return cands[a].p > cands[b].p
			}
			return cands[a].id < cands[b].id
		})
		var cum float64
		for k := range cands {
			cum += cands[k].p / sum
			if cum >= s.TopP {
				cands = cands[:k+1]
				break
			}
		}
		sum = 0
		for _, c := range cands {
			sum += c.p
		}
	}
	r := s.rng.Float64() * sum
	for _, c := range cands {
		r -= c.p
		if r < 0 {
			return c.id, float64(logp[c.id])
		}
	}
	last := cands[len(cands)-1].id
	return last, float64(logp[last])
}
