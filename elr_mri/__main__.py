"""`python -m elr_mri ...`: the same as the `elr-mri` command, for environments without its script on PATH."""

import sys

from elr_mri.cli import main

sys.exit(main())
