package weights_test

import (
	"testing"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// Decode reads every weight once per token except an untied embedding
// table, of which it reads one row. Expected sizes by hand, float32, for
// dim 8, hidden 16, 2 layers, 2 heads of 4, 1 KV head, vocabulary 10:
// a layer is wq 8x8 + wk, wv 4x8 + wo 8x8 + w1, w3 16x8 + w2 8x16 + two
// norms of 8 = 592 floats; the final norm 8; embedding (and an untied
// classifier) 10x8 = 80 each.
func TestDecodeBytes(t *testing.T) {
	for _, c := range []struct {
		tied           bool
		weight, decode int64
	}{
		// untied: 2*592 + 8 + 80 + 80 floats; decode skips 9 of the 10 embedding rows
		{false, (2*592 + 8 + 80 + 80) * 4, (2*592 + 8 + 8 + 80) * 4},
		// tied: the embedding is the classifier, read whole
		{true, (2*592 + 8 + 80) * 4, (2*592 + 8 + 80) * 4},
	} {
		m := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 16, NLayers: 2, NHeads: 2, NKVHeads: 1, VocabSize: 10, SeqLen: 8, TiedEmbeddings: c.tied}, 1)
		if got := m.WeightBytes(); got != c.weight {
			t.Errorf("tied=%v: WeightBytes = %d, want %d", c.tied, got, c.weight)
		}
		if got := m.DecodeBytes(); got != c.decode {
			t.Errorf("tied=%v: DecodeBytes = %d, want %d", c.tied, got, c.decode)
		}
		// DecodeData is that memory, tensor by tensor, within the tensors'
		// data: the embedding's first row when untied, the whole table when tied.
		var sum int64
		for _, b := range m.DecodeData() {
			sum += int64(len(b))
		}
		if sum != c.decode {
			t.Errorf("tied=%v: DecodeData holds %d bytes, want DecodeBytes %d", c.tied, sum, c.decode)
		}
		emb := m.DecodeData()[0]
		if want := int64(len(m.TokEmb.Data)); !c.tied {
			want /= 10
			if &emb[0] != &m.TokEmb.Data[0] || int64(len(emb)) != want {
				t.Errorf("tied=%v: DecodeData's first region is %d bytes, want the embedding's first row (%d)", c.tied, len(emb), want)
			}
		}
	}
}
