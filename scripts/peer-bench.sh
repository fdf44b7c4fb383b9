#!/usr/bin/env bash
# Measures star against llama.cpp and ik_llama.cpp on the same GGUF files,
# interleaved (peer, peer, star per repetition) so that the machine's noise
# falls on all three alike, and prints one line per program, file and
# repetition: prefill tokens/s at 512 tokens and decode tokens/s.
#
#   LLAMA_CPP=/path/llama.cpp/build IK_LLAMA_CPP=/path/ik_llama.cpp/build \
#     bash scripts/peer-bench.sh [--reps 3] [--threads 2] FILE.gguf...
#
# The peers are built from their public repositories (cmake -DGGML_NATIVE=ON,
# target llama-bench); either may be left unset. The files: scripts/mkgguf
# (random weights with a real tokenizer) and llama.cpp's llama-quantize.
# star runs `star bench --attention global --context 512` (prefill = 512 /
# phase1_s; decode after the 512-token context, 32 steps; decode_bound_tok_s
# is the time to read the bytes one decode step reads at the rates measured
# in the same run: the weights' own pages (weights_bw_gbs, just before and
# after the decode) and a fresh buffer's (membw_gbs, for the K/V));
# llama-bench runs pp512 and tg32.
set -euo pipefail
reps=3 threads=2
while [[ $# -gt 0 ]]; do
	case $1 in
	--reps) reps=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) break ;;
	esac
done
[[ $# -gt 0 ]] || { echo "usage: $0 [--reps N] [--threads T] FILE.gguf..." >&2; exit 1; }
star=${STAR:-$(dirname "$0")/../bin/star}
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "# cpu: $cpu; threads $threads; $(date -u +%FT%TZ)"
echo "# program file rep prefill512_tok_s decode_tok_s [star: kernel weight_dtype decode_bound_tok_s weights_bw_gbs membw_gbs]"
peer() { # name builddir file rep
	local out
	out=$(LD_LIBRARY_PATH=$2/bin timeout 900 "$2/bin/llama-bench" -m "$3" -t "$threads" -p 512 -n 32 -r 1 -o json 2>/dev/null) || { echo "$1 $(basename "$3") $4 failed"; return; }
	echo "$out" | python3 -c '
import json, sys
rows = json.load(sys.stdin)
pp = [r["avg_ts"] for r in rows if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0]
tg = [r["avg_ts"] for r in rows if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0]
print(sys.argv[1], sys.argv[2], sys.argv[3], "%.1f" % pp[0], "%.2f" % tg[0])' "$1" "$(basename "$3")" "$4"
}
for rep in $(seq 1 "$reps"); do
	for f in "$@"; do
		[[ -n ${LLAMA_CPP:-} ]] && peer llama.cpp "$LLAMA_CPP" "$f" "$rep"
		[[ -n ${IK_LLAMA_CPP:-} ]] && peer ik_llama.cpp "$IK_LLAMA_CPP" "$f" "$rep"
		timeout 900 "$star" bench --model "$f" --threads "$threads" --attention global --context 512 \
			--query-tokens 1 --decode-tokens 32 --score-tokens 0 --json 2>/dev/null | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
print("star", sys.argv[1], sys.argv[2], "%.1f" % (r["context"] / r["phase1_s"]), "%.2f" % r["decode_tok_s"],
      r["kernel"], r["weight_dtype"].replace(" ", "_"), "%.2f" % r["decode_bound_tok_s"],
      "%.1f" % r.get("weights_bw_gbs", 0), "%.1f" % r["membw_gbs"])' "$(basename "$f")" "$rep" || echo "star $(basename "$f") $rep failed"
	done
done
