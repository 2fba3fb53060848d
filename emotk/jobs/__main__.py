"""``python -m emotk.jobs {local|slurm} ...``: see :mod:`emotk.jobs.launcher`."""

import sys

from emotk.jobs.launcher import main

sys.exit(main())
