#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (munged, slurmctld, slurmd), without systemd,
# everything under one directory.  For CI and trying the slurm backend; needs root.
#
#   SLURM_DIR=/tmp/emotk-slurm bash local/slurm_up.sh      # prints the SLURM_CONF to export
#   export SLURM_CONF=/tmp/emotk-slurm/etc/slurm.conf EMOTK_BACKEND=slurm
#   ...
#   SLURM_DIR=/tmp/emotk-slurm bash local/slurm_down.sh    # stops what this script started
#
# Environment: SLURM_DIR (default ${TMPDIR:-/tmp}/emotk-slurm), SLURMCTLD_PORT / SLURMD_PORT
# (default 6817 / 6818; give free ports to run beside another cluster), SLURM_WAIT_S (default 60).
# Installs the Debian packages when missing (apt-get, as root); exit code 3 when that is impossible.
# Idempotent: daemons whose pid file names a live process are left running.
set -euo pipefail

SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/emotk-slurm}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
WAIT_S=${SLURM_WAIT_S:-60}
export SLURM_CONF="$SLURM_DIR/etc/slurm.conf"
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "slurm_up.sh: $*" >&2; exit "${2:-1}"; }

# --- packages (Debian 12: slurm-wlm 22.05, munge 0.5) ------------------------------------------
missing=false
for c in slurmctld slurmd sbatch squeue munged mungekey; do command -v $c >/dev/null || missing=true; done
if $missing; then
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and this is not root: cannot apt-get install $PACKAGES" 3
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install $PACKAGES" 3
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES; } \
       >"${TMPDIR:-/tmp}/emotk-slurm-apt.log" 2>&1; then
    die "apt-get install $PACKAGES failed: $(tail -n 1 "${TMPDIR:-/tmp}/emotk-slurm-apt.log")" 3
  fi
fi

mkdir -p "$SLURM_DIR"/{etc,munge,state,spool,log,run}
chmod 0755 "$SLURM_DIR" "$SLURM_DIR/munge"   # munged refuses group/other-writable directories

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- munge: own key and socket, nothing in /etc or /run ----------------------------------------
MUNGE_SOCK="$SLURM_DIR/munge/munge.socket.2"
[ -s "$SLURM_DIR/munge/munge.key" ] || mungekey -c -k "$SLURM_DIR/munge/munge.key"
chmod 0600 "$SLURM_DIR/munge/munge.key"
if ! alive "$SLURM_DIR/run/munged.pid"; then
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  # munged daemonizes and writes its own pid file; --force lets it run as root
  munged --force --socket="$MUNGE_SOCK" --key-file="$SLURM_DIR/munge/munge.key" \
         --pid-file="$SLURM_DIR/run/munged.pid" --log-file="$SLURM_DIR/log/munged.log" \
         --seed-file="$SLURM_DIR/munge/munged.seed"
fi
for _ in $(seq 50); do [ -S "$MUNGE_SOCK" ] && break; sleep 0.1; done
munge -n --socket="$MUNGE_SOCK" | unmunge --socket="$MUNGE_SOCK" >/dev/null || die "munged does not answer on $MUNGE_SOCK"

# --- slurm.conf ---------------------------------------------------------------------------------
HOST=$(hostname -s)   # slurmctld only starts when SlurmctldHost is this machine's short name
HW=$(slurmd -C | head -n 1)
NODE_HW=$(echo "$HW" | sed -e 's/^NodeName=[^ ]* //' -e 's/RealMemory=[0-9]*//' -e 's/UpTime=.*//')
MEM=$(( $(echo "$HW" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10 ))
cat > "$SLURM_CONF.tmp" <<EOF
# Written by emotk local/slurm_up.sh: a one-node cluster on $HOST.
ClusterName=emotk
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCK}
StateSaveLocation=${SLURM_DIR}/state
SlurmdSpoolDir=${SLURM_DIR}/spool
SlurmctldPidFile=${SLURM_DIR}/run/slurmctld.self.pid
SlurmdPidFile=${SLURM_DIR}/run/slurmd.self.pid
SlurmctldLogFile=${SLURM_DIR}/log/slurmctld.log
SlurmdLogFile=${SLURM_DIR}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# without this, array tasks start in waves about 3 s apart
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=600
NodeName=${HOST} NodeAddr=127.0.0.1 ${NODE_HW} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
mv "$SLURM_CONF.tmp" "$SLURM_CONF"

# --- daemons in the foreground (-D) under setsid, so their PIDs are ours to stop ----------------
if ! alive "$SLURM_DIR/run/slurmctld.pid"; then
  setsid slurmctld -D -i -f "$SLURM_CONF" >>"$SLURM_DIR/log/slurmctld.out" 2>&1 </dev/null &
  echo $! > "$SLURM_DIR/run/slurmctld.pid"
fi
for _ in $(seq $((WAIT_S * 5))); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
if ! alive "$SLURM_DIR/run/slurmd.pid"; then
  setsid slurmd -D -f "$SLURM_CONF" -N "$HOST" >>"$SLURM_DIR/log/slurmd.out" 2>&1 </dev/null &
  echo $! > "$SLURM_DIR/run/slurmd.pid"
fi

# --- wait until the node takes jobs ------------------------------------------------------------
st=""
for _ in $(seq $((WAIT_S * 5))); do
  st=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
  case "$st" in
    idle|mix|alloc) echo "slurm up: node $HOST $st; export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
    down*|drain*|drng*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.2
done
echo "slurm_up.sh: the node did not come up (state: ${st:-none}); logs in $SLURM_DIR/log:" >&2
tail -n 5 "$SLURM_DIR"/log/*.log "$SLURM_DIR"/log/*.out >&2 || true
exit 1
