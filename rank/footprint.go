package rank

import (
	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/weights"
)

// Footprint: what one rank holds for a document. A workerPlan sizes every
// buffer of a rank's Worker; NewWorkerFor allocates exactly those and
// Footprint adds them up, so the memory `star inspect` predicts and the
// refusal before a run are the allocator's own numbers.

// workerPlan is the size of every buffer of one rank's Worker for one
// document, in tokens or rows.
type workerPlan struct {
	host     bool
	capacity int           // tokens per forward (the activations' rows)
	chunk    int           // phase-2 rows merged at once (the partials' rows)
	blocks   []int         // its blocks' lengths (their K/V)
	reserve  int           // host: tokens of the query cache reserved up front
	anchor   int           // anchor tokens it encodes itself (0: none, or B_0's first rows)
	keyRows  int           // rows of the anchor ; block key and value buffers (0: no anchor attended)
	parts    int           // phase-2 partials per step: its blocks, plus the host's query cache
	kv       weights.DType // of the K/V caches
}

// planWorker sizes rank r's worker for layout lay (no blocks: global
// attention, all in the host's query cache of reserve tokens).
func planWorker(lay Layout, r int, capacity, chunk, reserve int, kv weights.DType) workerPlan {
	p := workerPlan{host: r == 0, capacity: capacity, chunk: min(chunk, capacity), kv: kv}
	longest := 0
	for _, b := range lay.Of(r) {
		p.blocks = append(p.blocks, b.Len)
		longest = max(longest, b.Len)
	}
	if p.host {
		p.reserve = reserve
	}
	if lay.EncodesAnchor(r) { // else none, or a view of B_0's first rows
		p.anchor = lay.AnchorSize
	}
	if lay.NeedsAnchor(r) {
		p.keyRows = lay.AnchorSize + longest
	}
	p.parts = len(p.blocks)
	if p.host {
		p.parts++
	}
	return p
}

// Memory is what one rank needs, by part.
type Memory struct {
	Rank            int    `json:"rank"`
	Context         int    `json:"context_tokens"`
	BlockSize       int    `json:"block_size"`
	Blocks          int    `json:"blocks"`             // blocks this rank holds
	BlockTokens     int    `json:"block_tokens"`       // their tokens
	WeightBytes     int64  `json:"weights_bytes"`      // memory-mapped, shared by the ranks of a node
	KVBytes         int64  `json:"kv_cache_bytes"`     // K/V of its blocks (+ query and generated tokens on rank 0)
	AnchorBytes     int64  `json:"anchor_bytes"`       // anchor K/V while encoding
	ActivationBytes int64  `json:"activation_bytes"`   // per-forward scratch
	ProgramBytes    int64  `json:"program_bytes"`      // the program, its libraries and the Go runtime
	TotalBytes      int64  `json:"total_bytes"`        // all of the above
	KVBytesPerToken int64  `json:"kv_bytes_per_token"` // K and V, all layers, in KVDType
	KVDType         string `json:"kv_dtype"`           // the K/V caches' element type: f32, f16, bf16
	// DeviceBytes is what the rank holds on a GPU (--device cuda): its
	// weights (as stored, norms float32), K/V, anchor and device
	// activations (set by jobs.Inspect).
	DeviceBytes int64 `json:"device_bytes"`
}

// held is what the worker's own buffers take (bytes), by part: acts
// are the backend's activations (the forward state, log-sum-exps,
// partials, anchor ; block keys).
type held struct {
	kv, anchor, acts, logits int64
}

func (h held) activations() int64 { return h.acts + h.logits }

// bytes is what p's buffers take in model m.
func (p workerPlan) bytes(m *layers.Model) held {
	c := &m.Cfg
	per := KVBytesPerToken(c, p.kv)
	H, D, kvd := int64(c.NHeads), int64(c.HeadDim), int64(c.KVDim())
	var h held
	for _, n := range p.blocks {
		h.kv += per * int64(n)
	}
	h.kv += per * int64(p.reserve)
	h.anchor = per * int64(p.anchor)
	h.acts = m.StateBytes(p.capacity) +
		4*int64(p.capacity)*H + // phase 1's log-sum-exps
		4*int64(p.parts)*int64(p.chunk)*H*(D+1) + // phase 2's partial attentions of a chunk
		2*4*kvd*int64(p.keyRows) // anchor ; block keys and values of one layer
	if p.host {
		h.logits = 4 * int64(c.VocabSize) // the last position's logits
	}
	return h
}

// Footprint is what rank r needs to hold its part of layout lay with model
// m and K/V caches of dtype kv: its worker's buffers (blocks' K/V, on rank
// 0 reserve tokens of query K/V, the anchor, activations of capacity
// tokens, partials of chunk rows), the compute backend's scratch, the
// weights (weightBytes, shared by a node's ranks) and the program.
func Footprint(m *layers.Model, weightBytes int64, lay Layout, r, reserve, capacity, chunk int, kv weights.DType) Memory {
	p := planWorker(lay, r, capacity, chunk, reserve, kv)
	h := p.bytes(m)
	mem := Memory{Rank: r, Context: lay.N, BlockSize: lay.BlockSize, WeightBytes: weightBytes,
		KVBytesPerToken: KVBytesPerToken(&m.Cfg, kv), KVDType: layers.KVDTypeName(kv), Blocks: len(p.blocks),
		KVBytes: h.kv, AnchorBytes: h.anchor, ActivationBytes: h.activations() + m.ScratchBytes(p.capacity),
		ProgramBytes: ProgramBytes}
	for _, n := range p.blocks {
		mem.BlockTokens += n
	}
	mem.TotalBytes = mem.WeightBytes + mem.KVBytes + mem.AnchorBytes + mem.ActivationBytes + mem.ProgramBytes
	return mem
}

// Capacity is the tokens one forward takes for a layout: the longest
// block, or a chunk of the query if that is longer.
func Capacity(lay Layout, chunk int) int { return max(lay.MaxBlockLen(), chunk) }

// DeviceActivationBytes is what a rank's activations take on a GPU
// (layers/cuda, which allocates exactly this): the forward state of
// capacity tokens, RoPE tables and token ids, decode's split-attention
// partials, 16-bit copies of a
// product's input when some weights are 16-bit (wide16), parts partials
// of chunk rows, and the logits of one row.
func DeviceActivationBytes(c *weights.Config, capacity, parts, chunk int, wide16 bool) int64 {
	n, mc := int64(capacity), int64(min(capacity, 256))
	D, qd, kvd, hd, H := int64(c.Dim), int64(c.QDim()), int64(c.KVDim()), int64(c.HiddenDim), int64(c.NHeads)
	b := 4 * (3*n*D + 2*n*qd + 2*n*kvd + 2*mc*hd + n*H + n + n*int64(c.HeadDim))
	b += 4 * 256 * H * int64(c.HeadDim+1) // decode's split-attention partials (cuda.MaxSplits)
	if wide16 {
		b += 2 * max(n*max(D, qd), mc*hd)
	}
	b += 4 * int64(parts) * int64(chunk) * (qd + H)
	return b + 4*int64(c.VocabSize)
}

// DeviceWeightBytes is what m's weights take on a GPU: matrices as
// stored, norms as float32, a tied classifier once.
func DeviceWeightBytes(m *weights.Model) int64 {
	var n int64
	m.Walk(weights.CheckOrder, func(s *weights.TensorSpec, _ int, t *weights.Tensor) error {
		switch {
		case s.Classifier && m.Config.TiedEmbeddings:
		case s.Norm:
			n += 4 * int64(t.Numel())
		default:
			n += t.Bytes()
		}
		return nil
	})
	return n
}

// Wide16 tells whether some matrix of m is 16-bit (a GPU converts
// activations for its products).
func Wide16(m *weights.Model) bool {
	wide := false
	m.Walk(weights.CheckOrder, func(s *weights.TensorSpec, _ int, t *weights.Tensor) error {
		wide = wide || (!s.Norm && (t.DType == weights.F16 || t.DType == weights.BF16))
		return nil
	})
	return wide
}
