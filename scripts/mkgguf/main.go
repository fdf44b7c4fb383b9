// Command mkgguf writes a GGUF file of random weights of any Llama shape,
// with the tokenizer of another GGUF file, so that star and other programs
// (llama.cpp, ik_llama.cpp) can be measured on the very same file:
//
//	go run ./scripts/mkgguf --config configs/bench-0.85b.json --dtype f16 \
//	    --tokenizer-from ../shared/models/gguf/tiny-random-llama2.gguf --out /tmp/bench-0.85b-f16.gguf
//
// The weights are star's dummy weights (weights.NewDummy: matrices
// ~N(0, 1/sqrt(in)), norms 1) for a seed; --dtype takes star's dtype
// names (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k). The donor's
// tokenizer.* pairs are copied; its vocabulary size must be the config's.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/weightstest"
)

func main() {
	config := flag.String("config", "", "Hugging Face config.json of the shape")
	dtype := flag.String("dtype", "f16", "weights' dtype")
	donor := flag.String("tokenizer-from", "", "GGUF file whose tokenizer.* metadata to copy")
	seed := flag.Uint64("seed", 1, "random seed")
	out := flag.String("out", "", "file to write")
	flag.Parse()
	if err := run(*config, *dtype, *donor, *seed, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkgguf:", err)
		os.Exit(1)
	}
}

func run(config, dtypeName, donor string, seed uint64, out string) error {
	if config == "" || donor == "" || out == "" {
		return fmt.Errorf("--config, --tokenizer-from and --out are required")
	}
	dt, err := weights.ParseDType(dtypeName)
	if err != nil {
		return err
	}
	cfg, _, err := weights.ReadDummyConfig(config)
	if err != nil {
		return err
	}
	keys, kv, err := weights.GGUFMetadata(donor)
	if err != nil {
		return err
	}
	var extra []weightstest.GGUFKV
	for _, k := range keys {
		if strings.HasPrefix(k, "tokenizer.") {
			extra = append(extra, weightstest.GGUFKV{Key: k, Value: kv[k]})
		}
	}
	if toks, ok := kv["tokenizer.ggml.tokens"].([]string); !ok || len(toks) != cfg.VocabSize {
		return fmt.Errorf("%s: its vocabulary (%d tokens) is not the config's %d", donor, len(toks), cfg.VocabSize)
	}
	m, err := weights.NewDummy(cfg, dt, seed)
	if err != nil {
		return err
	}
	return weightstest.WriteGGUFWithMetadata(out, m, dt, extra)
}
