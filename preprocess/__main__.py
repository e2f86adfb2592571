"""`python -m preprocess ...` runs a batch; `python -m preprocess merge ...` joins shards."""
import sys

from .cli import main, merge_main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(merge_main(argv[1:]) if argv[:1] == ["merge"] else main(argv))
