#!/usr/bin/env bash
# Measures the three phase-2 merge modes (gather, allgather, allreduce) at
# 2, 4 and 8 ranks on the shared tiny model: median over REPS runs of the
# phase-2 time per token step, and the bytes each rank sends per step.
# Usage: scripts/merge-bench.sh [REPS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
reps=${1:-5}; maxtok=${2:-200}
[ -x bin/star ] || go build -o bin/star .
prompt=$(mktemp); trap 'rm -f "$prompt"' EXIT
for i in 1 2 3 4 5 6; do cat examples/story.txt; done | sed 's/^Lily said to the cat,$//' > "$prompt"
printf '\n\nLily said to the cat,' >> "$prompt"
printf '%-6s %-10s %-16s %-18s %s\n' ranks merge phase2_ms/step rank0_bytes/step other_bytes/step
for np in 2 4 8; do
  for mode in gather allgather allreduce; do
    vals=()
    for r in $(seq "$reps"); do
      out=$(timeout 120 mpirun -np "$np" bin/star --prompt "$prompt" --max-tokens "$maxtok" --threads 1 \
            --merge "$mode" --json 2>/dev/null)
      vals+=("$(python3 -c '
import json,sys
r=json.loads(sys.stdin.read()); s=r["ranks"]
st=max(x["phase2_tokens"] for x in s)
print("%.4f %d %d" % (max(x["phase2_s"] for x in s)/st*1000, s[0]["phase2_bytes_sent"]//st, s[1]["phase2_bytes_sent"]//st))' <<<"$out")")
    done
    printf '%s\n' "${vals[@]}" | sort -n | awk -v np="$np" -v m="$mode" '{a[NR]=$0} END {split(a[int((NR+1)/2)],x," "); printf "%-6s %-10s %-16.3f %-18d %d\n", np, m, x[1], x[2], x[3]}'
  done
done
