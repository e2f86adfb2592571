"""The handlers of `elr-mri`'s own subcommands, a module per command or pair of related ones.

Each takes argparse's namespace and returns the exit status; `elr_mri.cli` parses the arguments, dispatches, and turns
interrupts and user errors into one line. Heavy imports (torch, ANTs) stay inside the handlers that need them.
"""
