"""Code generation of a whole training step: one program image, route tables and a manifest.

:func:`generate` turns a :class:`fetta.search.stage2.Stage2Plan` into a :class:`CompiledStep`:

* the **image**: the mapper programs of every op (forward steps, backward steps, re-layout copies)
  one after another, then a single HALT. Each mapper program starts by setting the loop levels
  and bases it uses, so the programs chain without touching each other's state;
* the **route tables**: every distinct distribution and reduction entry once, numbered from 0 in
  order of first use (the STEP words are rewritten to the merged numbering);
* the **manifest**: for every tensor its role (``input``, ``core``, ``grad_output``,
  ``intermediate``, ``gradient``, ``output``, ``input_grad``, ``core_grad``, ``copy``), indices,
  sizes, layout (lane pairs and row strides), region, base row, rows, lifetime and whether it is
  still intact when the program halts (rows of a dead tensor may be reused).

The predicted cycles of the image are the sum of the mapper's exact counts plus the HALT, which the
model (:class:`fetta.sim.model.Machine`) and the RTL count too.

:func:`compile_layer` runs stage 2 and the code generation for a layer; :func:`register` adds the
``compile`` subcommand to the ``fetta`` command line.
"""

import dataclasses
import json
import sys

from ..hw import isa
from ..hw.config import AcceleratorConfig
from ..hw.isa import Opcode
from .stage2 import ORDERS, Stage2Error, plan_training

__all__ = ["CodegenError", "CompiledStep", "generate", "compile_layer", "report", "register"]


class CodegenError(ValueError):
    """A plan that does not fit the program memory or the route tables."""


@dataclasses.dataclass
class CompiledStep:
    """A training step compiled to one program.

    Attributes
    ----------
    plan : Stage2Plan
    words : tuple of int
        The program image, HALT included.
    dist_routes, red_routes : dict of int to int
        Route-table entries (entry number to configuration bits).
    op_words : tuple of (int, int)
        ``(first, last + 1)`` word of each op in ``words``.
    manifest : dict of str to dict
        Per tensor: ``role``, ``indices``, ``sizes``, ``lanes``, ``row_strides``, ``region``,
        ``base``, ``rows``, ``born``, ``dies``, ``intact``, ``source``.
    """
    plan: object
    words: tuple
    dist_routes: dict
    red_routes: dict
    op_words: tuple
    manifest: dict

    @property
    def config(self):
        return self.plan.config

    @property
    def cycles(self):
        """Predicted cycles of one run of the image (HALT included)."""
        return self.plan.cycles

    def layout(self, name):
        """The placed :class:`fetta.search.layout.TensorLayout` of tensor ``name``."""
        return self.plan.tensors[name].layout(self.config)

    def load(self, machine):
        """Write the image and the route entries into ``machine`` (the model, or anything with
        ``load_program``, ``set_dist_route`` and ``set_red_route``)."""
        machine.load_program(list(self.words))
        for entry, bits in self.dist_routes.items():
            machine.set_dist_route(entry, bits)
        for entry, bits in self.red_routes.items():
            machine.set_red_route(entry, bits)

    def text(self):
        """The image as assembly."""
        return isa.disassemble(list(self.words))


def _intact(plan):
    """Tensors whose rows no later write touches before the HALT."""
    rows = {n: t.rows(plan.config) for n, t in plan.tensors.items()}
    intact = {}
    for n, t in plan.tensors.items():
        ok = True
        if plan.reuse:
            for m, u in plan.tensors.items():
                if m != n and u.region == t.region and u.born > t.born and \
                        u.base < t.base + rows[n] and t.base < u.base + rows[m]:
                    ok = False
                    break
        intact[n] = ok
    return intact


def generate(plan):
    """Chain the plan's programs into one image with merged route tables and a manifest.

    Raises
    ------
    CodegenError
        If the image (with HALT) exceeds ``prog_depth`` or the merged routes a route table.
    """
    config = plan.config
    dist, red = {}, {}     # bits -> merged entry
    words, op_words = [], []
    for program in plan.programs:
        dist_map = {entry: dist.setdefault(bits, len(dist)) for entry, bits in program.dist_routes}
        red_map = {entry: red.setdefault(bits, len(red)) for entry, bits in program.red_routes}
        first = len(words)
        for word in program.words:
            opcode, fields = isa.decode(word)
            if opcode == Opcode.STEP:
                fields["route_a"] = dist_map[fields["route_a"]]
                if not fields["b_one"]:
                    fields["route_b"] = dist_map[fields["route_b"]]
                fields["route_c"] = red_map[fields["route_c"]]
                word = isa.encode(opcode, **fields)
            words.append(word)
        op_words.append((first, len(words)))
    words.append(isa.encode(Opcode.HALT))
    if len(words) > config.prog_depth:
        raise CodegenError(f"the training step needs {len(words)} instructions with HALT; "
                           f"prog_depth is {config.prog_depth}")
    for name, table, size in (("distribution", dist, config.dist_routes),
                              ("reduction", red, config.red_routes)):
        if len(table) > size:
            raise CodegenError(f"the training step needs {len(table)} {name} routes; the table "
                               f"has {size} entries")
    intact = _intact(plan)
    manifest = {}
    for name, t in plan.tensors.items():
        layout = t.layout(config)
        manifest[name] = {
            "role": t.role, "indices": list(t.indices), "sizes": list(t.sizes),
            "lanes": [list(p) for p in layout.lane_indices],
            "row_strides": [list(p) for p in layout.row_strides],
            "region": t.region, "base": t.base, "rows": layout.rows_needed,
            "born": t.born, "dies": t.dies, "intact": intact[name], "source": t.source}
    return CompiledStep(plan=plan, words=tuple(words),
                        dist_routes={e: b for b, e in dist.items()},
                        red_routes={e: b for b, e in red.items()},
                        op_words=tuple(op_words), manifest=manifest)


def compile_layer(layer, config=None, *, tokens=None, order="optimal", k=8, shaping=True,
                  rounding="nearest_even", tile=True):
    """Stage 2 (:func:`fetta.search.stage2.plan_training`) and :func:`generate` for one layer."""
    plan = plan_training(layer, config, tokens=tokens, order=order, k=k, shaping=shaping,
                         rounding=rounding, tile=tile)
    return generate(plan)


def _expr(op, plan):
    def term(name):
        return f"{name}[{','.join(plan.tensors[name].indices)}]"
    if op.kind == "relayout":
        return f"{term(op.c)} = relayout {term(op.a)}"
    return f"{term(op.c)} = {term(op.a)} * {term(op.b)}"


def _networks(plan):
    """The networks each op serves: ``forward``, ``input_grad``, ``core_grad:K``."""
    schedule = plan.schedule
    producer = {op.c: k for k, op in enumerate(plan.ops)}
    cores = [t.name for t in schedule.forward_tree.network.tensors if t.name != "x"]
    targets = []
    for key, name in schedule.outputs.items():
        if key == "y":
            continue
        label = "input_grad" if key == "dx" else f"core_grad:{cores.index(key[1:]) + 1}"
        targets.append((label, name))
    serves = [set() for _ in plan.ops]
    for k, op in enumerate(plan.ops):
        if op.kind == "forward":
            serves[k].add("forward")
    for label, name in targets:
        stack = [name]
        while stack:
            n = stack.pop()
            k = producer.get(n)
            if k is None or plan.ops[k].kind == "forward":
                continue
            serves[k].add(label)
            stack += [m for m in (plan.ops[k].a, plan.ops[k].b) if m is not None]
    # A copy serves whoever reads it.
    for k, op in enumerate(plan.ops):
        if op.kind == "relayout":
            for j, other in enumerate(plan.ops):
                if op.c in (other.a, other.b):
                    serves[k] |= serves[j]
    order = ["forward", "input_grad"] + [f"core_grad:{j + 1}" for j in range(len(cores))]
    return serves, [label for label in order if any(label in s for s in serves)]


def report(compiled):
    """The compiled step as a JSON-able dict (the object ``fetta compile --json`` prints)."""
    plan = compiled.plan
    config = plan.config
    L = config.lanes
    serves, labels = _networks(plan)
    steps = []
    for k, (op, program) in enumerate(zip(plan.ops, plan.programs)):
        steps.append({
            "op": k, "kind": op.kind, "expr": _expr(op, plan), "macs": op.macs,
            "cycles": program.cycles, "utilization": program.utilization, "shift": op.shift,
            "spatial": list(program.spatial), "pinned": list(program.pinned),
            "temporal": list(program.temporal), "steps": program.steps,
            "words": compiled.op_words[k][1] - compiled.op_words[k][0],
            "networks": sorted(serves[k])})
    networks = []
    for label in labels:
        mine = [s for s in steps if label in s["networks"]]
        macs = sum(s["macs"] for s in mine)
        cycles = sum(s["cycles"] for s in mine)
        networks.append({"name": label, "sequence": [s["expr"] for s in mine], "macs": macs,
                         "cycles": cycles,
                         "utilization": macs / (cycles * L) if cycles else 0.0})
    tiles = plan.tiles
    total = {"macs": plan.macs * tiles, "cycles": plan.cycles * tiles,
             "utilization": plan.utilization, "cycles_per_tile": plan.cycles,
             "relayouts": plan.relayouts, "ops": len(plan.ops),
             "instructions": len(compiled.words), "dist_routes": len(compiled.dist_routes),
             "red_routes": len(compiled.red_routes)}
    layer = plan.schedule.forward_tree.network.name.split(":")[0]
    return {"layer": layer, "config": config.to_dict(), "shaping": plan.shaping,
            "rounding": plan.rounding, "tokens": plan.total_tokens, "tile_tokens": plan.tokens,
            "tiles": tiles, "reuse": plan.reuse, "networks": networks, "training_step": total,
            "steps": steps, "candidates": plan.candidates, "manifest": compiled.manifest}


def print_report(data, *, file=None):
    """Print :func:`report`'s dict as text: steps, networks, totals."""
    file = sys.stdout if file is None else file
    t = data["training_step"]
    print(f"layer {data['layer']}: {data['tokens']} tokens"
          + (f" in {data['tiles']} tiles of {data['tile_tokens']}" if data["tiles"] > 1 else "")
          + ("" if data["shaping"] else ", no in-flight shaping"), file=file)
    print(f"{'op':>3} {'kind':<9} {'step':<58} {'lanes':<16} {'MACs':>9} {'cycles':>8} "
          f"{'util':>6}", file=file)
    for s in data["steps"]:
        print(f"{s['op']:>3} {s['kind']:<9} {s['expr']:<58} {' '.join(s['spatial']) or '-':<16} "
              f"{s['macs']:>9,} {s['cycles']:>8,} {s['utilization']:>6.1%}", file=file)
    print(file=file)
    for n in data["networks"]:
        print(f"{n['name']:<12} {len(n['sequence']):>3} steps {n['macs']:>12,} MACs "
              f"{n['cycles']:>10,} cycles {n['utilization']:>6.1%}", file=file)
    print(f"training step: {t['macs']:,} MACs, {t['cycles']:,} cycles, utilization "
          f"{t['utilization']:.1%}, {t['relayouts']} re-layout passes, {t['instructions']} "
          f"instructions, {t['dist_routes']} + {t['red_routes']} routes", file=file)
    if len(data["candidates"]) > 1:
        shown = ", ".join(f"{c['candidate']}: {c['macs']:,} MACs "
                          f"{'does not fit' if c['cycles'] is None else format(c['cycles'], ',') + ' cycles'}"
                          for c in data["candidates"])
        print(f"candidates re-ranked by cycles: {shown}", file=file)


def load_config(path):
    """The configuration of a TOML file, or the default one for None."""
    return AcceleratorConfig() if path is None else AcceleratorConfig.from_toml(str(path))


def register(sub):
    """Add the ``compile`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``).

    ``fetta compile layer.json [--config cfg.toml] [--tokens N] [--json] [--order ORDER]
    [--no-shaping]`` prints the chosen sequence with MACs, predicted cycles and utilization per
    step; ``--json`` prints :func:`report`'s object (a list of them for a file of several layers).
    """
    parser = sub.add_parser("compile", help="compile a layer's training step (CSSE stage 2 + code)",
                            description="Choose the contraction order and layouts of a layer's "
                                        "training step on a configuration and generate its program.")
    parser.add_argument("layer", help="layer JSON: one entry of tnn_layers.json or a list of them")
    parser.add_argument("--config", help="accelerator configuration TOML (default: the default "
                                         "configuration)")
    parser.add_argument("--tokens", type=int, help="token count (default: the layer's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per layer")
    parser.add_argument("--order", choices=ORDERS, default="optimal",
                        help="optimal: stage 1's K best re-ranked by cycles; flops: stage 1's "
                             "MAC-optimal, no re-ranking; sequential: the order written; greedy: "
                             "opt_einsum's greedy")
    parser.add_argument("--k", type=int, default=8, help="forward trees re-ranked (default 8)")
    parser.add_argument("--no-shaping", action="store_true",
                        help="baseline without in-flight shaping: explicit re-layout passes")
    parser.add_argument("--rounding", choices=("nearest_even", "stochastic"),
                        default="nearest_even", help="requantizer rounding")
    parser.add_argument("--no-tile", action="store_true",
                        help="raise instead of tiling over tokens when the step does not fit")
    parser.add_argument("--asm", action="store_true", help="also print the program as assembly")
    parser.set_defaults(run=_run)


def _run(args):
    from .layers import load_layers
    config = load_config(args.config)
    out = []
    for layer in load_layers(args.layer):
        try:
            compiled = compile_layer(layer, config, tokens=args.tokens, order=args.order, k=args.k,
                                     shaping=not args.no_shaping, rounding=args.rounding,
                                     tile=not args.no_tile)
        except Stage2Error as e:
            raise ValueError(f"layer {layer.id or '?'!r}: {e}") from None
        data = report(compiled)
        if args.json:
            out.append(data)
        else:
            print_report(data)
            if args.asm:
                print(compiled.text())
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    return 0
