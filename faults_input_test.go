package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/star-attn/star/internal/shared"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
	"github.com/star-attn/star/weights/weightstest"
)

// Hostile and mistaken inputs (issue 10, classes 11-16): generation
// settings out of range, tensor tables whose byte ranges overlap or repeat,
// files of the wrong kind, models too large for memory, numeric flags out
// of range, and prompts too long for the context. Each is refused with one
// line that names what is wrong, before any work, and touches no file.
func TestFaultsInput(t *testing.T) {
	model := func(t *testing.T) string { return shared.Path(t, "models/stories260K/stories260K.bin") }
	sh := func(t *testing.T, rel string) string { return shared.Path(t, rel) }
	prompt := func(t *testing.T, d *faultDir) string { return d.keep(t, d.write(t, "p.txt", "Once upon a time")) }
	// run is `star --model M --prompt P` plus args.
	run := func(args ...string) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			return append([]string{"--model", model(t), "--prompt", prompt(t, d), "--max-tokens", "4"}, args...)
		}
	}
	cmd := func(args ...string) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string { return append(args, "--model", model(t)) }
	}
	// jobsRun runs one JSON Lines record (or MessagePack bytes) and leaves
	// the results in out.jsonl; the input file must stay as it was.
	jobsRun := func(record any, args ...string) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			var in string
			switch r := record.(type) {
			case string:
				in = d.write(t, "in.jsonl", r+"\n")
			default:
				b, err := msgpack.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				in = d.write(t, "in.msgpack", string(b))
			}
			d.keep(t, in)
			return append([]string{"jobs", "run", "--model", model(t), "--input", in, "--output", d.path("out.jsonl"), "--max-tokens", "2"}, args...)
		}
	}
	// resultError requires the one result to be an error naming want.
	resultError := func(want string) func(t *testing.T, d *faultDir, stdout, stderr string) {
		return func(t *testing.T, d *faultDir, stdout, stderr string) {
			b, err := os.ReadFile(d.path("out.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			var res struct{ Error string }
			if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &res) != nil || !strings.Contains(res.Error, want) {
				t.Fatalf("results %q, want one error naming %q", b, want)
			}
		}
	}
	oneLine := func(t *testing.T, d *faultDir, stdout, stderr string) {
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
			t.Fatalf("%d lines on stderr, want one:\n%s", n+1, stderr)
		}
	}
	noOutput := func(t *testing.T, d *faultDir, stdout, stderr string) {
		if _, err := os.Stat(d.path("out.jsonl")); err == nil {
			t.Fatalf("a refused job created its output file")
		}
	}
	// modelFile writes bytes made by make as the model and runs inspect on it.
	modelFile := func(name string, make func(t *testing.T) []byte) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			return []string{"inspect", "--model", d.keep(t, d.write(t, name, string(make(t))))}
		}
	}
	hfDir := func(edit func(t *testing.T, dir string)) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			dir := d.path("hf")
			if err := weightstest.WriteHF(dir, faultModel(), weights.BF16, 3); err != nil {
				t.Fatal(err)
			}
			edit(t, dir)
			return []string{"inspect", "--model", dir}
		}
	}
	config := func(edit func(map[string]any)) func(t *testing.T, d *faultDir) string {
		return func(t *testing.T, d *faultDir) string {
			c := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_size": 64,
				"intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
				"rms_norm_eps": 1e-5, "max_position_embeddings": 512, "vocab_size": 512}
			edit(c)
			b, _ := json.Marshal(c)
			return d.keep(t, d.write(t, "config.json", string(b)))
		}
	}
	// 15 TiB of BF16 weights: no machine holds them.
	huge := config(func(c map[string]any) {
		c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"] = 32768, 131072, 512, 256, 32
	})
	dummy := func(cfg func(t *testing.T, d *faultDir) string, args ...string) func(t *testing.T, d *faultDir) []string {
		return func(t *testing.T, d *faultDir) []string {
			return append(append(args[:len(args):len(args)], "--load-format", "dummy", "--model-config", cfg(t, d)), "--dtype", "bf16")
		}
	}
	textOf := func(n int) string { return strings.Repeat("Once upon a time there was a dog. ", n/34+1)[:n] }
	tok512 := func(t *testing.T) tokenizer.Tokenizer {
		tok, err := weights.LoadTokenizer(sh(t, "models/stories260K/tok512.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// maxPrompt is the most bytes a prompt for the 512-token model can
	// have and still be tokenized (BOS takes a token).
	maxPrompt := func(t *testing.T) int { return (512 - 1) * tokenizer.MaxTokenBytes(tok512(t)) }

	runFaults(t, []fault{
		// 11: generation settings, on the command line and in records
		{name: "temperature NaN", prep: run("--temperature", "NaN"), code: 1, want: "--temperature NaN: must be a finite number"},
		{name: "top-p NaN", prep: run("--top-p", "NaN"), code: 1, want: "--top-p NaN: must be a number in (0, 1]"},
		{name: "temperature +Inf", prep: run("--temperature", "+Inf"), code: 1, want: "--temperature +Inf"},
		{name: "temperature -Inf", prep: run("--temperature", "-inf"), code: 1, want: "--temperature -Inf"},
		{name: "temperature negative", prep: run("--temperature", "-0.5"), code: 1, want: "--temperature -0.5"},
		{name: "temperature past float64", prep: run("--temperature", "1e309"), code: 1, want: "value out of range"},
		{name: "top-p negative zero", prep: run("--top-p", "-0"), code: 1, want: "--top-p -0"},
		{name: "top-p Inf", prep: run("--top-p", "Inf"), code: 1, want: "--top-p +Inf"},
		{name: "top-p above 1", prep: run("--top-p", "1.0000001"), code: 1, want: "--top-p 1.0000001"},
		{name: "max-tokens negative", prep: run("--max-tokens", "-1"), code: 1, want: "--max-tokens -1"},
		{name: "max-tokens huge", prep: run("--max-tokens", "99999999999"), code: 1, want: "--max-tokens 99999999999"},
		{name: "jobs default temperature NaN", prep: jobsRun(`{"context":"Once upon a time","query":"The"}`, "--temperature", "nan"),
			code: 1, want: "--temperature NaN", check: noOutput},
		{name: "jobs default top-p negative", prep: jobsRun(`{"context":"Once upon a time","query":"The"}`, "--top-p", "-1"),
			code: 1, want: "--top-p -1", check: noOutput},
		{name: "record temperature overflows to Inf", prep: jobsRun(`{"context":"Once upon a time","query":"The","temperature":1e999}`),
			code: 2, check: resultError(`"temperature" = +Inf`)},
		{name: "record query top_p negative zero", prep: jobsRun(`{"context":"Once upon a time","queries":[{"query":"The","top_p":-0}]}`),
			code: 2, check: resultError(`"top_p" = -0`)},
		{name: "record max_tokens too large", prep: jobsRun(`{"context":"Once upon a time","query":"The","max_tokens":1e12}`),
			code: 2, check: resultError(`"max_tokens" = 1000000000000`)},
		{name: "msgpack record temperature NaN", prep: jobsRun(map[string]any{"context": "Once upon a time", "query": "The", "temperature": nan()}),
			code: 2, check: resultError(`"temperature" = NaN`)},
		{name: "msgpack record top_p Inf", prep: jobsRun(map[string]any{"context": "Once upon a time", "query": "The", "top_p": inf()}),
			code: 2, check: resultError(`"top_p" = +Inf`)},

		// 12: every tensor's byte range
		{name: "gguf tensors overlap", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			b := faultGGUF(t)
			return setGGUFOffset(t, b, "blk.0.attn_q.weight", ggufOffset(t, b, "blk.0.attn_k.weight"))
		}), code: 1, want: "overlap"},
		{name: "gguf unused tensor over a used one", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			b := faultGGUF(t, weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{8}, Data: make([]byte, 32)})
			return setGGUFOffset(t, b, "extra.weight", ggufOffset(t, b, "token_embd.weight"))
		}), code: 1, want: `"extra.weight"`},
		{name: "gguf tensor named twice", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			kv, ts, _ := weightstest.GGUFContent(faultModel(), weights.F32)
			b, _ := weightstest.EncodeGGUF(kv, append(ts, ts[2]))
			return b
		}), code: 1, want: "appears twice"},
		{name: "gguf offset misaligned", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			b := faultGGUF(t)
			return setGGUFOffset(t, b, "blk.0.ffn_up.weight", ggufOffset(t, b, "blk.0.ffn_up.weight")+4)
		}), code: 1, want: "alignment"},
		{name: "gguf tensor past the end", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			return faultGGUF(t, weightstest.GGUFTensor{Name: "extra.weight", Type: weightstest.GGMLTypeF32, Shape: []int{1 << 16}, Data: make([]byte, 4)})
		}), code: 1, want: "needs bytes"},
		{name: "safetensors tensors overlap", prep: hfDir(func(t *testing.T, dir string) {
			rewriteSTHeader(t, filepath.Join(dir, "model-00001-of-00003.safetensors"), func(h map[string]json.RawMessage) {
				h["model.norm.weight"] = h["model.embed_tokens.weight"] // not the same shape: overlap, then
				var e struct {
					Offsets []int `json:"data_offsets"`
				}
				json.Unmarshal(h["model.embed_tokens.weight"], &e)
				h["model.norm.weight"] = json.RawMessage(fmt.Sprintf(`{"dtype":"BF16","shape":[64],"data_offsets":[%d,%d]}`, e.Offsets[0]+2, e.Offsets[0]+130))
			})
		}), code: 1, want: "overlap"},
		{name: "safetensors tensor named twice", prep: hfDir(func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model-00001-of-00003.safetensors")
			b, _ := os.ReadFile(p)
			n := binary.LittleEndian.Uint64(b)
			hdr := bytes.TrimRight(b[8:8+n], " ")
			var h map[string]json.RawMessage
			json.Unmarshal(hdr, &h)
			dup := append([]byte(`{"model.embed_tokens.weight":`), h["model.embed_tokens.weight"]...)
			hdr = append(append(dup, ','), hdr[1:]...)
			writeST(t, p, hdr, b[8+n:])
		}), code: 1, want: "twice"},
		{name: "tensor in two shards", prep: hfDir(func(t *testing.T, dir string) {
			_, ts, _ := weightstest.HFContent(faultModel(), weights.BF16)
			b, _ := weightstest.EncodeSafetensors(append(append([]weightstest.STTensor(nil), ts[2*len(ts)/3:]...), ts[0]), nil)
			os.WriteFile(filepath.Join(dir, "model-00003-of-00003.safetensors"), b, 0o644)
		}), code: 1, want: "two shards"},
		{name: "index lists a tensor twice", prep: hfDir(func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors.index.json")
			b, _ := os.ReadFile(p)
			b = bytes.Replace(b, []byte(`"weight_map": {`), []byte(`"weight_map": {"model.norm.weight": "model-00001-of-00003.safetensors",`), 1)
			os.WriteFile(p, b, 0o644)
		}), code: 1, want: `"model.norm.weight" twice`},
		{name: "llama2.c checkpoint cut short", prep: modelFile("m.bin", func(t *testing.T) []byte {
			b, _ := os.ReadFile(model(t))
			return b[:len(b)-4]
		}), code: 1, want: "truncated"},
		{name: "llama2.c checkpoint with bytes after", prep: modelFile("m.bin", func(t *testing.T) []byte {
			b, _ := os.ReadFile(model(t))
			return append(b, 0, 0, 0, 0)
		}), code: 1, want: "file holds"},

		// 13: files of the wrong kind, named for what they are
		{name: "gguf with a wrong magic", prep: modelFile("m.gguf", func(t *testing.T) []byte {
			b, _ := os.ReadFile(sh(t, "models/gguf/stories260K.gguf"))
			return append([]byte("GGUX"), b[4:]...)
		}), code: 1, want: `does not start with the GGUF magic (it starts with "GGUX")`},
		{name: "tiktoken tokenizer.model as model", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"inspect", "--model", sh(t, "tokenizers/llama3/tokenizer.model")}
		}, code: 1, want: "is a tiktoken BPE file"},
		{name: "tokenizer.json as model", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", sh(t, "tokenizers/llama3/tokenizer.json"), "--prompt", prompt(t, d)}
		}, code: 1, want: "tokenizer.json, not a model: pass it with --tokenizer"},
		{name: "llama2.c tokenizer as model", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"inspect", "--model", sh(t, "models/stories260K/tok512.bin")}
		}, code: 1, want: "is a llama2.c tokenizer (tokenizer.bin), not a model"},
		{name: "SentencePiece model as model", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"inspect", "--model", sh(t, "models/stories260K/tok512.model")}
		}, code: 1, want: "is a SentencePiece tokenizer.model"},
		{name: "empty model file", prep: modelFile("m.bin", func(*testing.T) []byte { return nil }), code: 1, want: "is empty (0 bytes)"},
		{name: "prompt given as model", prep: modelFile("story.txt", func(*testing.T) []byte { return []byte("Once upon a time") }), code: 1, want: "is a text file, not a model"},
		{name: "git lfs pointer as model", prep: modelFile("m.gguf", func(*testing.T) []byte {
			return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:1234\nsize 1000\n")
		}), code: 1, want: "git lfs pull"},
		{name: "pytorch zip as model", prep: modelFile("pytorch_model.bin", func(*testing.T) []byte { return []byte("PK\x03\x04data.pkl") }),
			code: 1, want: "is a zip archive"},
		{name: "folder without config.json", prep: func(t *testing.T, d *faultDir) []string {
			b, _ := os.ReadFile(sh(t, "models/gguf/stories260K.gguf"))
			os.Mkdir(d.path("m"), 0o755)
			d.keep(t, d.write(t, "m/model.gguf", string(b)))
			return []string{"inspect", "--model", d.path("m")}
		}, code: 1, want: "holds model.gguf: pass that file with --model"},
		{name: "checkpoint as tokenizer", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"tokenize", "--tokenizer", model(t), "--text", "hi"}
		}, code: 1, want: "is a llama2.c checkpoint, not a tokenizer"},
		{name: "tiktoken tokenizer.model as tokenizer", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"tokenize", "--tokenizer", sh(t, "tokenizers/llama3/tokenizer.model"), "--text", "hi"}
		}, code: 1, want: "pass the tokenizer.json of the same model"},
		{name: "SentencePiece model as tokenizer", prep: func(t *testing.T, d *faultDir) []string {
			return run("--tokenizer", sh(t, "tokenizers/llama2/tokenizer.model"))(t, d)
		}, code: 1, want: "SentencePiece tokenizer.model (protobuf), which star does not read"},
		{name: "safetensors as tokenizer", prep: func(t *testing.T, d *faultDir) []string {
			_, ts, _ := weightstest.HFContent(faultModel(), weights.BF16)
			b, _ := weightstest.EncodeSafetensors(ts, nil)
			return []string{"tokenize", "--tokenizer", d.keep(t, d.write(t, "model.safetensors", string(b))), "--text", "hi"}
		}, code: 1, want: "is a safetensors weight file, not a tokenizer"},
		{name: "empty tokenizer", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"tokenize", "--tokenizer", d.keep(t, d.write(t, "tokenizer.bin", "")), "--text", "hi"}
		}, code: 1, want: "is empty"},
		{name: "tokenizer.json as model config", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"inspect", "--load-format", "dummy", "--model-config", sh(t, "tokenizers/llama3/tokenizer.json")}
		}, code: 1, want: "not a model's config.json"},

		// 14: sizes from the config; memory checked before allocating
		{name: "inspect sizes a 15 TiB model without allocating it", prep: dummy(huge, "inspect"), code: 0,
			check: func(t *testing.T, d *faultDir, stdout, stderr string) {
				if !strings.Contains(stdout, "parameters   7.") || !strings.Contains(stdout, "T (BF16)") {
					t.Fatalf("inspect output lacks the 7.xT parameters:\n%s", stdout)
				}
			}},
		{name: "dummy weights larger than memory", prep: dummy(huge, "--prompt", "x", "--max-tokens", "1"), code: 1,
			want: "GiB are available to each of the node's 1 ranks"},
		{name: "dummy weights larger than memory in bench", prep: dummy(huge, "bench", "--context", "64"), code: 1, want: "dummy BF16 weights of"},
		{name: "config beyond any machine", prep: dummy(config(func(c map[string]any) {
			c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"] = 1<<24, 1<<24, 1<<20, 1<<16, 1<<16
		}), "inspect"), code: 1, want: "TiB star supports"},
		{name: "config with zero layers", prep: dummy(config(func(c map[string]any) { c["num_hidden_layers"] = 0 }), "inspect"), code: 1, want: "num_hidden_layers = 0"},
		{name: "config with negative heads", prep: dummy(config(func(c map[string]any) { c["num_attention_heads"] = -8 }), "inspect"), code: 1, want: "num_attention_heads = -8"},
		{name: "config with zero kv heads", prep: dummy(config(func(c map[string]any) { c["num_key_value_heads"] = 0 }), "inspect"), code: 1, want: "n_kv_heads = 0"},
		{name: "config with a huge vocabulary", prep: dummy(config(func(c map[string]any) { c["vocab_size"] = 1 << 30 }), "inspect"), code: 1, want: "vocab_size"},
		{name: "memory-mapped model larger than memory", prep: sparseHF, code: 1, want: "memory-mapped once per node"},

		// 15: numeric flags
		{name: "inspect context and block size", prep: cmd("inspect", "--context", "-5", "--block-size", "0"), code: 1, want: "--context -5 is out of range"},
		{name: "inspect zero block size", prep: cmd("inspect", "--block-size", "0"), code: 1, want: "--block-size 0 is out of range"},
		{name: "inspect negative anchor", prep: cmd("inspect", "--anchor-size", "-1"), code: 1, want: "--anchor-size -1"},
		{name: "inspect zero ranks", prep: cmd("inspect", "--ranks", "0"), code: 1, want: "--ranks 0"},
		{name: "inspect absurd ranks", prep: cmd("inspect", "--ranks", "100000000"), code: 1, want: "--ranks 100000000"},
		{name: "inspect context past the supported length", prep: cmd("inspect", "--context", "99999999"), code: 1, want: "--context 99999999"},
		{name: "inspect zero context length", prep: cmd("inspect", "--context-length", "0"), code: 1, want: "--context-length 0"},
		{name: "inspect negative threads", prep: cmd("inspect", "--threads", "-1"), code: 1, want: "--threads -1"},
		{name: "run zero block size", prep: run("--block-size", "0"), code: 1, want: "--block-size 0"},
		{name: "run negative anchor", prep: run("--anchor-size", "-2"), code: 1, want: "--anchor-size -2"},
		{name: "run zero threads", prep: run("--threads", "0"), code: 1, want: "--threads 0"},
		{name: "run negative context length", prep: run("--context-length", "-4"), code: 1, want: "--context-length -4"},
		{name: "score negative context length", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"score", "--model", model(t), "--prompt", prompt(t, d), "--continuation", "x", "--context-length", "-4"}
		}, code: 1, want: "--context-length -4"},
		{name: "bench negative decode tokens", prep: cmd("bench", "--decode-tokens", "-1"), code: 1, want: "--decode-tokens -1"},
		{name: "bench zero query tokens", prep: cmd("bench", "--query-tokens", "0"), code: 1, want: "--query-tokens 0"},
		{name: "bench zero context", prep: cmd("bench", "--context", "0"), code: 1, want: `"0" is not a positive number`},
		{name: "bench context overflowing", prep: cmd("bench", "--context", "9999999999999999k"), code: 1, want: "more than the 16777216 tokens"},
		{name: "bench negative anchor", prep: cmd("bench", "--anchor-size", "8,-1"), code: 1, want: "--anchor-size"},
		{name: "jobs zero progress interval", prep: jobsRun(`{"context":"a","query":"b"}`, "--progress-interval", "0s"), code: 1, want: "--progress-interval 0s"},
		{name: "jobs zero block size", prep: jobsRun(`{"context":"a","query":"b"}`, "--block-size", "0"), code: 1, want: "--block-size 0", check: noOutput},
		// --kv-dtype: one line naming the accepted values, before the model loads
		{name: "run unknown kv dtype", prep: run("--kv-dtype", "f8"), code: 1, want: `--kv-dtype "f8": use auto, f32, f16 or bf16`, check: oneLine},
		{name: "score unknown kv dtype", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"score", "--model", model(t), "--prompt", prompt(t, d), "--continuation", "x", "--kv-dtype", "fp16"}
		}, code: 1, want: `--kv-dtype "fp16": use auto, f32, f16 or bf16`, check: oneLine},
		{name: "jobs unknown kv dtype", prep: jobsRun(`{"context":"a","query":"b"}`, "--kv-dtype", "int8"), code: 1, want: `--kv-dtype "int8": use auto, f32, f16 or bf16`,
			check: func(t *testing.T, d *faultDir, stdout, stderr string) {
				oneLine(t, d, stdout, stderr)
				noOutput(t, d, stdout, stderr)
			}},
		{name: "bench unknown kv dtype in a list", prep: cmd("bench", "--kv-dtype", "f32,q8_0"), code: 1, want: `--kv-dtype "q8_0": use auto, f32, f16 and/or bf16, comma-separated`, check: oneLine},
		{name: "bench empty kv dtype", prep: cmd("bench", "--kv-dtype", ""), code: 1, want: `--kv-dtype "": use auto`, check: oneLine},
		{name: "bench --context with --decode-context", prep: cmd("bench", "--context", "64", "--decode-context", "64"), code: 1, want: "not both", check: oneLine},
		{name: "bench zero decode context", prep: cmd("bench", "--decode-context", "0"), code: 1, want: `--decode-context: "0" is not a positive number`, check: oneLine},
		{name: "inspect unknown kv dtype", prep: cmd("inspect", "--kv-dtype", "f8"), code: 1, want: `--kv-dtype "f8": use auto, f32, f16 or bf16`, check: oneLine},
		{name: "eval ppl unknown kv dtype", prep: cmd("eval", "ppl", "--file", "examples/stories.txt", "--kv-dtype", "f8"), code: 1, want: `--kv-dtype "f8": use auto, f32, f16 or bf16`, check: oneLine},

		// 16: prompts that cannot fit the context, refused before tokenizing
		{name: "5 MB prompt for a 512-token model", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", model(t), "--prompt", d.keep(t, d.write(t, "big.txt", textOf(5_000_000)))}
		}, code: 1, want: "the prompt file", check: func(t *testing.T, d *faultDir, stdout, stderr string) {
			if !strings.Contains(stderr, "is 5000000 bytes") || !strings.Contains(stderr, "context length 512") {
				t.Fatalf("message does not give the size and the context length: %s", stderr)
			}
		}},
		{name: "prompt one byte over the bound", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", model(t), "--prompt", d.keep(t, d.write(t, "p.txt", textOf(maxPrompt(t)+1)))}
		}, code: 1, want: "shorten it to at most"},
		{name: "prompt at the bound is tokenized", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", model(t), "--prompt", d.keep(t, d.write(t, "p.txt", textOf(maxPrompt(t))))}
		}, code: 1, want: "tokens) = ", check: func(t *testing.T, d *faultDir, stdout, stderr string) {
			if strings.Contains(stderr, "bytes per token") {
				t.Fatalf("refused by the byte bound, not by its tokens: %s", stderr)
			}
		}},
		{name: "query file too long", prep: func(t *testing.T, d *faultDir) []string {
			return run("--query-file", d.keep(t, d.write(t, "q.txt", textOf(1_000_000))))(t, d)
		}, code: 1, want: "the query file"},
		{name: "prompt and query too long together", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", model(t), "--prompt", d.keep(t, d.write(t, "p.txt", textOf(maxPrompt(t)-10))), "--query", textOf(20)}
		}, code: 1, want: "the prompt and query is"},
		{name: "continuation too long", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"score", "--model", model(t), "--prompt", prompt(t, d), "--continuation-file", d.keep(t, d.write(t, "c.txt", textOf(2_000_000)))}
		}, code: 1, want: "the continuation file"},
		{name: "continuation text too long", prep: func(t *testing.T, d *faultDir) []string {
			return []string{"score", "--model", model(t), "--prompt", prompt(t, d), "--continuation", textOf(100_000)}
		}, code: 1, want: "the continuation is 100000 bytes"},
		{name: "batch document too long", prep: jobsRun(`{"id":"big","context":"` + textOf(200_000) + `","query":"The"}`),
			code: 2, check: resultError("the document is 200000 bytes")},

		// the same refusals in a distributed run: one message, every rank ends
		{name: "temperature NaN on 2 ranks", np: 2, prep: run("--temperature", "NaN"), code: 1, want: "--temperature NaN"},
		{name: "5 MB prompt on 2 ranks", np: 2, prep: func(t *testing.T, d *faultDir) []string {
			return []string{"--model", model(t), "--prompt", d.keep(t, d.write(t, "big.txt", textOf(5_000_000)))}
		}, code: 1, want: "is 5000000 bytes"},
		{name: "overlapping GGUF on 2 ranks", np: 2, prep: func(t *testing.T, d *faultDir) []string {
			b := faultGGUF(t)
			b = setGGUFOffset(t, b, "blk.0.attn_q.weight", ggufOffset(t, b, "blk.0.attn_k.weight"))
			return []string{"--model", d.keep(t, d.write(t, "m.gguf", string(b))), "--tokenizer", sh(t, "models/stories260K/tok512.bin"), "--prompt", prompt(t, d)}
		}, code: 1, want: "overlap"},
	})
}

func nan() float64  { return zero() / zero() }
func inf() float64  { return 1 / zero() }
func zero() float64 { return 0 }

// faultModel is a small random model (vocabulary 512, so tok512 fits it).
func faultModel() *weights.Model {
	return weightstest.RandomModel(weights.Config{Dim: 64, HiddenDim: 172, NLayers: 2, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512,
		NormEps: 1e-5, RopeTheta: 10000}, 3)
}

// faultGGUF encodes faultModel (F32) with extra tensors.
func faultGGUF(t *testing.T, extra ...weightstest.GGUFTensor) []byte {
	t.Helper()
	kv, ts, err := weightstest.GGUFContent(faultModel(), weights.F32)
	if err != nil {
		t.Fatal(err)
	}
	b, err := weightstest.EncodeGGUF(kv, append(ts, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ggufOffsetAt is where name's data offset lies in the tensor table.
func ggufOffsetAt(t *testing.T, b []byte, name string) int {
	t.Helper()
	key := append(binary.LittleEndian.AppendUint64(nil, uint64(len(name))), name...)
	i := bytes.Index(b, key)
	if i < 0 {
		t.Fatalf("tensor %s not in the table", name)
	}
	at := i + len(key) // n_dims, dims, type, offset
	return at + 4 + 8*int(binary.LittleEndian.Uint32(b[at:])) + 4
}

func ggufOffset(t *testing.T, b []byte, name string) uint64 {
	return binary.LittleEndian.Uint64(b[ggufOffsetAt(t, b, name):])
}

func setGGUFOffset(t *testing.T, b []byte, name string, off uint64) []byte {
	b = append([]byte(nil), b...)
	binary.LittleEndian.PutUint64(b[ggufOffsetAt(t, b, name):], off)
	return b
}

// writeST writes a safetensors file from a header and the data after it.
func writeST(t *testing.T, path string, header, data []byte) {
	t.Helper()
	for len(header)%8 != 0 {
		header = append(header, ' ')
	}
	out := append(binary.LittleEndian.AppendUint64(nil, uint64(len(header))), header...)
	if err := os.WriteFile(path, append(out, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteSTHeader edits the header of the safetensors file at path.
func rewriteSTHeader(t *testing.T, path string, edit func(map[string]json.RawMessage)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var h map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	hb, _ := json.Marshal(h)
	writeST(t, path, hb, b[8+n:])
}

// sparseHF is a Hugging Face folder whose one safetensors file holds
// about 3 TiB of BF16 weights, as a sparse file (nothing on disk): a real
// model no machine here holds in memory. Star must refuse it before the
// weights are paged in.
func sparseHF(t *testing.T, d *faultDir) []string {
	dir := d.path("big")
	os.Mkdir(dir, 0o755)
	const dim, hidden, layers, heads, kvHeads, vocab = 16384, 53248, 512, 128, 8, 32000
	hd := dim / heads
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_size": dim,
		"intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
		"rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "vocab_size": vocab, "tie_word_embeddings": true}
	cb, _ := json.Marshal(cfg)
	d.keep(t, d.write(t, "big/config.json", string(cb)))
	var hdr bytes.Buffer
	off := int64(0)
	add := func(name string, shape ...int) {
		n := int64(2)
		for _, s := range shape {
			n *= int64(s)
		}
		sb, _ := json.Marshal(shape)
		if hdr.Len() == 0 {
			hdr.WriteByte('{')
		} else {
			hdr.WriteByte(',')
		}
		fmt.Fprintf(&hdr, `%q:{"dtype":"BF16","shape":%s,"data_offsets":[%d,%d]}`, name, sb, off, off+n)
		off += n
	}
	add("model.embed_tokens.weight", vocab, dim)
	add("model.norm.weight", dim)
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", dim)
		add(p+"self_attn.q_proj.weight", heads*hd, dim)
		add(p+"self_attn.k_proj.weight", kvHeads*hd, dim)
		add(p+"self_attn.v_proj.weight", kvHeads*hd, dim)
		add(p+"self_attn.o_proj.weight", dim, heads*hd)
		add(p+"post_attention_layernorm.weight", dim)
		add(p+"mlp.gate_proj.weight", hidden, dim)
		add(p+"mlp.down_proj.weight", dim, hidden)
		add(p+"mlp.up_proj.weight", hidden, dim)
	}
	hdr.WriteByte('}')
	h := hdr.Bytes()
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	p := filepath.Join(dir, "model.safetensors")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(h))))
	f.Write(h)
	if err := f.Truncate(8 + int64(len(h)) + off); err != nil {
		t.Skipf("cannot make a %d-byte sparse file here: %v", off, err)
	}
	return []string{"--model", dir, "--tokenizer", shared.Path(t, "models/stories260K/tok512.bin"), "--prompt", d.write(t, "p.txt", "Once upon a time")}
}
