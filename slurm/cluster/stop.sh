#!/usr/bin/env bash
# stop.sh: stop the test cluster that start.sh started: slurmd, slurmctld
# (and munged, if start.sh started it), each by its pid file: SIGTERM, up to
# 15 s, then SIGKILL. Never hangs; never kills processes by name.
#
#   bash slurm/cluster/stop.sh [--keep-munge]
#
# Jobs still running are not drained: their steps die with slurmd (with
# proctrack/linuxproc, slurmstepd processes may outlive slurmd for up to
# KillWait; they are killed with the job's processes when slurmd stops
# them, or left to exit on their own).
set -uo pipefail

DIR=${STAR_SLURM_DIR:-/tmp/star-slurm}
keep_munge=0
[ "${1:-}" = --keep-munge ] && keep_munge=1

stop_pidfile() { # name pidfile
	local name=$1 f=$2 pid
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	case $pid in '' | *[!0-9]*) return 0 ;; esac
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$f"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	if ! timeout 15 bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.2; done"; then
		echo "stop.sh: $name ($pid) ignored SIGTERM for 15 s; SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null
		timeout 5 bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.2; done"
	fi
	rm -f "$f"
	echo "stop.sh: stopped $name ($pid)" >&2
}

stop_pidfile slurmd "$DIR/slurmd.pid"
stop_pidfile slurmctld "$DIR/slurmctld.pid"
if [ "$keep_munge" = 0 ] && [ -e "$DIR/munged.ours" ]; then
	stop_pidfile munged /run/munge/munged.pid
	rm -f "$DIR/munged.ours"
fi
exit 0
