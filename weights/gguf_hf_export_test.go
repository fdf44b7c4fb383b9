package weights

// Hooks for the external tests in package weights_test (which cannot reach
// unexported names, and cannot be internal tests because they import
// weights/weightstest, which imports weights).

// ParseGGUFBytes runs the whole GGUF reader over data without touching
// disk or building a tokenizer: header, hyperparameters, tensor views,
// Validate and the tokenizer metadata. It is the fuzz target.
func ParseGGUFBytes(data []byte) (*Model, error) {
	g, err := parseGGUF(data)
	if err != nil {
		return nil, err
	}
	m, err := ggufModel(g, data)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if _, err := g.tokenizerSpec(); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseSafetensorsBytes parses one safetensors file held in data and
// returns its readable (F32/F16/BF16) tensors by name.
func ParseSafetensorsBytes(data []byte) (map[string]Tensor, error) {
	ents, err := parseSafetensors(data)
	if err != nil {
		return nil, err
	}
	out := map[string]Tensor{}
	for name, e := range ents {
		if e.tensor.Data != nil {
			out[name] = e.tensor
		}
	}
	return out, nil
}

// ParseHFConfigBytes parses config.json bytes.
func ParseHFConfigBytes(b []byte) (Config, bool, error) { return parseHFConfig(b) }

// ParseLlama2CBytes parses a llama2.c checkpoint held in data.
func ParseLlama2CBytes(data []byte) (*Model, error) { return parseLlama2C(data) }
