package weights

// Hugging Face checkpoint folders: config.json (LlamaForCausalLM), weights
// in model.safetensors or sharded as listed by model.safetensors.index.json,
// and optionally tokenizer.json.
//
// HF Llama checkpoints store wq/wk rows in the half-split RoPE layout (the
// rotary pairs of a head of size d are rows i and i+d/2), so models loaded
// from here have RopeHalfSplit = true.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/star-attn/star/weights/tokenizer"
)

const (
	hfConfigFile      = "config.json"
	hfSingleFile      = "model.safetensors"
	hfIndexFile       = "model.safetensors.index.json"
	hfTokenizerFile   = "tokenizer.json"
	hfMaxConfigBytes  = 16 << 20
	stMaxHeaderBytes  = 100 << 20 // the safetensors format's own limit
	stHeaderLenPrefix = 8
)

// hfConfig is the part of config.json we read. Pointers tell absent keys
// from zero values.
type hfConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	VocabSize             *int            `json:"vocab_size"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	RopeScaling           map[string]any  `json:"rope_scaling"`
	RopeParameters        map[string]any  `json:"rope_parameters"` // newer transformers
	HiddenAct             *string         `json:"hidden_act"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	TorchDtype            json.RawMessage `json:"torch_dtype"` // informational
}

// parseHFConfig turns config.json's bytes into a Config (RopeHalfSplit
// set) and reports whether the classifier is tied to the embedding.
func parseHFConfig(b []byte) (Config, bool, error) {
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return Config{}, false, fmt.Errorf("config.json is not valid JSON for a model config: %w", err)
	}
	if err := h.checkLlama(); err != nil {
		return Config{}, false, err
	}
	c := Config{Arch: "llama", RopeTheta: 10000, RopeHalfSplit: true}
	if err := h.sizes(&c); err != nil {
		return Config{}, false, err
	}
	if h.RMSNormEps == nil {
		return Config{}, false, fmt.Errorf("config.json has no rms_norm_eps; it is not a complete Llama config")
	}
	c.NormEps = float32(*h.RMSNormEps)
	if err := h.rope(&c); err != nil {
		return Config{}, false, err
	}
	if err := c.Check(); err != nil {
		return Config{}, false, fmt.Errorf("config.json: %w", err)
	}
	tied := h.TieWordEmbeddings != nil && *h.TieWordEmbeddings
	return c, tied, nil
}

// checkLlama refuses configs of other architectures and Llama variants
// star does not compute.
func (h *hfConfig) checkLlama() error {
	isLlama := h.ModelType == "llama"
	for _, a := range h.Architectures {
		if a == "LlamaForCausalLM" {
			isLlama = true
		}
	}
	if !isLlama {
		return fmt.Errorf("unsupported architecture %v (config.json model_type %q): only Llama checkpoints (LlamaForCausalLM, model_type \"llama\") are supported",
			h.Architectures, h.ModelType)
	}
	if h.HiddenAct != nil && *h.HiddenAct != "silu" {
		return fmt.Errorf("config.json hidden_act = %q is not supported; Llama uses \"silu\"", *h.HiddenAct)
	}
	if h.AttentionBias != nil && *h.AttentionBias {
		return fmt.Errorf("config.json attention_bias = true is not supported (Llama attention has no biases)")
	}
	if h.MLPBias != nil && *h.MLPBias {
		return fmt.Errorf("config.json mlp_bias = true is not supported (Llama MLPs have no biases)")
	}
	return nil
}

// sizes reads the model's sizes into c: the required ones, then the
// key/value heads and head size with their defaults.
func (h *hfConfig) sizes(c *Config) error {
	for _, f := range []struct {
		key string
		src *int
		dst *int
	}{
		{"hidden_size", h.HiddenSize, &c.Dim},
		{"intermediate_size", h.IntermediateSize, &c.HiddenDim},
		{"num_hidden_layers", h.NumHiddenLayers, &c.NLayers},
		{"num_attention_heads", h.NumAttentionHeads, &c.NHeads},
		{"max_position_embeddings", h.MaxPositionEmbeddings, &c.SeqLen},
		{"vocab_size", h.VocabSize, &c.VocabSize},
	} {
		if f.src == nil {
			return fmt.Errorf("config.json has no %s; it is not a complete Llama config", f.key)
		}
		if *f.src <= 0 {
			return fmt.Errorf("config.json %s = %d must be positive", f.key, *f.src)
		}
		*f.dst = *f.src
	}
	if c.SeqLen > MaxContextLength {
		return fmt.Errorf("config.json max_position_embeddings = %d is beyond the supported %d", c.SeqLen, MaxContextLength)
	}
	c.NKVHeads = c.NHeads
	if h.NumKeyValueHeads != nil {
		c.NKVHeads = *h.NumKeyValueHeads
	}
	if h.HeadDim != nil {
		c.HeadDim = *h.HeadDim
	} else {
		if c.Dim%c.NHeads != 0 {
			return fmt.Errorf("config.json hidden_size %d is not a multiple of num_attention_heads %d and head_dim is absent", c.Dim, c.NHeads)
		}
		c.HeadDim = c.Dim / c.NHeads
	}
	return nil
}

// rope reads the RoPE base and scaling, from rope_theta and rope_scaling
// or newer transformers' rope_parameters.
func (h *hfConfig) rope(c *Config) error {
	rope := h.RopeScaling
	if h.RopeTheta != nil {
		c.RopeTheta = *h.RopeTheta
	} else if t, ok := h.RopeParameters["rope_theta"].(float64); ok {
		c.RopeTheta = t
	}
	if rope == nil && h.RopeParameters != nil {
		rope = h.RopeParameters
	}
	var err error
	c.RopeScaling, err = parseHFRopeScaling(rope)
	return err
}

// parseHFRopeScaling reads rope_scaling: none, "default", or "llama3".
func parseHFRopeScaling(rs map[string]any) (*RopeScaling, error) {
	if rs == nil {
		return nil, nil
	}
	typ, _ := rs["rope_type"].(string)
	if typ == "" {
		typ, _ = rs["type"].(string)
	}
	switch typ {
	case "", "default":
		return nil, nil
	case "llama3":
	default:
		return nil, fmt.Errorf("config.json rope_scaling type %q is not supported; only \"llama3\" scaling is", typ)
	}
	num := func(key string) (float64, error) {
		v, ok := rs[key].(float64)
		if !ok || !(v > 0) {
			return 0, fmt.Errorf("config.json rope_scaling.%s = %v: a positive number is required for llama3 scaling", key, rs[key])
		}
		return v, nil
	}
	out := &RopeScaling{Type: "llama3"}
	var err error
	if out.Factor, err = num("factor"); err != nil {
		return nil, err
	}
	if out.LowFreqFactor, err = num("low_freq_factor"); err != nil {
		return nil, err
	}
	if out.HighFreqFactor, err = num("high_freq_factor"); err != nil {
		return nil, err
	}
	orig, err := num("original_max_position_embeddings")
	if err != nil {
		return nil, err
	}
	if orig != float64(int(orig)) || orig > 1<<30 {
		return nil, fmt.Errorf("config.json rope_scaling.original_max_position_embeddings = %v is not a valid position count", orig)
	}
	out.OriginalMaxPos = int(orig)
	if out.HighFreqFactor <= out.LowFreqFactor {
		return nil, fmt.Errorf("config.json rope_scaling: high_freq_factor %g must exceed low_freq_factor %g", out.HighFreqFactor, out.LowFreqFactor)
	}
	return out, nil
}

// stEntry is one tensor of a safetensors file as parsed from its header.
type stEntry struct {
	name   string
	dtype  string // as written ("F32", "BF16", "I64", ...)
	tensor Tensor // Data set only for F32/F16/BF16
}

// stDTypes maps the safetensors dtypes we read.
var stDTypes = map[string]DType{"F32": F32, "F16": F16, "BF16": BF16}

// stDTypeSizes covers the other safetensors dtypes so their offsets can
// be checked even though we do not read them.
var stDTypeSizes = map[string]int64{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4,
	"I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}

// parseSafetensors decodes a safetensors file held in data and returns its
// tensors as views into data, keyed by name.
func parseSafetensors(data []byte) (map[string]*stEntry, error) {
	if len(data) < stHeaderLenPrefix {
		return nil, fmt.Errorf("safetensors file is %d bytes, shorter than its 8-byte header length; the file is truncated", len(data))
	}
	n := le.Uint64(data)
	if n > stMaxHeaderBytes || n > uint64(len(data)-stHeaderLenPrefix) {
		return nil, fmt.Errorf("safetensors header length %d is larger than the file (%d bytes) or the 100 MiB limit; the file is truncated or not safetensors",
			n, len(data))
	}
	header := data[stHeaderLenPrefix : stHeaderLenPrefix+n]
	body := data[stHeaderLenPrefix+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("safetensors header is not a JSON object: %w", err)
	}
	if k, _ := duplicateKey(header); k != "" {
		return nil, fmt.Errorf("safetensors header lists tensor %q twice; every tensor needs one entry: the file is corrupt or crafted", k)
	}
	out := make(map[string]*stEntry, len(raw))
	ranges := make([]byteRange, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var info struct {
			DType       string  `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &info); err != nil {
			return nil, fmt.Errorf("safetensors tensor %q: header entry is malformed: %w", name, err)
		}
		e, err := stTensor(name, info.DType, info.Shape, info.DataOffsets, body)
		if err != nil {
			return nil, err
		}
		out[name] = e
		ranges = append(ranges, byteRange{name: name, start: info.DataOffsets[0], end: info.DataOffsets[1]})
	}
	if err := checkOverlaps(ranges, "safetensors"); err != nil {
		return nil, fmt.Errorf("%w (offsets count from the end of the header)", err)
	}
	return out, nil
}

// stTensor checks one header entry against the data that follows the
// header and makes its view.
func stTensor(name, dtype string, shape, offsets []int64, body []byte) (*stEntry, error) {
	if len(offsets) != 2 {
		return nil, fmt.Errorf("safetensors tensor %q: data_offsets has %d values, expected [begin, end]", name, len(offsets))
	}
	begin, end := offsets[0], offsets[1]
	if begin < 0 || end < begin || end > int64(len(body)) {
		return nil, fmt.Errorf("safetensors tensor %q: data_offsets [%d, %d] do not lie within the %d bytes of data after the header; the file is truncated or its header is corrupt",
			name, begin, end, len(body))
	}
	size, known := stDTypeSizes[dtype]
	if !known {
		return nil, fmt.Errorf("safetensors tensor %q has unknown dtype %q", name, dtype)
	}
	numel := int64(1)
	ishape := make([]int, len(shape))
	for i, d := range shape {
		if d < 0 || d > int64(len(body)) {
			return nil, fmt.Errorf("safetensors tensor %q: shape %v is invalid for a file of this size", name, shape)
		}
		ishape[i] = int(d)
		numel *= d
		if numel > int64(len(body)) {
			return nil, fmt.Errorf("safetensors tensor %q: shape %v holds more elements than the file has bytes; the header is corrupt", name, shape)
		}
	}
	if end-begin != numel*size {
		return nil, fmt.Errorf("safetensors tensor %q: data_offsets [%d, %d] span %d bytes but %s %v needs %d; the header is corrupt",
			name, begin, end, end-begin, dtype, shape, numel*size)
	}
	e := &stEntry{name: name, dtype: dtype}
	if dt, ok := stDTypes[dtype]; ok {
		data := body[begin:end:end]
		if len(data) > 0 && uintptr(unsafe.Pointer(&data[0]))%uintptr(dt.Size()) != 0 {
			// Safetensors does not require aligned tensors (writers since
			// 2023 align them). Compute kernels read whole elements:
			// give a misaligned tensor an aligned copy rather than a view.
			data = append(make([]byte, 0, len(data)), data...)
		}
		e.tensor = Tensor{Name: name, DType: dt, Shape: ishape, Data: data}
	}
	return e, nil
}

// hfFiles works out the checkpoint folder and the weight files from the
// path given to Load: a folder or a file inside one.
func hfFiles(path string) (dir, single, index string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", "", fmt.Errorf("model %s: %w", path, err)
	}
	dir = path
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	if exists(filepath.Join(dir, hfIndexFile)) {
		return dir, "", filepath.Join(dir, hfIndexFile), nil
	}
	if !st.IsDir() {
		if k, _ := Sniff(path); k == KindSafetensors || strings.HasSuffix(path, ".safetensors") {
			return dir, path, "", nil
		}
	}
	if exists(filepath.Join(dir, hfSingleFile)) {
		return dir, filepath.Join(dir, hfSingleFile), "", nil
	}
	return "", "", "", fmt.Errorf("Hugging Face folder %s has neither %s nor %s; only safetensors checkpoints are supported (convert .bin/.pth weights with transformers' save_pretrained(safe_serialization=True))",
		dir, hfSingleFile, hfIndexFile)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// parseHFIndex reads model.safetensors.index.json's weight_map.
func parseHFIndex(b []byte) (map[string]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", hfIndexFile, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s has no weight_map entries", hfIndexFile)
	}
	if k, level := duplicateKey(b, "weight_map"); k != "" {
		if level == 0 {
			return nil, fmt.Errorf("%s has the key %q twice; the file is corrupt", hfIndexFile, k)
		}
		return nil, fmt.Errorf("%s lists tensor %q twice in weight_map; every tensor lives in one shard: the file is corrupt", hfIndexFile, k)
	}
	for name, file := range idx.WeightMap {
		if file == "" || file != filepath.Base(file) || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("%s maps tensor %q to %q, which is not a file name in the checkpoint folder", hfIndexFile, name, file)
		}
	}
	return idx.WeightMap, nil
}

func loadHF(path string) (*Model, error) {
	dir, single, index, err := hfFiles(path)
	if err != nil {
		return nil, err
	}
	cfgBytes, err := readSmallFile(filepath.Join(dir, hfConfigFile), hfMaxConfigBytes)
	if err != nil {
		return nil, err
	}
	c, tied, err := parseHFConfig(cfgBytes)
	if err != nil {
		return nil, fmt.Errorf("Hugging Face checkpoint %s: %w", dir, err)
	}
	m := &Model{Config: c, Format: "hf"}
	w := &hfWeights{dir: dir, single: single, index: index}
	if err := w.open(m); err != nil {
		m.Close()
		return nil, err
	}
	if err := w.fill(m, tied); err != nil {
		m.Close()
		return nil, err
	}
	if tokPath := filepath.Join(dir, hfTokenizerFile); exists(tokPath) {
		if m.Tokenizer, err = loadHFTokenizer(tokPath); err != nil {
			m.Close()
			return nil, err
		}
		if n := m.Tokenizer.VocabSize(); n > c.VocabSize {
			m.Close()
			return nil, fmt.Errorf("%s has %d tokens but config.json vocab_size is %d; they do not belong together", tokPath, n, c.VocabSize)
		}
	}
	return m, nil
}

// hfWeights is a checkpoint's weight files, mapped, with their tensors.
type hfWeights struct {
	dir, single, index string            // as hfFiles found them
	weightMap          map[string]string // tensor -> file name; nil when not sharded
	byFile             map[string]map[string]*stEntry
}

// open maps every weight file once (the mappings go to m) and collects
// its tensors.
func (w *hfWeights) open(m *Model) error {
	files := []string{w.single}
	if w.index != "" {
		b, err := readSmallFile(w.index, stMaxHeaderBytes)
		if err != nil {
			return err
		}
		if w.weightMap, err = parseHFIndex(b); err != nil {
			return fmt.Errorf("Hugging Face checkpoint %s: %w", w.dir, err)
		}
		files = files[:0]
		seen := map[string]bool{}
		for _, f := range w.weightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, filepath.Join(w.dir, f))
			}
		}
		sort.Strings(files)
	}
	w.byFile = map[string]map[string]*stEntry{}
	for _, f := range files {
		data, unmap, err := mapFile(f)
		if err != nil {
			if w.index != "" && errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w (listed in %s; is the download incomplete?)", err, hfIndexFile)
			}
			return err
		}
		m.unmap = append(m.unmap, unmap)
		ents, err := parseSafetensors(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		w.byFile[filepath.Base(f)] = ents
	}
	if w.index != "" {
		if err := checkShards(files, w.byFile); err != nil {
			return fmt.Errorf("Hugging Face checkpoint %s: %w", w.dir, err)
		}
	}
	return nil
}

// lookup finds a tensor and the file that holds (or should hold) it.
func (w *hfWeights) lookup(name string) (*stEntry, string, bool) {
	if w.weightMap == nil {
		e, ok := w.byFile[filepath.Base(w.single)][name]
		return e, w.single, ok
	}
	f, ok := w.weightMap[name]
	if !ok {
		return nil, w.index, false
	}
	e, ok := w.byFile[f][name]
	return e, filepath.Join(w.dir, f), ok
}

// get returns a readable tensor or says why there is none.
func (w *hfWeights) get(name string) (Tensor, error) {
	e, file, ok := w.lookup(name)
	if !ok {
		if w.weightMap != nil {
			if _, listed := w.weightMap[name]; listed {
				return Tensor{}, fmt.Errorf("%s: tensor %q is missing although %s lists it in this file", file, name, hfIndexFile)
			}
		}
		return Tensor{}, fmt.Errorf("%s: tensor %q is missing; the checkpoint is incomplete or not a Llama model", file, name)
	}
	if e.tensor.Data == nil {
		return Tensor{}, fmt.Errorf("%s: tensor %q has dtype %s; only F32, F16 and BF16 are supported", file, name, e.dtype)
	}
	return e.tensor, nil
}

// fill gives m its layers and every tensor, the classifier tied to the
// token embedding when config.json says so or the checkpoint has none.
func (w *hfWeights) fill(m *Model, tied bool) error {
	c := &m.Config
	nTensors := 0
	for _, ents := range w.byFile {
		nTensors += len(ents)
	}
	if c.NLayers > nTensors/len(layerTensors) {
		return fmt.Errorf("Hugging Face checkpoint %s: config.json num_hidden_layers = %d but the weight files hold only %d tensors (%d per layer needed); the checkpoint is incomplete",
			w.dir, c.NLayers, nTensors, len(layerTensors))
	}
	m.Layers = make([]Layer, c.NLayers)
	return m.Walk(LoadOrder, func(s *TensorSpec, layer int, t *Tensor) error {
		name := s.HFName(layer)
		if name == "" {
			return nil // not a Hugging Face tensor
		}
		if s.Classifier {
			if _, _, has := w.lookup(name); !has || tied {
				c.TiedEmbeddings = true
				*t = m.TokEmb
				return nil
			}
		}
		var err error
		*t, err = w.get(name)
		return err
	})
}

// checkShards refuses a tensor stored in more than one shard: which copy
// the index means would be a guess.
func checkShards(files []string, byFile map[string]map[string]*stEntry) error {
	where := map[string]string{}
	for _, f := range files { // sorted: the message names the same pair every time
		base := filepath.Base(f)
		names := make([]string, 0, len(byFile[base]))
		for name := range byFile[base] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if other, dup := where[name]; dup {
				return fmt.Errorf("tensor %q is stored in two shards, %s and %s; every tensor must live in one: the checkpoint is corrupt or was mixed from two downloads", name, other, base)
			}
			where[name] = base
		}
	}
	return nil
}

// loadHFTokenizer is the only place HF loading calls into package tokenizer.
func loadHFTokenizer(path string) (tokenizer.Tokenizer, error) {
	tok, err := tokenizer.LoadHF(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// readSmallFile reads a JSON side file, refusing absurd sizes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d a config/index file can reasonably be; wrong file?", path, st.Size(), limit)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return b, nil
}
