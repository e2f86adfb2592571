"""`python -m elr_mri.simulate`: the same as `elr-mri simulate-cohort`."""

import sys

from elr_mri.simulate.cli import main

sys.exit(main())
