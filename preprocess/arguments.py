"""Command-line parsing that names a misspelt option, or a value typed without its option.

argparse checks required options before unknown ones, so `--confg x.yaml` reads as "--config is required"
and the typo that caused it goes unnamed; so does the file of `elr-mri train configs/x.yaml`. Shared by every
`elr-mri` command (preprocess's need no torch).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["near_option", "options_of", "parse_naming_unknown_options", "unknown_option", "values_without_option"]


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string the parser takes (`--config`, `-h`, ...)."""
    return [option for action in parser._actions for option in action.option_strings]


def unknown_option(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str] | None:
    """The first `--option` the parser does not have, with the value typed after it; None when all are known.

    An abbreviation argparse accepts (`--conf`) counts as known, and so does whatever follows `--set` or `--`, and a
    token with a space (argparse takes it as a value: `--run "--my run"`). With -h or --help: None, help comes first."""
    known = options_of(parser)
    if "-h" in args or "--help" in args:
        return None
    for position, token in enumerate(args):
        if token == "--":
            return None
        name = token.partition("=")[0]
        after_set = position > 0 and args[position - 1] == "--set"
        if after_set or " " in token or not name.startswith("--") or any(option.startswith(name) for option in known):
            continue
        value = list(args[position + 1:position + 2]) if "=" not in token else []
        return [token] + [item for item in value if not item.startswith("-")]
    return None


def near_option(parser: argparse.ArgumentParser, typed: str) -> str:
    """` (did you mean --config?)` for a typed option close to one of the parser's, else ""."""
    near = difflib.get_close_matches(typed.partition("=")[0], options_of(parser), n=1, cutoff=0.8)
    return f" (did you mean {near[0]}?)" if near else ""


def values_without_option(parser: argparse.ArgumentParser, args: Sequence[str]) -> str | None:
    """`unrecognized arguments: ...` naming the values in `args` that no option takes, where `args` also leave a
    required option out: argparse said only "one of the arguments --config --resume is required" to
    `elr-mri train configs/x.yaml`, as if the file had not been typed. None otherwise (argparse's own message
    is clear then, or help was asked for). The parse here checks no required option and reports nothing."""
    if any(token == "-h" or token.startswith("--h") and "--help".startswith(token) for token in args):
        return None
    groups: list[argparse.Action | argparse._MutuallyExclusiveGroup] = [*parser._actions,
                                                                          *parser._mutually_exclusive_groups]
    required = [item for item in groups if item.required]
    for item in required:
        item.required = False
    parser.error = _refuse  # type: ignore[method-assign]  # an argument argparse refuses: its own parse says so
    try:
        given, extras = parser.parse_known_args(list(args))
    except argparse.ArgumentError:
        return None
    finally:
        del parser.error
        for item in required:
            item.required = True
    values = [token for token in extras if not token.startswith("-")]
    missing = [" or ".join(action.option_strings[0] for action in getattr(item, "_group_actions", [item]))
               for item in required
               if all(getattr(given, action.dest) is None for action in getattr(item, "_group_actions", [item]))]
    if not values or not missing:
        return None
    return (f"unrecognized arguments: {' '.join(values)} (a value goes after its option, and none was given to "
            f"{' and '.join(missing)})")


def _refuse(message: str) -> NoReturn:
    raise argparse.ArgumentError(None, message)


def parse_naming_unknown_options(parser: argparse.ArgumentParser, args: Sequence[str]) -> argparse.Namespace:
    """`parser.parse_args(args)`, but an unknown option, or a value typed without its option, is one line naming
    it (exit 2) before any other check."""
    stray = unknown_option(parser, args)
    if stray is not None:
        parser.exit(2, f"{parser.prog}: unrecognized arguments: {' '.join(stray)}{near_option(parser, stray[0])}\n")
    unplaced = values_without_option(parser, args)
    if unplaced is not None:
        parser.exit(2, f"{parser.prog}: {unplaced}\n")
    return parser.parse_args(args)
