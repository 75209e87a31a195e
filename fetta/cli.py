"""The ``fetta`` command line."""

import argparse
import importlib
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
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


#: Modules that each add their subcommands with a ``register(subparsers)`` function.
_COMMANDS = [
    "fetta.hw.accelerator",       # verilog
    "fetta.search.layers",        # layers
    "fetta.search.csse",          # search
    "fetta.search.mapper",        # map
    "fetta.search.codegen",       # compile
    "fetta.sim.run",              # run
    "fetta.search.benes_router",  # route
    "fetta.sim.driver",           # host
    "fetta.boards.cli",           # build
    "fetta.bench",                # bench
    "fetta.demo",                 # demo
]


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
