package weights

import (
	"reflect"
	"strings"
	"testing"
)

// The schema covers every tensor field of Layer and Model once, each
// order walks each of them once, and a layer's names carry its number.
func TestSchemaCoversEveryTensor(t *testing.T) {
	m := &Model{Layers: make([]Layer, 2)}
	fields := map[*Tensor]string{}
	addFields := func(v reflect.Value, prefix string) {
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.Type() == reflect.TypeOf(Tensor{}) {
				fields[f.Addr().Interface().(*Tensor)] = prefix + v.Type().Field(i).Name
			}
		}
	}
	addFields(reflect.ValueOf(m).Elem(), "")
	for i := range m.Layers {
		addFields(reflect.ValueOf(&m.Layers[i]).Elem(), "layer.")
	}
	for o := CheckOrder; o <= Llama2COrder; o++ {
		seen := map[*Tensor]int{}
		m.Walk(o, func(s *TensorSpec, layer int, tn *Tensor) error {
			if tn != nil {
				seen[tn]++
			}
			if s.InLayer() != (layer >= 0) {
				t.Errorf("order %d: %s walked with layer %d", o, s.GGUFName(layer), layer)
			}
			return nil
		})
		for p, name := range fields {
			if seen[p] != 1 {
				t.Errorf("order %d walks %s %d times", o, name, seen[p])
			}
		}
		if len(seen) != len(fields) {
			t.Errorf("order %d walks %d tensors, the structs have %d", o, len(seen), len(fields))
		}
	}
	for _, s := range append(append([]*TensorSpec{}, layerTensors...), tokEmbTensor, finalNormTensor, outputTensor, RopeFreqs, FreqCisReal, FreqCisImag) {
		for _, n := range []string{s.GGUF, s.HF, s.Llama2C} {
			if n != "" && strings.Count(n, "%d") != map[bool]int{true: 1}[s.InLayer()] {
				t.Errorf("name %q: a layer's names need one %%d, others none", n)
			}
		}
	}
}
