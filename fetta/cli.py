"""The ``fetta`` command line."""

import argparse
import sys

from . import __version__

__all__ = ["main"]


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="fetta",
        description="Generator, compiler and simulator of a training accelerator for "
                    "tensorized neural networks.")
    parser.add_argument("--version", action="version", version=f"fetta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMANDS:
        module.register(sub)
    return parser


_COMMANDS = []


def main(argv=None):
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError) as e:
        print(f"fetta {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
