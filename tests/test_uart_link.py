import gc
import collections
import re

import numpy as np
import pytest

from fetta.boards.host_link import LinkError, UARTLink
from fetta.boards.platforms import ICEBREAKER_CONFIG
from fetta.boards.top import LinkTop, make_target
from fetta.hw.config import AcceleratorConfig
from fetta.hw.host_port import HostPortExample, HostPortExampleModel
from fetta.hw.uart_bridge import BridgeStatus, UARTBridgeModel
from fetta.sim.rtl import RTLBuild


class ModelPort:
    """A serial port whose far end is the bridge's byte-level model (one request per write)."""

    def __init__(self, target, *, addr_width=12, cut=None):
        self.model = UARTBridgeModel(target, addr_width=addr_width)
        self.answer = collections.deque()
        self.requests = []
        self.cut = cut
        # Bytes on the line ahead of the next request (noise, a stray byte).
        self.prefix = b""

    def write(self, data):
        self.requests.append(bytes(data))
        answer = self.model.transact(self.prefix + bytes(data))
        self.prefix = b""
        self.answer.extend(answer[:self.cut] if self.cut is not None else answer)
        return len(data)

    def read(self, n):
        return bytes(self.answer.popleft() for _ in range(min(n, len(self.answer))))


def test_link_frames_requests_as_documented():
    port = ModelPort(HostPortExampleModel(depth=16))
    link = UARTLink(port)
    link.write32(0x800, 0xA1B2C3D4)
    assert link.read_block(0x800, 1).tolist() == [0xA1B2C3D4]
    # Spelled out from docs/fpga.md.
    assert port.requests == [bytes([0x57, 0x00, 0x08, 0, 0, 0, 0, 0xD4, 0xC3, 0xB2, 0xA1]),
                             bytes([0x52, 0x00, 0x08, 0, 0, 0, 0])]


def test_link_round_trip_and_errors(seed):
    rng = np.random.default_rng(seed)
    target = HostPortExampleModel(depth=64)
    link = UARTLink(ModelPort(target))
    assert link.ident() == {"version": 1, "addr_width": 12}
    words = rng.integers(0, 1 << 32, 64, dtype=np.uint64)
    link.write_block(HostPortExample.MEM, words)
    assert np.array_equal(link.read_block(HostPortExample.MEM, 64), words)
    assert target.mem == [int(w) for w in words]
    with pytest.raises(LinkError, match="write of 1 words at 0x00000004 failed: SLVERR") as info:
        link.write32(HostPortExample.ID_REG, 5)
    assert info.value.status == BridgeStatus.SLVERR
    with pytest.raises(LinkError, match="RANGE") as info:
        link.read_block(0xFF8, 4)
    assert info.value.data.tolist() == [0, 0, 0, 0]
    assert info.value.status == BridgeStatus.SLVERR | BridgeStatus.RANGE


def test_link_reports_short_and_aborted_answers():
    link = UARTLink(ModelPort(HostPortExampleModel(), cut=0))
    with pytest.raises(LinkError, match="read of 1 words at 0x00000000: expected 5 bytes, "
                                        "received 0") as info:
        link.read32(0)
    assert info.value.status is None
    port = ModelPort(HostPortExampleModel())
    link = UARTLink(port)
    port.prefix = bytes([0x00])   # a stray byte: the request after it is discarded with it
    with pytest.raises(LinkError, match=re.escape("received 1: ABORT | BAD_COMMAND")) as info:
        link.read32(0)
    assert info.value.status == BridgeStatus.ABORT | BridgeStatus.BAD_COMMAND


def test_link_splits_long_bursts(monkeypatch):
    import fetta.boards.host_link as host_link
    monkeypatch.setattr(host_link, "MAX_BURST", 3)
    target = HostPortExampleModel(depth=16)
    port = ModelPort(target)
    link = UARTLink(port)
    link.write_block(0x800, list(range(1, 8)))
    assert link.read_block(0x800, 7).tolist() == list(range(1, 8))
    counts = [int.from_bytes(r[5:7], "little") + 1 for r in port.requests]
    assert counts == [3, 3, 1, 3, 3, 1]


@pytest.mark.parametrize("call,message", [
    (lambda link: link.read32(2), "word-aligned integer from 0 to 2**32 - 4, not 2"),
    (lambda link: link.read32(-4), "not -4"),
    (lambda link: link.read_block(0, 0), "Count must be a positive integer, not 0"),
    (lambda link: link.read_block(0xFFFFFFF8, 3), "A burst of 3 words from 0xfffffff8 runs past"),
    (lambda link: link.write32(0, 1 << 32), "Value must be an integer from 0 to 2**32 - 1, not 4294967296"),
    (lambda link: link.write_block(0, []), "Words must be a non-empty 1-D sequence"),
    (lambda link: link.write_block(0, [1.5]), "Words must be a non-empty 1-D sequence"),
])
def test_link_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(UARTLink(ModelPort(HostPortExampleModel())))


def test_link_rejects_bad_port():
    with pytest.raises(TypeError, match="Port must have read\\(\\) and write\\(\\) methods, not 3"):
        UARTLink(3)


# A constructor that raises leaves instances that are never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_link_top_rejects_target_without_axi():
    from fetta.hw.uart import UARTTx
    with pytest.raises(TypeError, match="Target must be a component with an 'axi' member") as info:
        LinkTop(divisor=4, timeout=64, target=UARTTx(divisor=4))
    with pytest.raises(ValueError, match="Target must be one of \\('accelerator', 'example'\\), not 'x'"):
        make_target("x")
    del info
    gc.collect()


#: The simulated board: a few cycles per bit keeps the simulation short.
SIM_LINK = {"divisor": 4, "timeout": 200, "target": "example"}


def link_build(params=SIM_LINK):
    config = params.get("config")
    config = AcceleratorConfig.from_dict(config) if config is not None else None
    return RTLBuild(name="link_top", config=params, elaborate=lambda: LinkTop(
        divisor=params["divisor"], timeout=params["timeout"],
        target=make_target(params["target"], config=config)))


@pytest.mark.rtl
def test_host_link_against_rtl(seed):
    """The host link drives the Verilog of the board top through its serial pins."""
    params = dict(SIM_LINK, seed=seed, depth=256, accesses=40)
    assert link_build().test("bench_uart_link", testcase="host_link_end_to_end",
                             params=params) == 1


#: The iCEBreaker's accelerator behind the simulated link: what the board carries.
SIM_ACCELERATOR = dict(SIM_LINK, target="accelerator",
                       config=AcceleratorConfig(**ICEBREAKER_CONFIG).to_dict())


@pytest.mark.rtl
def test_host_link_to_accelerator_rtl(seed):
    """The accelerator's registers and memory windows from the host link, through the board top."""
    params = dict(SIM_ACCELERATOR, seed=seed)
    build = link_build(SIM_ACCELERATOR)
    assert build.test("bench_uart_link", testcase="host_link_to_accelerator", params=params) == 1
    # The host driver, over the same link, runs a compiled contraction; the result equals numpy.
    assert build.test("bench_uart_link", testcase="contraction_over_link", params=params) == 1
