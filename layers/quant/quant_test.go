package quant_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/layers/quant"
	"github.com/star-attn/star/weights"
)

// QuantFiles are the shared GGUFs quantized by llama.cpp's own tool.
var quantFiles = []string{"Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"}

type refRows struct {
	GGMLType string    `json:"ggml_type"`
	NE       []int     `json:"shape_ne"`
	Row0     []float64 `json:"row_0"`
	RowLast  []float64 `json:"row_last"`
}

// The dequantized first and last rows of every quantized tensor of the
// shared files equal those of ggml's reference dequantizer (gguf-py),
// exactly (float32 equality), and every tensor of the reference is read
// with its ggml type and dims.
func TestDequantizeSharedReferences(t *testing.T) {
	for _, name := range quantFiles {
		t.Run(name, func(t *testing.T) {
			var ref struct {
				Rows map[string]refRows `json:"dequantized_rows"`
			}
			shared.ReadJSON(t, "reference/quant/tiny-"+name+".reference.json", &ref)
			m, err := weights.Load(shared.Path(t, "reference/quant/tiny-"+name+".gguf"), weights.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tensors := map[string]*weights.Tensor{}
			m.Walk(weights.CheckOrder, func(s *weights.TensorSpec, layer int, tn *weights.Tensor) error {
				if tn != nil && !(s.Classifier && m.Config.TiedEmbeddings) {
					tensors[tn.Name] = tn
				}
				return nil
			})
			if len(ref.Rows) == 0 {
				t.Fatal("reference lists no tensors")
			}
			types := map[string]int{}
			for tname, r := range ref.Rows {
				tn := tensors[tname]
				if tn == nil {
					t.Fatalf("tensor %s of the reference is not in the model", tname)
				}
				if tn.DType.String() != r.GGMLType || len(r.NE) != 2 || tn.Cols() != r.NE[0] || tn.Rows() != r.NE[1] {
					t.Fatalf("%s: read as %v %v, reference has %s ne %v", tname, tn.DType, tn.Shape, r.GGMLType, r.NE)
				}
				types[r.GGMLType]++
				got := make([]float32, tn.Cols())
				for _, row := range []struct {
					i    int
					want []float64
				}{{0, r.Row0}, {tn.Rows() - 1, r.RowLast}} {
					quant.RowsTo(got, tn, row.i, 1)
					if len(row.want) != len(got) {
						t.Fatalf("%s row %d: reference has %d values, the row %d", tname, row.i, len(row.want), len(got))
					}
					for k := range got {
						if float64(got[k]) != float64(float32(row.want[k])) {
							t.Fatalf("%s (%s) row %d: weight %d = %.9g, reference %.9g", tname, r.GGMLType, row.i, k, got[k], row.want[k])
						}
					}
				}
			}
			t.Logf("%d tensors compared, types %v; model weight types: %s", len(ref.Rows), types, m.WeightTypes())
		})
	}
}

// Dequantizing a block is a fixed function of its bytes: checks of each
// type's layout on hand-made blocks (scales 1, the quants counting up), so
// that a wrong nibble or bit order shows which weight went where.
func TestDequantizeHandMadeBlocks(t *testing.T) {
	one := weights.F32ToF16(1)
	put16 := func(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
	cases := []struct {
		dt   weights.DType
		make func() []byte
		want func(i int) float32
	}{
		{weights.Q8_0, func() []byte {
			b := make([]byte, 34)
			put16(b, one)
			for i := range 32 {
				b[2+i] = byte(int8(i - 16))
			}
			return b
		}, func(i int) float32 { return float32(i - 16) }},
		{weights.Q4_0, func() []byte {
			b := make([]byte, 18)
			put16(b, one)
			for i := range 16 {
				b[2+i] = byte(i) | byte(15-i)<<4
			}
			return b
		}, func(i int) float32 {
			if i < 16 {
				return float32(i - 8)
			}
			return float32(15 - (i - 16) - 8)
		}},
		{weights.Q4_K, func() []byte { // scale j+1, min j for sub-block j; q = l%16
			b := make([]byte, 144)
			put16(b, one)
			put16(b[2:], one)
			var sc, m [8]uint8
			for j := range 8 {
				sc[j], m[j] = uint8(j+1)+40, uint8(j)+20 // above 15 and 31: the top bits count
			}
			s := weights.PackScaleMinK4(sc, m)
			copy(b[4:], s[:])
			for c := range 4 {
				for l := range 32 {
					b[16+32*c+l] = byte(l%16) | byte(15-l%16)<<4
				}
			}
			return b
		}, func(i int) float32 {
			j, l := i/32, i%32
			q := l % 16
			if j%2 == 1 {
				q = 15 - l%16
			}
			return float32(j+41)*float32(q) - float32(j+20)
		}},
		{weights.Q5_K, func() []byte { // as Q4_K, fifth bit set for odd l in odd chunks' first sub-block
			b := make([]byte, 176)
			put16(b, one)
			put16(b[2:], one)
			var sc, m [8]uint8
			for j := range 8 {
				sc[j], m[j] = uint8(j+1), uint8(j)
			}
			s := weights.PackScaleMinK4(sc, m)
			copy(b[4:], s[:])
			for l := range 32 {
				b[16+l] = byte(l) // bit 2c+h of qh[l] is bit (2c+h) of l
			}
			for c := range 4 {
				for l := range 32 {
					b[48+32*c+l] = byte(l%16) | byte(15-l%16)<<4
				}
			}
			return b
		}, func(i int) float32 {
			j, l := i/32, i%32
			q := l % 16
			if j%2 == 1 {
				q = 15 - l%16
			}
			if l>>j&1 == 1 {
				q += 16
			}
			return float32(j+1)*float32(q) - float32(j)
		}},
		{weights.Q6_K, func() []byte { // q = weight index % 64 (as ql | qh << 4), scale of sub-block k = k-8
			b := make([]byte, 210)
			for i := range 256 {
				q := i % 64
				h, r := i/128, i%128
				l, part := r%32, r/32 // part 0..3: low nibble of ql[l], of ql[l+32], high of ql[l], of ql[l+32]
				ql := b[64*h:]
				qh := b[128+32*h:]
				switch part {
				case 0:
					ql[l] |= byte(q & 15)
				case 1:
					ql[l+32] |= byte(q & 15)
				case 2:
					ql[l] |= byte(q&15) << 4
				case 3:
					ql[l+32] |= byte(q&15) << 4
				}
				qh[l] |= byte(q>>4) << (2 * part)
			}
			for k := range 16 {
				b[192+k] = byte(int8(k - 8))
			}
			put16(b[208:], one)
			return b
		}, func(i int) float32 { return float32(i/16-8) * float32(i%64-32) }},
	}
	for _, c := range cases {
		got := make([]float32, c.dt.BlockElems())
		quant.Row(c.dt, got, c.make())
		for i := range got {
			if w := c.want(i); got[i] != w {
				t.Fatalf("%v: weight %d = %g, want %g (all: %v)", c.dt, i, got[i], w, fmt.Sprint(got))
			}
		}
		if math.IsNaN(float64(got[0])) {
			t.Fatal("NaN")
		}
	}
}
