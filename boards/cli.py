"""``fetta build``: a board's bitstream and its report, optionally loaded into the board."""

import sys

from .build import build_board, format_report
from .platforms import BOARDS
from .top import TARGETS

__all__ = ["register"]


def register(subparsers):
    """Add the ``build`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "build", help="build a board's bitstream (and program it)",
        description="Build the bitstream of a board top (host link + target) with the YoWASP "
                    "toolchain and write report.json / report.txt next to it.")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--program", action="store_true",
                   help="load the bitstream into the board with openFPGALoader")
    p.add_argument("--freq", type=float, default=None, metavar="MHZ",
                   help="design clock in MHz (a PLL output; default: the board's default)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--target", choices=TARGETS, default=None,
                   help="design behind the host link (default: the board's)")
    p.add_argument("--config", default=None, metavar="TOML",
                   help="accelerator configuration (default: the board's)")
    p.add_argument("--seed", type=int, default=1, help="placement seed for nextpnr")
    p.add_argument("-o", "--build-dir", default=None, help="default: build/<board>")
    p.set_defaults(run=_run)
    return p


def _run(args):
    from ..hw.config import AcceleratorConfig
    freq = None if args.freq is None else args.freq * 1e6
    config = None if args.config is None else AcceleratorConfig.from_toml(args.config)
    try:
        report = build_board(args.board, build_dir=args.build_dir, clk_freq=freq, baud=args.baud,
                             target=args.target, config=config, program=args.program,
                             seed=args.seed)
    except RuntimeError as e:
        print(f"fetta build: error: {e}", file=sys.stderr)
        return 1
    print(format_report(report), end="")
    return 0
