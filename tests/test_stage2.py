import itertools
import math
import re

import pytest

from fetta.hw.accelerator import Timing
from fetta.hw.config import AcceleratorConfig
from fetta.search import csse, stage2
from fetta.search.layers import load_layers
from fetta.search.mapper import map_contraction, map_relayout
from fetta.search.stage2 import CapacityError, Stage2Error, choose_shift, lane_choices, plan_training
from fetta.search.training import plan_training_step

LAYERS = {layer.id: layer for layer in load_layers()}
CONFIG = AcceleratorConfig()


def _small(layer_id, tokens=4):
    layer = LAYERS[layer_id]
    return layer.scaled(tokens=tokens, max_mode=2 if len(layer.in_modes) > 4 else 3)


# The requantization rule.

@pytest.mark.parametrize("k, want", [(1, 7), (2, 8), (3, 8), (4, 8),
                                     (5, 9), (16, 9), (17, 10), (1024, 12)])
def test_shift_rule_w8(k, want):
    # (W - 1) + ceil(log2(K) / 2), by hand for W = 8.
    assert choose_shift(k, CONFIG) == want


def test_shift_rule_is_capped_at_the_sum_width():
    config = AcceleratorConfig(width=16)
    assert choose_shift(1 << 200, config) == config.sum_width - 1
    assert choose_shift(1, config) == 15


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4"])
def test_shift_rule_rejects_bad_lengths(bad):
    with pytest.raises(Stage2Error, match=f"contraction length must be a positive integer, not {bad!r}"):
        choose_shift(bad, CONFIG)


# Lane assignments.

def test_lane_choices_fewest_beats_first():
    extents = {"b": 4, "i": 3, "A": 2, "j": 5}
    L = 16
    found = lane_choices(extents, L)
    allowed = {x: {1, n} | {f for f in (2, 4, 8, 16) if f <= min(n, L)} for x, n in extents.items()}
    brute = []
    for combo in itertools.product(*(sorted(allowed[x]) for x in extents)):
        if math.prod(combo) <= L:
            brute.append(math.prod(-(-n // f) for n, f in zip(extents.values(), combo)))
    assert len(found) == len(brute)
    for choice in found:
        assert math.prod(choice.values()) <= L
        assert all(f in allowed[x] and f > 1 for x, f in choice.items())
    beats = [math.prod(-(-n // choice.get(x, 1)) for x, n in extents.items()) for choice in found]
    assert beats[0] == min(brute)
    assert beats == sorted(beats)


# Whole plans.

def _check_allocation(plan):
    """Every op reads and writes three distinct regions; tensors live at the same time never share
    a row; everything fits the depth."""
    config = plan.config
    rows = {n: t.layout(config).rows_needed for n, t in plan.tensors.items()}
    for op in plan.ops:
        names = [n for n in (op.a, op.b, op.c) if n is not None]
        regions = [plan.tensors[n].region for n in names]
        assert len(set(regions)) == len(regions), op
    for n, t in plan.tensors.items():
        assert 0 <= t.region < config.regions
        assert t.base + rows[n] <= config.depth
    for (n, t), (m, u) in itertools.combinations(plan.tensors.items(), 2):
        if t.region != u.region:
            continue
        live = not (t.dies < u.born or u.dies < t.born) if plan.reuse else True
        if live:
            assert t.base + rows[n] <= u.base or u.base + rows[m] <= t.base, (n, m)


@pytest.mark.parametrize("layer_id", ["B1", "B5", "B9", "B10", "B11", "B12"])
def test_plan_allocation_and_prediction(layer_id):
    plan = plan_training(_small(layer_id), CONFIG, k=2)
    _check_allocation(plan)
    # The plan's cost is the mapper's exact count of each op at its placed layouts.
    total = 0
    for op in plan.ops:
        a = plan.tensors[op.a].layout(CONFIG)
        c = plan.tensors[op.c].layout(CONFIG)
        if op.kind == "relayout":
            total += map_relayout(a, c, CONFIG).cycles
        else:
            total += map_contraction(a, plan.tensors[op.b].layout(CONFIG), c, CONFIG).cycles
    assert plan.cycles == total + Timing.from_config(CONFIG).instr   # the HALT
    assert plan.macs == plan.schedule.macs


def test_reranking_takes_the_fewest_cycles_among_the_k_best_trees():
    layer = _small("B5")
    plan = plan_training(layer, CONFIG, k=4)
    cycles = [c["cycles"] for c in plan.candidates]
    assert plan.total_cycles == plan.cycles == min(cycles)
    trees = csse.search(layer.forward_network(), 4)
    ranked = [c for c in plan.candidates if re.fullmatch(r"rank \d+", c["candidate"])]
    assert [c["macs"] for c in ranked] == [3 * t.macs for t in trees]
    # The written order is not among the 4 best here, so it is priced too.
    assert any(c["candidate"] == "sequential" for c in plan.candidates)
    assert plan.cycles <= plan_training(layer, CONFIG, order="sequential").cycles
    flops = plan_training(layer, CONFIG, k=4, order="flops")
    assert flops.schedule.macs == plan_training_step(layer, k=4).macs
    assert plan.cycles <= flops.cycles


def test_shaping_writes_intermediates_as_they_are_read():
    layer = _small("B1")
    shaped = plan_training(layer, CONFIG, k=2)
    plain = plan_training(layer, CONFIG, k=2, shaping=False)
    assert shaped.relayouts == 0
    # Without in-flight shaping each step keeps its own layouts: readers copy.
    assert plain.relayouts > 0
    assert plain.cycles > shaped.cycles
    copies = [op for op in plain.ops if op.kind == "relayout"]
    for op in copies:
        assert plain.tensors[op.c].source == op.a
        assert plain.tensors[op.c].lanes != plain.tensors[op.a].lanes


def test_sequential_order_is_the_written_order():
    layer = _small("B5")
    plan = plan_training(layer, CONFIG, order="sequential")
    forward = sum(op.macs for op in plan.ops if op.kind == "forward")
    assert forward == layer.sequential_forward_macs()


def test_capacity_error_names_the_tensor():
    layer = LAYERS["B6"].scaled(tokens=2, max_mode=None, max_rank=None)
    config = AcceleratorConfig(depth=32)
    with pytest.raises(CapacityError) as info:
        plan_training(layer, config, order="flops", tile=False)
    e = info.value
    assert e.tensor in str(e) and f"{e.needed} rows" in str(e)
    assert e.needed > e.available
    assert e.tensor in plan_training_step(layer, tokens=2).indices


def test_tiling_over_tokens():
    layer = _small("B1", tokens=16)
    config = AcceleratorConfig(depth=64)
    with pytest.raises(CapacityError):
        plan_training(layer, config, k=1, tile=False)
    plan = plan_training(layer, config, k=1)
    assert plan.tiles > 1 and plan.tokens * plan.tiles >= 16 > plan.tokens * (plan.tiles - 1)
    assert plan.total_tokens == 16
    _check_allocation(plan)


def test_reuse_of_rows_when_everything_does_not_fit():
    plan = plan_training(_small("B1"), AcceleratorConfig(depth=64), k=1)
    assert plan.reuse and plan.tiles == 1
    _check_allocation(plan)


def test_too_few_regions_is_an_error():
    with pytest.raises(Stage2Error, match="cannot be given distinct regions among 3"):
        plan_training(_small("B1", tokens=8), AcceleratorConfig(regions=3), k=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"order": "best"}, "order must be one of 'optimal', 'flops', 'sequential', 'greedy', not 'best'"),
    ({"k": 0}, "k must be a positive integer, not 0"),
    ({"tokens": 0}, "tokens must be a positive integer, not 0"),
    ({"rounding": "up"}, "rounding must be 'nearest_even' or 'stochastic', not 'up'"),
])
def test_plan_errors(kwargs, message):
    with pytest.raises(Stage2Error, match=message):
        plan_training(_small("B1"), CONFIG, **kwargs)


def test_plan_schedule_rejects_a_bad_config():
    schedule = plan_training_step(_small("B1"), k=1)
    with pytest.raises(Stage2Error, match="config must be an AcceleratorConfig, not 'cfg'"):
        stage2.plan_schedule(schedule, "cfg")


def test_stage2_benchmark_rows():
    rows = stage2.benchmark_stage2([_small("B6")], CONFIG, tokens=4, k=2)
    (row,) = rows
    assert row["chosen_cycles"] <= row["flops_cycles"] and row["gain"] >= 1
    assert row["chosen_cycles"] <= row["sequential_cycles"]
    assert row["no_shaping_cycles"] >= row["flops_cycles"]
    table = stage2.stage2_table(rows)
    assert table.count("\n") == 3 and "| B6-scaled | tt | 4 |" in table
