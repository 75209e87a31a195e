import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fetta.hw import isa
from fetta.hw.config import AcceleratorConfig
from fetta.hw.isa import IsaError, Opcode

DOCS = Path(__file__).resolve().parent.parent / "docs" / "isa.md"


def _field_strategy(layout):
    fields = {}
    for name, field in layout:
        if name == "opcode":
            continue
        if getattr(field.shape, "signed", False):
            lo, hi = -(1 << (field.width - 1)), (1 << (field.width - 1)) - 1
        else:
            lo, hi = 0, (1 << field.width) - 1
        fields[name] = st.integers(lo, hi)
    return st.fixed_dictionaries(fields)


_instructions = st.sampled_from(list(isa.LAYOUTS)).flatmap(
    lambda op: st.tuples(st.just(op), _field_strategy(isa.LAYOUTS[op])))


@settings(max_examples=200, deadline=None)
@given(_instructions)
def test_encode_decode_round_trip(instr):
    op, fields = instr
    word = isa.encode(op, **fields)
    assert 0 <= word < 1 << 64
    assert isa.decode(word) == (op, fields)


@settings(max_examples=100, deadline=None)
@given(st.lists(_instructions, max_size=12))
def test_disassemble_assemble_round_trip(program):
    words = [isa.encode(op, **fields) for op, fields in program]
    # Semantically malformed instructions are fine here: this checks the text form only.
    text = isa.disassemble(words)
    parsed = []
    for line in text.splitlines():
        mnemonic, *args = line.split()
        op = Opcode[mnemonic.upper()]
        values = {}
        for arg in args:
            name, _, value = arg.partition("=")
            values[name] = {"even": 0, "stochastic": 1}.get(value, None)
            if values[name] is None:
                values[name] = int(value)
        parsed.append(isa.encode(op, **values))
    assert parsed == words


def test_assemble_known_words():
    # Bit positions written out by hand from the field tables in docs/isa.md.
    words = isa.assemble("""
        loop level=1, count=3, stride_a=-1 stride_b=2 stride_c=5   # comment
        base region_a=3 region_b=1 region_c=0 base_a=7 base_b=0x10 base_c=1
        step levels=2 red=1 route_a=4 route_b=5 route_c=6 shift=9 rounding=stochastic b_one=1
        nop ; another comment
        halt
    """)
    loop = 2 | 1 << 4 | 3 << 7 | ((1 << 14) - 1) << 22 | 2 << 36 | 5 << 50
    base = 3 | 3 << 4 | 1 << 7 | 0 << 10 | 7 << 13 | 16 << 29 | 1 << 45
    step = 4 | 2 << 4 | 1 << 8 | 4 << 12 | 5 << 22 | 6 << 32 | 9 << 42 | 1 << 48 | 1 << 49
    assert words == [loop, base, step, 0, 1]
    text = isa.disassemble(words)
    assert isa.assemble(text) == words
    assert isa.disassemble(isa.assemble(text)) == text
    assert "stride_a=-1" in text and "rounding=stochastic" in text


@pytest.mark.parametrize("text,message", [
    ("jump 3", "line 1: unknown mnemonic 'jump'"),
    ("nop\nloop level=0 count=0", "line 2: LOOP level 0: trip count must be at least 1, not 0"),
    ("loop level=8 count=1", "line 1: LOOP.level must be from 0 to 7, not 8"),
    ("loop level=0 count=1 stride_a=8192", "LOOP.stride_a must be from -8192 to 8191, not 8192"),
    ("loop level=0 count=1 stride=1", "LOOP has no field 'stride'"),
    ("loop level count=1", "line 1: expected name=value, not 'level'"),
    ("loop level=x count=1", "LOOP.level value must be an integer, not 'x'"),
    ("loop level=1 level=2 count=1", "field 'level' given twice"),
    ("base region_a=1 region_b=1 region_c=2", r"regions of A, B and C must be distinct, not \(1, 1, 2\)"),
    ("step levels=0", "STEP levels must be from 1 to 4, not 0"),
    ("step levels=5", "STEP levels must be from 1 to 4, not 5"),
    ("step levels=2 red=3", "STEP red must be at most levels = 2, not 3"),
    ("step levels=1 route_b=64", "STEP route_b must be below dist_routes = 64, not 64"),
    ("step levels=1 route_c=64", "STEP route_c must be below red_routes = 64, not 64"),
    ("step levels=1 shift=36", "STEP shift must be below the sum width 36, not 36"),
    ("loop level=4 count=1", "LOOP level must be below loop_levels = 4, not 4"),
    ("base region_a=4 region_b=1 region_c=2", "BASE region_a must be below regions = 4, not 4"),
    ("step levels=1 rounding=up", "STEP.rounding value must be an integer, not 'up'"),
])
def test_assemble_rejects_malformed(text, message):
    with pytest.raises(IsaError, match=message):
        isa.assemble(text, AcceleratorConfig())


def test_decode_rejects_unknown_opcode():
    with pytest.raises(IsaError, match="unknown opcode 15 in word 0x000000000000001f"):
        isa.decode(0x1F)
    with pytest.raises(IsaError, match="from 0 to 2\\*\\*64 - 1, not -1"):
        isa.decode(-1)


def test_every_layout_fits_a_word():
    for layout in isa.LAYOUTS.values():
        assert layout.size <= isa.INSTR_WIDTH


def test_docs_tables_are_generated_from_the_definition():
    text = DOCS.read_text()
    assert isa.markdown_tables() in text
    assert isa.markdown_csr_table() in text
    # Every CSR named in the Python map appears once in the document's table.
    for name in isa.CSR:
        assert len(re.findall(rf"\| `{name}` \|", text)) == 1, name


def test_csr_offsets_distinct_and_aligned():
    offsets = [offset for offset, _, _ in isa.CSR.values()]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < isa.WINDOWS["CSR"][1] for o in offsets)
    windows = sorted(isa.WINDOWS.values())
    for (base0, size0), (base1, _) in zip(windows, windows[1:]):
        assert base0 + size0 <= base1


@pytest.mark.parametrize("bits,words", [(1, 1), (32, 1), (33, 2), (64, 2), (65, 4), (112, 4), (129, 8)])
def test_route_words(bits, words):
    assert isa.route_words(bits) == words


# Configuration.

def test_config_defaults_and_derived():
    c = AcceleratorConfig()
    assert (c.lanes, c.width, c.acc_width, c.lane_bits, c.sum_width) == (16, 8, 32, 4, 36)
    assert AcceleratorConfig(width=16).acc_width == 48
    assert c.words == 4 * 1024 * 16
    assert (c.word_min, c.word_max) == (-128, 127)


def test_config_serialization(tmp_path):
    c = AcceleratorConfig(lanes=8, width=16, depth=64)
    assert AcceleratorConfig.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["acc_width"] == 48
    path = tmp_path / "cfg.toml"
    path.write_text("[accelerator]\nlanes = 8\nwidth = 16\ndepth = 64\n")
    assert AcceleratorConfig.from_toml(path) == c
    assert AcceleratorConfig.from_toml("lanes = 8\nwidth = 16\ndepth = 64\n") == c
    with pytest.raises(AttributeError):
        c.lanes = 4


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 12}, "lanes must be a power of two from 4 to 256, not 12"),
    ({"lanes": 2}, "lanes must be a power of two from 4 to 256, not 2"),
    ({"lanes": 512}, "lanes must be a power of two from 4 to 256, not 512"),
    ({"width": 12}, "width must be 8 or 16, not 12"),
    ({"acc_width": 15}, "acc_width must be an integer from 16 to 58, not 15"),
    ({"acc_width": 59}, "acc_width must be an integer from 16 to 58, not 59"),
    ({"regions": 2}, "regions must be an integer from 3 to 8, not 2"),
    ({"depth": 100}, "depth must be a power of two from 2 to 8192, not 100"),
    ({"loop_levels": 0}, "loop_levels must be an integer from 1 to 8, not 0"),
    ({"prog_depth": 3}, "prog_depth must be a power of two from 2 to 65536, not 3"),
    ({"dist_routes": 0}, "dist_routes must be an integer from 1 to 1024, not 0"),
    ({"red_routes": 2000}, "red_routes must be an integer from 1 to 1024, not 2000"),
    ({"counter_width": 8}, "counter_width must be an integer from 16 to 64, not 8"),
    ({"counter_width": 65}, "counter_width must be an integer from 16 to 64, not 65"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AcceleratorConfig(**kwargs)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['lane'\]"):
        AcceleratorConfig.from_dict({"lane": 4})
    with pytest.raises(TypeError):
        AcceleratorConfig(16)
