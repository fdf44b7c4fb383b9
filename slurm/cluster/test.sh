#!/usr/bin/env bash
# test.sh: start the one-node test cluster (start.sh), check on it what
# star's sbatch scripts rely on, stop it (stop.sh, also on failure).
# Root on Debian 12 with OpenMPI and Go (/usr/local/go/bin); about 2.5 min.
#
#   bash slurm/cluster/test.sh
#
# Checks:
#   1. sbatch -n 4 with srun: 4 tasks run
#   2. an MPI hello (built with mpicc) under srun --mpi=pmix and under
#      mpirun inside an allocation: 4 ranks each, an allreduce
#   3. bin/star on 4 ranks under both launchers, if bin/star and the shared
#      tiny model are there
#   4. scripts from slurm.Script (via slurm/cluster/gen) with --time=2 and
#      the warning 90 s before the end, srun and mpirun: a fake star gets
#      SIGTERM on every rank and exits 3, the job requeues itself, the rerun
#      (SLURM_RESTART_COUNT=1) finishes, the job ends COMPLETED
#   5. scancel of such a job cancels it: no requeue
# Every wait is bounded; the exit status is the number of failed checks.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/star-slurm-test.XXXXXX)
chmod 755 "$WORK"
export PATH=/usr/local/go/bin:$PATH
# OpenMPI refuses root without these; sbatch passes them on to the jobs.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)
fails=0

log() { echo "test.sh [$(($(date +%s) - t0)) s]: $*"; }
pass() { log "PASS $*"; }
fail() {
	log "FAIL $*"
	fails=$((fails + 1))
}
# wait_job ID SECONDS: until squeue no longer lists the job (pending,
# requeued and running jobs are listed; finished ones are not).
wait_job() {
	timeout "$2" bash -c "while [ -n \"\$(squeue -h -j $1 2>/dev/null)\" ]; do sleep 1; done" ||
		{
			log "job $1 still in the queue after $2 s; cancelling it"
			scancel "$1"
			return 1
		}
}
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

trap 'bash "$HERE/stop.sh" >/dev/null 2>&1' EXIT
bash "$HERE/start.sh" || exit 100
log "cluster up"

# --- 1. tasks ----------------------------------------------------------------
j1=$(sbatch --parsable -n 4 -o "$WORK/hostname.out" --wrap 'srun hostname')

# --- 2. MPI hello --------------------------------------------------------------
j2a="" j2b=""
if command -v mpicc >/dev/null; then
	cat >"$WORK/hello.c" <<'EOF'
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
	int r, n, s;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &r);
	MPI_Comm_size(MPI_COMM_WORLD, &n);
	MPI_Allreduce(&r, &s, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	printf("hello %d/%d sum=%d\n", r, n, s);
	MPI_Finalize();
	return 0;
}
EOF
	if mpicc -o "$WORK/hello" "$WORK/hello.c"; then
		j2a=$(sbatch --parsable -n 4 -o "$WORK/hello-srun.out" --wrap "timeout 60 srun --mpi=pmix $WORK/hello")
		j2b=$(sbatch --parsable -n 4 -o "$WORK/hello-mpirun.out" --wrap "timeout 60 mpirun -np \$SLURM_NTASKS $WORK/hello")
	else
		fail "mpicc could not build the MPI hello"
	fi
else
	log "SKIP MPI hello: no mpicc"
fi

wait_job "$j1" 60
n=$(grep -c . "$WORK/hostname.out" 2>/dev/null)
[ "$n" = 4 ] && pass "sbatch -n 4 + srun: 4 tasks" || fail "sbatch -n 4 + srun: $n lines: $(cat "$WORK/hostname.out" 2>&1)"
for x in "$j2a:srun --mpi=pmix:hello-srun" "$j2b:mpirun in the allocation:hello-mpirun"; do
	IFS=: read -r id what f <<<"$x"
	[ -n "$id" ] || continue
	wait_job "$id" 90
	n=$(grep -c '/4 sum=6$' "$WORK/$f.out" 2>/dev/null)
	[ "$n" = 4 ] && pass "MPI hello under $what: 4 ranks, allreduce" ||
		fail "MPI hello under $what: $(tail -n 5 "$WORK/$f.out" 2>&1)"
done

# --- 3. star itself ---------------------------------------------------------------
model=$ROOT/../shared/models/stories260K/stories260K.bin
if [ -x "$ROOT/bin/star" ] && [ -e "$model" ]; then
	args="--model $model --prompt $ROOT/examples/story.txt --block-size 16 --anchor-size 8 --max-tokens 8 --threads 1"
	j3a=$(sbatch --parsable -n 4 -o "$WORK/star-srun.out" --wrap "timeout 120 srun --mpi=pmix $ROOT/bin/star $args")
	j3b=$(sbatch --parsable -n 4 -o "$WORK/star-mpirun.out" --wrap "timeout 120 mpirun -np \$SLURM_NTASKS $ROOT/bin/star $args")
	for x in "$j3a:srun --mpi=pmix:star-srun" "$j3b:mpirun:star-mpirun"; do
		IFS=: read -r id what f <<<"$x"
		wait_job "$id" 150
		[ "$(job_field "$id" JobState)" = COMPLETED ] && [ -s "$WORK/$f.out" ] &&
			pass "bin/star on 4 ranks under $what" ||
			fail "bin/star under $what: $(job_field "$id" JobState): $(tail -n 5 "$WORK/$f.out" 2>&1)"
	done
else
	log "SKIP bin/star: no bin/star or no shared tiny model"
fi

# --- 4. warning, SIGTERM, requeue, resume -------------------------------------------------
go build -o "$WORK/gen" "$ROOT/slurm/cluster/gen" || {
	fail "go build slurm/cluster/gen"
	exit "$fails"
}
# fake star: the first run waits for SIGTERM, leaves term-RANK and exits 3
# (as star jobs run does); a requeued run leaves resumed-RANK and exits 0.
fake() { # DIR
	mkdir -p "$1"
	cat >"$1/star" <<'EOF'
#!/bin/bash
r=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}
d=$(dirname "$0")
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then touch "$d/resumed-$r"; exit 0; fi
trap 'touch "$d/term-$r"; exit 3' TERM
touch "$d/started-$r"
for i in $(seq 600); do sleep 1 & wait $!; done
exit 0
EOF
	chmod +x "$1/star"
}
declare -A j4
for l in srun mpirun; do
	d=$WORK/warn-$l
	fake "$d"
	"$WORK/gen" --launcher "$l" --ntasks-per-node 4 --time 2 --signal-before 90 --job-name "warn-$l" \
		--output "$d/log.txt" --star "$d/star" -- jobs run --model m --input in --output out >"$d/job.sbatch" ||
		fail "gen for $l"
	j4[$l]=$(cd "$d" && sbatch --parsable job.sbatch)
	log "submitted warn-$l as job ${j4[$l]} (--time=2, warning at 90 s before the end)"
done
for l in srun mpirun; do
	d=$WORK/warn-$l
	wait_job "${j4[$l]}" 240
	terms=$(find "$d" -maxdepth 1 -name 'term-*' | wc -l)
	resumed=$(find "$d" -maxdepth 1 -name 'resumed-*' | wc -l)
	state=$(job_field "${j4[$l]}" JobState) restarts=$(job_field "${j4[$l]}" Restarts)
	if [ "$terms" = 4 ] && [ "$resumed" = 4 ] && [ "$state" = COMPLETED ] && [ "$restarts" = 1 ]; then
		pass "$l: warning reached 4/4 ranks as SIGTERM, exit 3, requeued, resumed, COMPLETED"
	else
		fail "$l: SIGTERM on $terms/4 ranks, resumed $resumed/4, $state, restarts $restarts; log:"
		cat "$d/log.txt"
	fi
	grep -E 'SIGUSR1 at|exited with|requeueing|run 2' "$d/log.txt" | sed 's/^/    /'
done

# --- 5. scancel is not a warning: no requeue ----------------------------------------------
d=$WORK/cancel
fake "$d"
"$WORK/gen" --ntasks-per-node 4 --time 10 --output "$d/log.txt" --star "$d/star" -- jobs run >"$d/job.sbatch"
j5=$(cd "$d" && sbatch --parsable job.sbatch)
timeout 30 bash -c "until [ -e $d/started-0 ]; do sleep 0.5; done"
scancel "$j5"
wait_job "$j5" 60
state=$(job_field "$j5" JobState) restarts=$(job_field "$j5" Restarts)
[ "$state" = CANCELLED ] && [ "$restarts" = 0 ] && pass "scancel cancels (no requeue)" ||
	fail "scancel: $state, restarts $restarts"

log "done: $fails failed; files in $WORK"
exit "$fails"
