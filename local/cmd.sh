# Job launchers (Kaldi's cmd.sh), sourced by every recipe's cmd.sh. A stage that splits work runs
#   $train_cmd [--mem 4G] [--num-threads N] [--max-jobs-run K] [--time T] JOB=1:N LOGDIR/name.JOB.log command ... JOB ...
# and a single job as "$train_cmd LOGFILE command ...". EMOTK_BACKEND chooses where they run:
#   local (default)  on this machine, at most K (default: the number of cores) at a time (local/run_local.sh)
#   slurm            as Slurm array jobs (local/slurm.sh); options map to sbatch's through conf/slurm.conf
# e.g.  EMOTK_BACKEND=slurm bash run.sh
# cuda_cmd asks for one GPU; steps/train_ddp.sh --cmd "$cuda_cmd" --nproc N asks it for N (--gpu N) and
# runs torchrun with N processes inside that one job (one Slurm job holding every GPU of the run).
# A recipe overrides a launcher in its own cmd.sh after sourcing this file (site-specific memory, partitions).
case "${EMOTK_BACKEND:-local}" in
  local)
    export train_cmd="$EMOTK_ROOT/local/run_local.sh"
    export decode_cmd="$EMOTK_ROOT/local/run_local.sh"
    export cuda_cmd="$EMOTK_ROOT/local/run_local.sh --gpu 1" ;;
  slurm)
    export train_cmd="$EMOTK_ROOT/local/slurm.sh --mem 2G"
    export decode_cmd="$EMOTK_ROOT/local/slurm.sh --mem 2G"
    export cuda_cmd="$EMOTK_ROOT/local/slurm.sh --mem 4G --gpu 1" ;;
  *) echo "cmd.sh: EMOTK_BACKEND must be local or slurm, not '$EMOTK_BACKEND'" >&2; exit 1 ;;
esac
