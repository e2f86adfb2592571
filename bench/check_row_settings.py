"""Exit with one line, in about a second, if `elr-mri train` would refuse a config with these `--set` settings.

Why: bench/gpu_checks.sh trains its CIFAR rows in a device call of fixed and scarce time. A typo in the settings it
is given (ROW_SETTINGS) would otherwise surface only after the machine's start and the 60,000 images' decoding, fail
the row and then its fallback, and the session's main figure with them. It checks before anything else runs:
    python bench/check_row_settings.py --config configs/cifar10/elr_sym40.yaml --set train.compile_step=true
"""

from __future__ import annotations

import argparse
import sys

from elr_mri.config import ConfigError, check_new_run_settings, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/check_row_settings.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the row's YAML config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting as `elr-mri train --set` takes it; repeated for more")
    args = parser.parse_args(argv)
    try:
        check_new_run_settings(load_config(args.config, args.overrides).data)  # a new run's start refuses more
    except ConfigError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
