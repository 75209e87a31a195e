"""``fetta demo``: one training step from layer to gates, checked end to end.

1. Write the Verilog of the default configuration (and its JSON sidecar).
2. Compile the training step of a benchmark layer, scaled to a few tokens: stage 1's K best
   contraction trees re-ranked by cycles (stage 2), layouts along the chain, one program image.
3. Run the image on the model and on the Verilog in Verilator (through cocotb and the host
   driver; the Verilator build is made once and cached under ``build/rtl``).
4. Check both against numpy bit for bit, and report the chosen order, MACs against the order
   written, cycles and utilization.

The long parts (the Verilator build, the RTL run) show an elapsed-time display.
"""

import sys
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["demo", "register"]


class _Progress:
    """Show ``label`` with the elapsed seconds while a long part runs (updated in place on a
    terminal, a start and an end line otherwise)."""

    def __init__(self, label, file):
        self.label = label
        self.file = file
        self.tty = hasattr(file, "isatty") and file.isatty()
        self._stop = threading.Event()

    def _spin(self):
        marks = "|/-\\"
        k = 0
        while not self._stop.wait(0.25):
            elapsed = time.monotonic() - self.start
            print(f"\r  {marks[k % 4]} {self.label} ... {elapsed:5.0f} s", end="", file=self.file,
                  flush=True)
            k += 1

    def __enter__(self):
        self.start = time.monotonic()
        if self.tty:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        else:
            print(f"  {self.label} ...", file=self.file, flush=True)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.tty:
            self._thread.join()
            print("\r", end="", file=self.file)
        elapsed = time.monotonic() - self.start
        status = "done" if exc[0] is None else "failed"
        print(f"  {self.label}: {status} in {elapsed:.1f} s" + " " * 8, file=self.file, flush=True)
        return False


def demo(*, layer_id="B5", tokens=16, seed=0, rtl=True, output="build/demo", k=8, file=None):
    """Run the demo; return 0 if every check passes, 1 otherwise."""
    from .hw.accelerator import write_verilog
    from .hw.config import AcceleratorConfig
    from .search.codegen import compile_layer, report
    from .search.layers import load_layers
    from .search.stage2 import plan_training
    from .sim.run import random_inputs, rtl_build, rtl_job, run_jobs_rtl, run_training

    file = sys.stdout if file is None else file
    say = lambda text="": print(text, file=file, flush=True)  # noqa: E731
    config = AcceleratorConfig()
    layers = {layer.id: layer for layer in load_layers()}
    if layer_id not in layers:
        raise ValueError(f"layer must be one of {', '.join(layers)}, not {layer_id!r}")
    full = layers[layer_id]
    layer = full.scaled(tokens=tokens, max_mode=2 if len(full.in_modes) > 4 else 4, max_rank=8,
                        id=f"{layer_id}-small")
    say(f"fetta demo: training step of layer {layer_id} ({full.format}, "
        f"{full.in_features}x{full.out_features}) scaled to {layer.in_features}x"
        f"{layer.out_features}, {tokens} tokens, on the default configuration "
        f"(L = {config.lanes}, W = {config.width}, {config.regions} x {config.depth} rows)")

    say("1. Verilog")
    verilog, sidecar = write_verilog(config, Path(output))
    say(f"  wrote {verilog} and {sidecar}")

    say("2. Compile (CSSE stage 1 + stage 2, code generation)")
    start = time.monotonic()
    compiled = compile_layer(layer, config, k=k)
    sequential = plan_training(layer, config, order="sequential")
    data = report(compiled)
    plan = compiled.plan
    say(f"  {len(plan.candidates)} candidate trees re-ranked by cycles in "
        f"{time.monotonic() - start:.1f} s; chosen order:")
    for step in data["steps"]:
        say(f"    {step['kind']:<9} {step['expr']:<52} {step['cycles']:>6,} cycles "
            f"{step['utilization']:>6.1%}")
    seq_fwd = layer.sequential_forward_macs()
    say(f"  MACs: {plan.macs:,} for the whole step ({data['networks'][0]['macs']:,} forward); "
        f"the order written: {sequential.macs * sequential.tiles:,} ({seq_fwd:,} forward); the full-size "
        f"layer's forward: {full.sequential_forward_macs():,} written, "
        f"{_optimal_forward(full):,} optimal")
    say(f"  predicted: {plan.total_cycles:,} cycles, utilization {plan.utilization:.1%} "
        f"(order written: {sequential.total_cycles:,} cycles); {len(compiled.words)} instructions, "
        f"{plan.relayouts} re-layout passes")

    say("3. Run and check against numpy")
    ok = True
    model = run_training(compiled, backend="model", seed=seed)
    ok = ok and _line(say, "model", model)
    if rtl:
        build = rtl_build(config)
        with _Progress("Verilator build of the accelerator system (once, cached)", file):
            build.build()
        arrays = random_inputs(compiled, np.random.default_rng(seed))
        with _Progress("RTL run in Verilator through cocotb", file):
            results = run_jobs_rtl(config, [rtl_job(compiled, arrays)], seed=seed)
        hw = run_training(compiled, backend="rtl", seed=seed, results=results[0])
        ok = _line(say, "RTL", hw) and ok
        same = all(np.array_equal(hw.outputs[key], value) for key, value in model.outputs.items())
        ok = ok and same and hw.cycles == model.cycles
        say(f"  RTL and model agree: {'yes' if same and hw.cycles == model.cycles else 'NO'}")
    say("result: " + ("every tensor equals numpy bit for bit; cycles equal the prediction"
                      if ok else "MISMATCH"))
    return 0 if ok else 1


def _optimal_forward(layer):
    from .search.csse import search
    return search(layer.forward_network(), 1)[0].macs


def _line(say, name, rep):
    good = rep.match and rep.cycles_match
    say(f"  {name}: {'match' if rep.match else 'MISMATCH'} ({len(rep.checked)} tensors checked: "
        f"output, gradients, intermediates); {rep.cycles:,} cycles measured, "
        f"{rep.predicted:,} predicted; utilization {rep.utilization:.1%}")
    return good


def register(sub):
    """Add the ``demo`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``)."""
    parser = sub.add_parser("demo", help="compile a training step, run it on the model and in "
                                         "Verilator, check it against numpy",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="B5", help="benchmark layer id (default B5)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data")
    parser.add_argument("--no-rtl", action="store_true", help="skip Verilator (model only)")
    parser.add_argument("-o", "--output", default="build/demo", help="folder for the Verilog")
    parser.set_defaults(run=lambda args: demo(layer_id=args.layer, tokens=args.tokens,
                                              seed=args.seed, rtl=not args.no_rtl,
                                              output=args.output))
