package layers

import (
	"fmt"

	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
)

// Model is a Llama-family transformer over loaded weights.
type Model struct {
	Cfg       weights.Config
	W         *weights.Model
	C         Compute
	Freqs     []float64   // [HeadDim/2] RoPE inverse frequencies
	attnNorm  [][]float32 // [NLayers][Dim]
	ffnNorm   [][]float32 // [NLayers][Dim]
	finalNorm []float32   // [Dim]
}

// NewModel prepares w for computation with backend c.
func NewModel(w *weights.Model, c Compute) *Model {
	cfg := w.Config
	m := &Model{Cfg: cfg, W: w, C: c, Freqs: RopeFreqs(cfg.HeadDim, cfg.RopeTheta, cfg.RopeScaling)}
	for i := range w.Layers {
		m.attnNorm = append(m.attnNorm, w.Layers[i].AttnNorm.Floats())
		m.ffnNorm = append(m.ffnNorm, w.Layers[i].FFNNorm.Floats())
	}
	m.finalNorm = w.FinalNorm.Floats()
	return m
}

// Shape is the attention shape of the model.
func (m *Model) Shape() AttnShape {
	return AttnShape{H: m.Cfg.NHeads, HKV: m.Cfg.NKVHeads, D: m.Cfg.HeadDim}
}

// mlpChunk bounds the rows of MLP activations held at once.
const mlpChunk = 256

// State holds the activations of up to Cap tokens processed together.
type State struct {
	Cap int
	X   []float32 // [Cap, Dim] residual stream
	XB  []float32 // [Cap, Dim] normalised input of a sub-layer
	XB2 []float32 // [Cap, Dim] sub-layer output
	Q   []float32 // [Cap, QDim] queries (after RoPE)
	K   []float32 // [Cap, KVDim] keys (after RoPE)
	V   []float32 // [Cap, KVDim] values
	Att []float32 // [Cap, QDim] attention output
	H1  []float32 // [min(Cap, mlpChunk), HiddenDim] gate
	H3  []float32 // [min(Cap, mlpChunk), HiddenDim] up
	cos []float32 // [HeadDim/2]
	sin []float32 // [HeadDim/2]
}

// NewState allocates activations for up to capacity tokens.
func (m *Model) NewState(capacity int) *State {
	c := &m.Cfg
	mc := min(capacity, mlpChunk)
	return &State{
		Cap: capacity,
		X:   make([]float32, capacity*c.Dim), XB: make([]float32, capacity*c.Dim), XB2: make([]float32, capacity*c.Dim),
		Q: make([]float32, capacity*c.QDim()), K: make([]float32, capacity*c.KVDim()), V: make([]float32, capacity*c.KVDim()),
		Att: make([]float32, capacity*c.QDim()),
		H1:  make([]float32, mc*c.HiddenDim), H3: make([]float32, mc*c.HiddenDim),
		cos: make([]float32, c.HeadDim/2), sin: make([]float32, c.HeadDim/2),
	}
}

// StateBytes is the memory NewState(capacity) takes.
func (m *Model) StateBytes(capacity int) int64 {
	c := &m.Cfg
	mc := min(capacity, mlpChunk)
	return 4 * int64(capacity*(3*c.Dim+2*c.QDim()+2*c.KVDim())+2*mc*c.HiddenDim+c.HeadDim)
}

// ScratchBytes bounds the scratch a Forward of capacity tokens needs in a
// compute backend that copies (packs) a product's input, as the CPU
// backend's GEMM does: the largest input of a linear layer.
func (m *Model) ScratchBytes(capacity int) int64 {
	c := &m.Cfg
	mc := min(capacity, mlpChunk)
	return 4 * int64(max(capacity*max(c.Dim, c.QDim()), mc*c.HiddenDim)+16*max(c.Dim, c.HiddenDim))
}

// AttendFunc computes the attention of layer `layer` for n new tokens and
// writes it to out [n, QDim]. q [n, QDim], k, v [n, KVDim] are the new
// tokens' projections with RoPE applied. The function decides which keys
// the tokens see and keeps k, v in whatever cache it owns.
type AttendFunc func(layer int, out, q, k, v []float32, n int) error

// Forward embeds tokens [n] at positions pos [n] and runs every layer,
// leaving the final residual stream in s.X[:n*Dim].
func (m *Model) Forward(s *State, tokens, pos []int, attend AttendFunc) error {
	c := &m.Cfg
	n := len(tokens)
	if n > s.Cap {
		return fmt.Errorf("forward: %d tokens exceed the state capacity %d", n, s.Cap)
	}
	if len(pos) != n {
		return fmt.Errorf("forward: %d tokens but %d positions", n, len(pos))
	}
	D, qd, kvd := c.Dim, c.QDim(), c.KVDim()
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return fmt.Errorf("forward: token id %d at index %d is outside the vocabulary [0, %d)", t, i, c.VocabSize)
		}
		quant.RowsTo(s.X[i*D:(i+1)*D], &m.W.TokEmb, t, 1) // a quantized table: this row dequantized
	}
	for l := range m.W.Layers {
		w := &m.W.Layers[l]
		// attention sub-layer
		m.normRows(s.XB, s.X, m.attnNorm[l], n)
		m.C.MatMul(s.Q, s.XB, &w.WQ, n)
		m.C.MatMul(s.K, s.XB, &w.WK, n)
		m.C.MatMul(s.V, s.XB, &w.WV, n)
		for i := 0; i < n; i++ {
			RoPE(s.Q[i*qd:(i+1)*qd], pos[i], c.NHeads, c.HeadDim, m.Freqs, c.RopeHalfSplit, s.cos, s.sin)
			RoPE(s.K[i*kvd:(i+1)*kvd], pos[i], c.NKVHeads, c.HeadDim, m.Freqs, c.RopeHalfSplit, s.cos, s.sin)
		}
		if err := attend(l, s.Att[:n*qd], s.Q[:n*qd], s.K[:n*kvd], s.V[:n*kvd], n); err != nil {
			return fmt.Errorf("layer %d attention: %w", l, err)
		}
		m.C.MatMul(s.XB2, s.Att, &w.WO, n)
		Add(s.X[:n*D], s.XB2[:n*D])
		// MLP sub-layer, in chunks of rows
		m.normRows(s.XB, s.X, m.ffnNorm[l], n)
		hd := c.HiddenDim
		for r0 := 0; r0 < n; r0 += mlpChunk {
			nr := min(mlpChunk, n-r0)
			xb := s.XB[r0*D : (r0+nr)*D]
			m.C.MatMul(s.H1, xb, &w.W1, nr)
			m.C.MatMul(s.H3, xb, &w.W3, nr)
			SwiGLU(m.C, s.H1[:nr*hd], s.H3[:nr*hd])
			m.C.MatMul(s.XB2[r0*D:], s.H1, &w.W2, nr)
		}
		Add(s.X[:n*D], s.XB2[:n*D])
	}
	return nil
}

// normRows applies RMSNorm with weight w to rows [0, n) of x into out.
func (m *Model) normRows(out, x, w []float32, n int) {
	D := m.Cfg.Dim
	m.C.Parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			RMSNorm(out[i*D:(i+1)*D], x[i*D:(i+1)*D], w, m.Cfg.NormEps)
		}
	})
}

// Logits computes the classifier output for the given rows of s.X after
// the final norm: out [len(rows), VocabSize]. It uses s.XB as scratch.
func (m *Model) Logits(out []float32, s *State, rows []int) {
	D := m.Cfg.Dim
	for j, r := range rows {
		RMSNorm(s.XB[j*D:(j+1)*D], s.X[r*D:(r+1)*D], m.finalNorm, m.Cfg.NormEps)
	}
	m.C.MatMul(out, s.XB, &m.W.Output, len(rows))
}
