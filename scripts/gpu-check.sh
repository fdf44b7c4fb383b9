#!/usr/bin/env bash
# The one device check of the GPU path, run on a GPU machine from the
# repository root as a single command, well under 10 minutes:
#   bash scripts/gpu-check.sh OUTDIR
# with bin/gpu built here by scripts/gpu-build.sh and carried there. It
# writes report.txt (everything below, with a summary at its end) and the
# JSON of each run into OUTDIR:
#   1. what it found: GPU, driver, the libraries star loads and from where;
#   2. the kernel and backend conformance tests (layers/cuda, nccl) on the
#      GPU, against the CPU: kernels, the seam's Star scenario for every
#      weight and K/V dtype, the device footprint, two ranks sharing the
#      GPU, cuBLASLt, and a 1-rank NCCL all-gather through the hand-written
#      declarations;
#   3. star on the tiny model, --device cuda against --device cpu (same
#      greedy tokens, logprobs within 1e-2), for star, ring and global
#      attention; two ranks on the one GPU under mpirun when OpenMPI is
#      there;
#   4. star bench: dummy Llama-3.2-1B BF16 on GPU and CPU (NLL within
#      1e-2), then phase 1 of dummy Llama-3.1-8B BF16 at CONTEXT tokens
#      (default 32768) with its linear and attention TFLOP/s and MFU;
#   5. inspect: 8B at 128k context in Star blocks on one GPU.
# STAR_GPU_CHECK_SKIP_BENCH=1 leaves out step 4's 8B run, =all all of
# step 4. With STAR_CUDA_LIBDIR set it runs on the libraries there (a dry
# run here on nccl/standin's stand-in), else on NVIDIA's (STAR_CUDA_REAL).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
mkdir -p "$out"
rep="$out/report.txt"
: >"$rep"
bin=bin/gpu
ctx=${CONTEXT:-32768}
declare -a summary
say() { echo "$*" | tee -a "$rep"; }
step() { say ""; say "== $*"; }
result() { summary+=("$1: $2"); say "-- $1: $2"; }
# run NAME LIMIT CMD...: runs CMD under timeout, output into the report
run() {
	local name=$1 limit=$2
	shift 2
	local t0=$(date +%s%N)
	timeout -k 5 "$limit" "$@" >>"$rep" 2>&1
	local rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000))
	local el="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
	if [ $rc -eq 0 ]; then result "$name" "ok (${el}s)"; else result "$name" "FAILED rc=$rc (${el}s)"; fi
	return $rc
}

step "1. machine"
[ -x "$bin/star" ] || { say "no $bin/star: run scripts/gpu-build.sh where Go is and carry bin/gpu"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >>"$rep" 2>&1 || say "nvidia-smi failed"
uname -a >>"$rep"; nproc >>"$rep"
if [ -n "${STAR_CUDA_LIBDIR:-}" ]; then
	say "STAR_CUDA_LIBDIR=$STAR_CUDA_LIBDIR: a dry run on those libraries"
else
	export STAR_CUDA_REAL=1
fi
run "inspect --device cuda (device found, libraries)" 60 "$bin/star" inspect --load-format dummy --model-config configs/llama-3.2-1b.json --dtype bf16 --context 4096 --device cuda

step "2. conformance on the GPU"
cd nccl
run "nccl tests (driver, NVRTC, cuBLASLt, 1-rank NCCL all-gather)" 120 "../$bin/nccl.test" -test.v -test.count=1
cd ../layers/cuda
run "layers/cuda tests (kernels vs CPU, Backend conformance, footprint, ranks sharing the GPU)" 240 "../../$bin/cuda.test" -test.v -test.count=1
cd ../..

step "3. star on the tiny model: --device cuda against --device cpu"
m="$bin/models"
if [ -f "$m/stories260K.bin" ]; then
	printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball. One day, she saw a cat sitting under a tree. The cat was sad because it was lost. Lily wanted to help the cat find its home.\n\nLily said to the cat,' >"$out/prompt.txt"
	for att in star ring global; do
		extra=()
		[ $att = star ] && extra=(--block-size 24 --anchor-size 12)
		for dev in cpu cuda; do
			run "tiny $att --device $dev" 60 sh -c "$bin/star --model $m/stories260K.bin --tokenizer $m/tok512.bin --prompt $out/prompt.txt --max-tokens 32 --json --attention $att ${extra[*]} --device $dev >$out/tiny-$att-$dev.json"
		done
		python3 - "$out/tiny-$att-cpu.json" "$out/tiny-$att-cuda.json" >>"$rep" 2>&1 <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d = max((abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"])), default=0)
ok = a["tokens"] == b["tokens"] and d <= 1e-2
print(("OK" if ok else "MISMATCH"), "tokens equal:", a["tokens"] == b["tokens"], "max logprob diff %.3g" % d, "|", b["text"][:60])
sys.exit(0 if ok else 1)
PY
		[ $? -eq 0 ] && result "tiny $att: cuda = cpu" ok || result "tiny $att: cuda = cpu" FAILED
	done
	if command -v mpirun >/dev/null && ldd "$bin/star-mpi" >/dev/null 2>&1 && ! ldd "$bin/star-mpi" | grep -q "not found"; then
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
		run "tiny star, 2 ranks on one GPU (mpirun)" 120 sh -c "mpirun -np 2 -x STAR_CUDA_REAL $bin/star-mpi --model $m/stories260K.bin --tokenizer $m/tok512.bin --prompt $out/prompt.txt --max-tokens 32 --json --block-size 24 --anchor-size 12 --device cuda >$out/tiny-star-mpi2.json"
		python3 -c "import json,sys; a=json.load(open('$out/tiny-star-cpu.json')); b=json.load(open('$out/tiny-star-mpi2.json')); print('2 ranks on one GPU: tokens equal', a['tokens']==b['tokens'], 'max diff %.3g' % max(abs(x-y) for x,y in zip(a['logprobs'],b['logprobs']))); sys.exit(0 if a['tokens']==b['tokens'] else 1)" >>"$rep" 2>&1 && result "2 ranks on one GPU = cpu" ok || result "2 ranks on one GPU = cpu" FAILED
	else
		result "2 ranks on one GPU (mpirun)" "skipped: no OpenMPI here (layers/cuda's TestRanksShareDevice ran two ranks in one process)"
	fi
else
	result "tiny model" "skipped: $m/stories260K.bin not carried"
fi

step "4. bench"
[ "${STAR_GPU_CHECK_SKIP_BENCH:-}" = all ] && result bench "skipped (STAR_GPU_CHECK_SKIP_BENCH=all)"
[ "${STAR_GPU_CHECK_SKIP_BENCH:-}" = all ] || for dev in cpu cuda; do
	run "1B BF16 dummy bench --device $dev" 180 sh -c "$bin/star bench --load-format dummy --model-config configs/llama-3.2-1b.json --dtype bf16 --context 256 --attention global --query-tokens 8 --decode-tokens 4 --score-tokens 16 --kv-dtype f32 --device $dev --json >$out/bench-1b-$dev.json"
done
if [ "${STAR_GPU_CHECK_SKIP_BENCH:-}" != all ]; then
	python3 - "$out/bench-1b-cpu.json" "$out/bench-1b-cuda.json" >>"$rep" 2>&1 <<'PY'
import json, sys
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
r = abs(a["nll"] - b["nll"]) / max(1, abs(a["nll"]))
print("1B dummy BF16: nll cpu %.5f cuda %.5f (relative %.2g)" % (a["nll"], b["nll"], r))
sys.exit(0 if r <= 1e-2 else 1)
PY
	[ $? -eq 0 ] && result "1B dummy: cuda nll = cpu nll within 1e-2" ok || result "1B dummy: cuda nll = cpu nll within 1e-2" FAILED
fi
if [ -z "${STAR_GPU_CHECK_SKIP_BENCH:-}" ]; then
	run "8B BF16 dummy, phase 1 at $ctx on the GPU" 300 sh -c "$bin/star bench --load-format dummy --model-config configs/llama-3.1-8b.json --dtype bf16 --context $ctx --attention star --query-tokens 16 --decode-tokens 8 --score-tokens 0 --device cuda --json >$out/bench-8b.json"
	python3 -c "
import json
for l in open('$out/bench-8b.json'):
    r = json.loads(l)
    print('8B BF16 at %d: phase 1 %.2f s, linear %.1f TFLOP/s (MFU %.1f%% of %.0f), attention %.1f TFLOP/s, decode %.1f tok/s, %s' % (r['context'], r['phase1_s'], r['linear_gflops']/1000, 100*r.get('mfu',0), r.get('peak_tflops',0), r['attention_gflops']/1000, r['decode_tok_s'], r['device']))
" >>"$rep" 2>&1
fi

step "5. 8B at 128k in Star blocks on one GPU: does it fit?"
run "inspect 8B 128k blocks of 16k, 1 rank, --device cuda" 60 "$bin/star" inspect --load-format dummy --model-config configs/llama-3.1-8b.json --dtype bf16 --context 131072 --block-size 16384 --ranks 1 --device cuda

step "summary"
for s in "${summary[@]}"; do say "$s"; done
