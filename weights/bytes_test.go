package weights_test

import (
	"testing"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

// Decode reads every weight once per token except an untied embedding
// table, of which it reads one row.
func TestDecodeBytes(t *testing.T) {
	for _, tied := range []bool{false, true} {
		m := weightstest.RandomModel(weights.Config{Dim: 8, HiddenDim: 16, NLayers: 2, NHeads: 2, NKVHeads: 1, VocabSize: 10, SeqLen: 8, TiedEmbeddings: tied}, 1)
		row := int64(len(m.TokEmb.Data) / 10)
		want := m.WeightBytes()
		if !tied {
			want -= 9 * row
		}
		if got := m.DecodeBytes(); got != want {
			t.Errorf("tied=%v: DecodeBytes = %d, want %d (WeightBytes %d, embedding row %d)", tied, got, want, m.WeightBytes(), row)
		}
	}
}
