# Job launchers of this recipe: train_cmd, decode_cmd, cuda_cmd (local by default; EMOTK_BACKEND=slurm
# submits Slurm array jobs). See local/cmd.sh; override a launcher below for your site, Kaldi style, e.g.
#   export train_cmd="$EMOTK_ROOT/local/slurm.sh --mem 4G"
. "$EMOTK_ROOT/local/cmd.sh"
