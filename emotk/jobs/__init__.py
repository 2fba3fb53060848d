"""Job launchers with Kaldi's calling convention (``$cmd JOB=1:N log/x.JOB.log command ... JOB``).

Backends: :mod:`emotk.jobs.local` (processes on this machine) and :mod:`emotk.jobs.slurm`
(one Slurm array job); the shell entry points are ``local/run_local.sh`` and ``local/slurm.sh``.
"""
