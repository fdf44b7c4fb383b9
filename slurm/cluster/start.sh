#!/usr/bin/env bash
# start.sh: a one-node Slurm cluster on localhost, for testing the sbatch
# scripts that `star slurm script` writes. Run as root on a fresh Debian 12
# machine (Slurm 22.05 from Debian, munge, OpenMPI 4.1 already installed or
# installed here). Undo with stop.sh.
#
#   bash slurm/cluster/start.sh        # ~15 s once the packages are there
#   sbatch -n 4 --wrap 'srun hostname'
#   bash slurm/cluster/stop.sh
#
# Environment:
#   STAR_SLURM_DIR   state, spool, logs, pid files (default /tmp/star-slurm;
#                    wiped on every start)
#   STAR_SLURM_CPUS  CPUs the node claims (default 8; more than the machine
#                    has, allowed by SlurmdParameters=config_overrides, so
#                    that 4 and 8-task jobs fit on a 2-core machine)
#
# The configuration goes to /etc/slurm/slurm.conf, where every Slurm command
# looks by default, so no SLURM_CONF is needed. A slurm.conf that this
# script did not write is left alone (the script stops) unless
# STAR_SLURM_FORCE=1.
#
# Every wait is bounded: the script fails (non-zero, with the daemon logs'
# tails) rather than hang.
set -euo pipefail

DIR=${STAR_SLURM_DIR:-/tmp/star-slurm}
CPUS=${STAR_SLURM_CPUS:-8}
CONF=/etc/slurm/slurm.conf
MARK="# written by star slurm/cluster/start.sh"
HOST=$(hostname -s)
t0=$(date +%s)

say() { echo "start.sh: $*" >&2; }
die() {
	say "error: $*"
	for f in "$DIR"/slurmctld.log "$DIR"/slurmd.log; do
		[ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (the daemons run as root here)"

# --- packages --------------------------------------------------------------
# slurm-wlm pulls slurmctld, slurmd and the clients; slurm-wlm-basic-plugins
# holds the plugins, among them mpi_pmix.so / mpi_pmix_v4.so (linked to
# Debian's libpmix2 4.2), which `srun --mpi=pmix` loads.
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] || need+=(slurm-wlm-basic-plugins)
# pgrep: the scripts' mpirun launcher finds the ranks with it.
command -v pgrep >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
	apt_log=${TMPDIR:-/tmp}/star-slurm-apt.log
	say "installing ${need[*]} (apt log: $apt_log)"
	export DEBIAN_FRONTEND=noninteractive
	timeout 300 apt-get update >"$apt_log" 2>&1 || say "apt-get update failed; trying the install anyway"
	timeout 900 apt-get install -y --no-install-recommends "${need[@]}" >>"$apt_log" 2>&1 ||
		die "apt-get install ${need[*]} failed; see $apt_log"
	say "installed in $(($(date +%s) - t0)) s"
fi

# --- a previous run --------------------------------------------------------
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ "${STAR_SLURM_FORCE:-0}" != 1 ]; then
	die "$CONF exists and was not written by this script; set STAR_SLURM_FORCE=1 to replace it"
fi
munge_ours=0
if [ -d "$DIR" ]; then
	# Daemons of an earlier start would hold the ports; stop them first.
	# munged stays up, and stays ours to stop if an earlier start began it.
	[ -e "$DIR/munged.ours" ] && munge_ours=1
	STAR_SLURM_DIR=$DIR bash "$(dirname "$0")/stop.sh" --keep-munge >/dev/null 2>&1 || true
	rm -rf "$DIR"
fi
mkdir -p "$DIR"/state "$DIR"/spool
chmod 755 "$DIR"
[ "$munge_ours" = 1 ] && touch "$DIR/munged.ours"

# --- munge -----------------------------------------------------------------
# The Debian package creates /etc/munge/munge.key on install; make one if it
# is missing. munged refuses to run as root, so it runs as user munge.
if [ ! -s /etc/munge/munge.key ]; then
	mungekey --create --keyfile /etc/munge/munge.key
	chown munge:munge /etc/munge/munge.key
	chmod 0400 /etc/munge/munge.key
fi
if ! timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
	install -d -o munge -g munge -m 0755 /run/munge
	install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
	timeout 20 runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
	touch "$DIR"/munged.ours # stop.sh stops munged only if we started it
	timeout 10 bash -c 'until munge -n | unmunge >/dev/null 2>&1; do sleep 0.2; done' ||
		die "munge does not answer"
fi

# --- slurm.conf ------------------------------------------------------------
# MpiDefault: pmix when the plugin is there (srun --mpi=pmix works without
# the flag too), else none.
mpi=none
[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] && mpi=pmix
mkdir -p /etc/slurm
cat >"$CONF" <<EOF
$MARK at $(date -u +%FT%TZ); stop.sh leaves it, the next start.sh rewrites it.
# A one-node test cluster: every daemon runs as root, no accounting storage,
# no cgroups (proctrack/linuxproc + task/none work in containers).
ClusterName=star
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start
# again (default 120 s); 30 s keeps the requeue test short.
AuthInfo=cred_expire=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start jobs whose begin time has passed (a requeued job) within seconds,
# not at the next periodic pass (60 s by default; backfill 30 s).
SchedulerParameters=sched_interval=5,bf_interval=5
MpiDefault=$mpi
# Batch jobs may be requeued unless submitted with --no-requeue (the
# default, said here because star's scripts requeue themselves).
JobRequeue=1
ReturnToService=2
# Trust the CPU count below over what slurmd detects: 4- and 8-task jobs on
# a 2-core machine.
SlurmdParameters=config_overrides
# Seconds between SIGTERM and SIGKILL at the time limit or scancel.
KillWait=30
InactiveLimit=0
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

# --- daemons ---------------------------------------------------------------
# Both daemonize and write their pid files; -c starts slurmctld with a clean
# state (no jobs from an earlier run).
timeout 30 slurmctld -c || die "slurmctld did not start"
timeout 30 bash -c "until scontrol ping 2>/dev/null | grep -q UP; do sleep 0.5; done" ||
	die "slurmctld does not answer scontrol ping within 30 s"
timeout 30 slurmd || die "slurmd did not start"
# Wait for the node to register and become idle (max 60 s).
if ! timeout 60 bash -c "until sinfo -h -n '$HOST' -o %t 2>/dev/null | grep -qx idle; do sleep 0.5; done"; then
	sinfo -N -l >&2 || true
	die "node $HOST did not become idle within 60 s"
fi
say "cluster up in $(($(date +%s) - t0)) s: node $HOST, $CPUS CPUs, partition debug, MpiDefault=$mpi, logs in $DIR"
sinfo
