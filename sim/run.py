"""Execute a compiled training step on a backend and check every result against numpy.

:func:`run_training` writes random signed W-bit inputs (``x``, ``dy`` and the cores) where the
manifest places them, loads the image and its routes, runs (once per tile of tokens), reads back
every tensor still intact at the HALT (the gradients, the forward output, the intermediates and
copies) and compares each, bit for bit, with :func:`reference`: the same ops in the same order,
computed independently with :func:`fetta.sim.golden.einsum_int` and
:func:`fetta.sim.golden.requantize` (a copy is the identity). Measured cycles are compared with the
predicted ones.

Backends: ``"model"`` (:class:`fetta.sim.model.Machine`) and ``"rtl"`` (the configuration's
Verilog in Verilator through cocotb; ``tests/rtl/bench_training.py`` drives it through the host
driver, one build per configuration, cached under ``build/rtl``).

With stochastic rounding the result of a step depends on the requantizer's random bits, so each op
is checked against the floor and the floor plus one of its exact sum computed from the operands
read back from the machine (the reference cannot predict the draws).
"""

import dataclasses
import json
import os
import sys
import tempfile

import numpy as np

from ..hw.config import AcceleratorConfig
from .golden import einsum_int, requantize

__all__ = ["RunReport", "random_inputs", "reference", "run_training", "rtl_job", "run_jobs_rtl",
           "rtl_build", "register"]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclasses.dataclass
class RunReport:
    """Outcome of :func:`run_training`.

    ``match``: every checked tensor of every tile equals the reference and no run stopped with an
    error. ``cycles``: measured over all tiles; ``predicted``: the compiler's count;
    ``cycles_match``: every tile's measured count equals the compiler's, modulo the
    configuration's counter width (a narrow counter wraps on a long tile).
    ``mismatches``: ``(tile, tensor)`` pairs that differ. ``saturated``: elements the requantizer
    saturated (reference); ``qsat``: the machine's sticky flag of any tile.
    """
    backend: str
    match: bool
    cycles: int
    predicted: int
    cycles_match: bool
    macs: int
    utilization: float
    tiles: int
    checked: list
    mismatches: list
    errors: list
    saturated: int
    qsat: bool
    outputs: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d.pop("outputs")
        return d


def _expr(*index_lists):
    letters = {}
    for ix in index_lists:
        for x in ix:
            letters.setdefault(x, _LETTERS[len(letters)])
    parts = ["".join(letters[x] for x in ix) for ix in index_lists]
    return ",".join(parts[:-1]) + "->" + parts[-1]


def random_inputs(compiled, rng, *, tokens=None):
    """Random signed W-bit arrays for every input of the step (``x``, ``dy`` over ``tokens``
    tokens, default the plan's total)."""
    plan = compiled.plan
    c = plan.config
    tokens = plan.total_tokens if tokens is None else tokens
    arrays = {}
    for name in plan.schedule.inputs:
        t = plan.tensors[name]
        shape = tuple(tokens if x == "b" else n for x, n in zip(t.indices, t.sizes))
        arrays[name] = rng.integers(c.word_min, c.word_max + 1, shape)
    return arrays


def reference(compiled, inputs):
    """Every tensor of one run of the step, computed with numpy.

    Returns ``(values, saturated)``: a dict of int64 arrays (inputs included) and the number of
    elements the requantizer saturated.
    """
    plan = compiled.plan
    c = plan.config
    values = {n: np.asarray(v, dtype=np.int64) for n, v in inputs.items()}
    saturated = 0
    for op in plan.ops:
        a = plan.tensors[op.a]
        out = plan.tensors[op.c]
        if op.kind == "relayout":
            values[op.c] = values[op.a].copy()
            continue
        b = plan.tensors[op.b]
        acc, _overflow = einsum_int(_expr(a.indices, b.indices, out.indices), values[op.a],
                                    values[op.b], width=c.width, acc_width=c.acc_width)
        result, sat = requantize(acc, op.shift, c.width, acc_width=c.sum_width)
        values[op.c] = result
        saturated += int(sat.sum())
    return values, saturated


def _tile_inputs(plan, arrays, tile):
    """Inputs of one tile: tokens ``tile * T ...`` of x and dy, zero-padded to ``T``."""
    T = plan.tokens
    out = {}
    for name, array in arrays.items():
        indices = plan.tensors[name].indices
        if "b" not in indices:
            out[name] = array
            continue
        axis = indices.index("b")
        part = np.take(array, range(tile * T, min((tile + 1) * T, array.shape[axis])), axis=axis)
        pad = [(0, 0)] * array.ndim
        pad[axis] = (0, T - part.shape[axis])
        out[name] = np.pad(part, pad)
    return out


def _checked(compiled):
    return [n for n, m in compiled.manifest.items() if m["intact"] and m["role"] not in
            ("input", "core", "grad_output")]


def _run_model(compiled, tiles_inputs, seed):
    from .model import Machine
    plan = compiled.plan
    machine = Machine(plan.config)
    machine.seed = seed & 0xFFFFFFFF
    compiled.load(machine)
    results = []
    for inputs in tiles_inputs:
        for name, array in inputs.items():
            layout = compiled.layout(name)
            machine.write_rows(layout.region, layout.base, layout.pack(array))
        result = machine.run()
        read = {}
        for name in _checked(compiled):
            layout = compiled.layout(name)
            read[name] = layout.unpack(machine.read_rows(layout.region, layout.base,
                                                         layout.rows_needed))
        error = None if not result.error else f"{result.cause.name} at {result.err_pc}"
        results.append((read, result.counters.cycles, result.qsat, error))
    return results


def rtl_job(compiled, arrays):
    """The JSON job of ``tests/rtl/bench_training.py`` for one compiled step on inputs ``arrays``
    (all tokens; cut into the plan's tiles here)."""
    return _job(compiled, [_tile_inputs(compiled.plan, arrays, t) for t in range(compiled.plan.tiles)])


def _job(compiled, tiles_inputs):
    tiles = []
    reads = [(n, compiled.layout(n)) for n in _checked(compiled)]
    for inputs in tiles_inputs:
        writes = []
        for name, array in inputs.items():
            layout = compiled.layout(name)
            writes.append([layout.region, layout.base, layout.pack(array).tolist()])
        tiles.append({"writes": writes,
                      "reads": [[lay.region, lay.base, lay.rows_needed] for _, lay in reads]})
    return {"words": [int(w) for w in compiled.words],
            "dist": {str(k): int(v) for k, v in compiled.dist_routes.items()},
            "red": {str(k): int(v) for k, v in compiled.red_routes.items()},
            "tiles": tiles}


def rtl_build(config):
    """The cached Verilator build of ``config``'s accelerator system."""
    from ..hw.accelerator import AcceleratorSystem
    from .rtl import RTLBuild
    return RTLBuild(name="accelerator_system", config=config.to_dict(),
                    elaborate=lambda: AcceleratorSystem(config))


def run_jobs_rtl(config, jobs, *, seed=0):
    """Run :func:`rtl_job` dicts on the RTL in one cocotb run; return the bench's results per job."""
    build = rtl_build(config)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "results.json")
        build.test("bench_training", params={"config": config.to_dict(), "seed": seed,
                                             "jobs": jobs, "results": path})
        with open(path) as f:
            return json.load(f)


def _from_rtl(compiled, result):
    out = []
    names = _checked(compiled)
    for tile in result["tiles"]:
        read = {}
        for name, rows in zip(names, tile["rows"]):
            read[name] = compiled.layout(name).unpack(np.array(rows, dtype=np.int64))
        out.append((read, tile["counters"]["cycles"], tile["qsat"], tile["error"]))
    return out


def _stochastic_check(compiled, read, inputs):
    """Per op, whether the machine's result is the floor or the floor plus one of its exact sum
    (operands as read back), saturated to W bits."""
    plan = compiled.plan
    c = plan.config
    values = dict(inputs)
    values.update(read)
    bad = []
    for op in plan.ops:
        if op.kind == "relayout":
            if op.c in read and op.a in values and not np.array_equal(read[op.c], values[op.a]):
                bad.append(op.c)
            continue
        if op.c not in read or op.a not in values or op.b not in values:
            continue
        a, b, out = plan.tensors[op.a], plan.tensors[op.b], plan.tensors[op.c]
        acc, _ = einsum_int(_expr(a.indices, b.indices, out.indices), values[op.a], values[op.b],
                            width=c.width, acc_width=c.acc_width)
        low = np.clip(acc >> op.shift, c.word_min, c.word_max)
        high = np.clip((acc >> op.shift) + ((acc & ((1 << op.shift) - 1)) != 0), c.word_min,
                       c.word_max)
        got = read[op.c]
        if not np.all((got == low) | (got == high)):
            bad.append(op.c)
    return bad


def run_training(compiled, *, backend="model", seed=0, results=None):
    """Run a compiled step on random data and check it; return a :class:`RunReport`.

    Parameters
    ----------
    compiled : CompiledStep
    backend : str
        ``"model"`` or ``"rtl"``.
    seed : int
        Seed of the random inputs (and of the requantizer's generators).
    results : list, optional
        For ``"rtl"``: the bench's result of this step when it was run already together with
        others (:func:`run_jobs_rtl`), instead of a run of its own.

    Raises
    ------
    ValueError
        For an unknown backend.
    """
    if backend not in ("model", "rtl"):
        raise ValueError(f"backend must be 'model' or 'rtl', not {backend!r}")
    plan = compiled.plan
    rng = np.random.default_rng(seed)
    arrays = random_inputs(compiled, rng)
    tiles_inputs = [_tile_inputs(plan, arrays, t) for t in range(plan.tiles)]
    if backend == "model":
        runs = _run_model(compiled, tiles_inputs, seed)
    else:
        if results is None:
            results = run_jobs_rtl(plan.config, [rtl_job(compiled, arrays)], seed=seed)[0]
        runs = _from_rtl(compiled, results)
    checked, mismatches, errors = _checked(compiled), [], []
    saturated, cycles, qsat = 0, 0, False
    outputs = {}
    cycles_match = True
    for t, (inputs, (read, measured, flag, error)) in enumerate(zip(tiles_inputs, runs)):
        cycles += measured
        cycles_match = cycles_match and measured == plan.cycles & plan.config.counter_mask
        qsat = qsat or flag
        if error is not None:
            errors.append(f"tile {t}: {error}")
        if plan.rounding == "stochastic":
            mismatches += [(t, n) for n in _stochastic_check(compiled, read, inputs)]
        else:
            want, sat = reference(compiled, inputs)
            saturated += sat
            mismatches += [(t, n) for n in checked if not np.array_equal(read[n], want[n])]
        for key, name in plan.schedule.outputs.items():
            if name in read:
                outputs.setdefault(key, []).append(read[name])
    # y and dx are per token; core gradients add up over the tiles (on the host).
    final = {}
    for key, parts in outputs.items():
        indices = plan.tensors[plan.schedule.outputs[key]].indices
        if "b" in indices:
            axis = indices.index("b")
            final[key] = np.take(np.concatenate(parts, axis=axis), range(plan.total_tokens),
                                 axis=axis)
        else:
            final[key] = sum(parts)
    predicted = plan.cycles * plan.tiles
    macs = plan.macs * plan.tiles
    return RunReport(
        backend=backend, match=not mismatches and not errors, cycles=cycles, predicted=predicted,
        cycles_match=cycles_match,
        macs=macs, utilization=macs / (cycles * plan.config.lanes) if cycles else 0.0,
        tiles=plan.tiles, checked=checked, mismatches=mismatches, errors=errors,
        saturated=saturated, qsat=qsat, outputs=final)


def register(sub):
    """Add the ``run`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``).

    ``fetta run layer.json --backend model|rtl [--tokens N] [--config cfg.toml] [--json]
    [--seed S]`` compiles the layer's training step, runs it on random data and checks every
    result against numpy; the exit status is 1 on a mismatch.
    """
    from ..search.stage2 import ORDERS
    parser = sub.add_parser("run", help="compile, execute and check a layer's training step",
                            description="Compile a layer's training step, run it on random integer "
                                        "data on the model or the RTL, and check every result bit "
                                        "for bit against numpy.")
    parser.add_argument("layer", help="layer JSON: one entry of tnn_layers.json or a list of them")
    parser.add_argument("--backend", choices=("model", "rtl"), default="model")
    parser.add_argument("--config", help="accelerator configuration TOML (default configuration)")
    parser.add_argument("--tokens", type=int, help="token count (default: the layer's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per layer")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data")
    parser.add_argument("--order", choices=ORDERS, default="optimal")
    parser.add_argument("--k", type=int, default=8, help="forward trees re-ranked (default 8)")
    parser.add_argument("--no-shaping", action="store_true",
                        help="baseline without in-flight shaping")
    parser.add_argument("--rounding", choices=("nearest_even", "stochastic"),
                        default="nearest_even")
    parser.set_defaults(run=_run)


def _run(args):
    from ..search.codegen import compile_layer, load_config
    from ..search.layers import load_layers
    from ..search.stage2 import Stage2Error
    config = load_config(args.config)
    if args.backend == "rtl" and config != AcceleratorConfig():
        print("fetta run: note: the RTL backend builds this configuration's Verilog",
              file=sys.stderr)
    layers = load_layers(args.layer)
    compiled = []
    for layer in layers:
        try:
            compiled.append(compile_layer(layer, config, tokens=args.tokens, order=args.order,
                                          k=args.k, shaping=not args.no_shaping,
                                          rounding=args.rounding))
        except Stage2Error as e:
            raise ValueError(f"layer {layer.id or '?'!r}: {e}") from None
    results = [None] * len(compiled)
    if args.backend == "rtl":
        jobs = [rtl_job(c, random_inputs(c, np.random.default_rng(args.seed))) for c in compiled]
        results = run_jobs_rtl(config, jobs, seed=args.seed)
    reports = []
    ok = True
    for layer, c, result in zip(layers, compiled, results):
        rep = run_training(c, backend=args.backend, seed=args.seed, results=result)
        ok = ok and rep.match and rep.cycles_match
        data = dict(rep.to_dict(), layer=layer.id)
        reports.append(data)
        if not args.json:
            print(f"{layer.id or 'layer'}: {'match' if rep.match else 'MISMATCH'} on {rep.backend}; "
                  f"{rep.cycles:,} cycles measured, {rep.predicted:,} predicted; {rep.macs:,} MACs; "
                  f"utilization {rep.utilization:.1%}; {len(rep.checked)} tensors checked"
                  + (f" in {rep.tiles} tiles" if rep.tiles > 1 else "")
                  + (f"; {rep.saturated} saturated elements" if rep.saturated else ""))
            for t, n in rep.mismatches:
                print(f"  tile {t}: {n} differs from numpy")
            for e in rep.errors:
                print(f"  error: {e}")
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=1))
    return 0 if ok else 1


def scaled_table(config=None, *, tokens=4, max_mode=3, max_rank=2, k=2, seed=0):
    """Markdown table: the 12 benchmark layers scaled down, compiled (chosen schedule, and the
    baselines' predicted cycles) and run on the model, each checked against numpy."""
    from ..search.codegen import compile_layer
    from ..search.layers import load_layers
    from ..search.stage2 import plan_training
    config = AcceleratorConfig() if config is None else config
    lines = ["| layer | format | MACs (written order) | cycles: chosen | FLOP-optimal | no shaping | "
             "written order | util. | copies | model = numpy, cycles = prediction |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for layer in load_layers():
        small = layer.scaled(tokens=tokens, max_mode=2 if len(layer.in_modes) > 4 else max_mode,
                             max_rank=max_rank)
        try:
            chosen = compile_layer(small, config, k=k)
        except ValueError as e:
            lines.append(f"| {layer.id} | {layer.format} | does not fit: {e} |")
            continue
        others = []
        for kwargs in ({"k": k, "order": "flops"}, {"k": k, "order": "flops", "shaping": False},
                       {"order": "sequential"}):
            try:
                others.append(plan_training(small, config, **kwargs))
            except ValueError:
                others.append(None)
        rep = run_training(chosen, seed=seed)
        ok = "yes" if rep.match and rep.cycles_match else "NO"
        tiles = "" if chosen.plan.tiles == 1 else f" ({chosen.plan.tiles} tiles)"
        lines.append(
            f"| {layer.id} | {layer.format} | {rep.macs:,} "
            f"({'-' if others[2] is None else format(others[2].macs * others[2].tiles, ',')}) | "
            f"{rep.cycles:,}{tiles} | " + " | ".join(
                "does not fit" if o is None else f"{o.total_cycles:,}" for o in others)
            + f" | {rep.utilization:.1%} | {chosen.plan.relayouts} | {ok} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(scaled_table())
