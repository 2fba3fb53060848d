# Job launchers (Kaldi's cmd.sh). "local/run_local.sh [JOB=1:N] LOG command..." runs on
# this machine; point train_cmd at a cluster launcher to move the whole recipe there.
export train_cmd="$EMOTK_ROOT/local/run_local.sh"
