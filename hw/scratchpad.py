"""The scratchpad: regions of L banks, one row (a word in every bank) read or written per cycle."""

from types import SimpleNamespace

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Scratchpad", "block_ram", "block_ram_read_port"]


def block_ram(**kwargs):
    """A :class:`~amaranth.lib.memory.Memory` (same arguments) whose reads never need a word
    written in the same cycle: it carries Yosys's ``no_rw_check`` attribute."""
    return Memory(**kwargs, attrs={"no_rw_check": 1})


def block_ram_read_port(m, memory, name):
    """A read port of ``memory`` (made by :func:`block_ram`) with the timing of a synchronous one
    (``data`` one cycle after ``addr``), built from a combinational port and a register that
    Yosys merges into the block RAM's port. As merged under ``no_rw_check``, the port reads an
    undefined word when that word is written in the same cycle (the simulation reads the old
    one) and needs no read-first emulation logic between the block RAM and the next register.
    Returns an object with ``addr`` and ``data``."""
    port = memory.read_port(domain="comb")
    data = Signal.like(port.data, name=name, reset_less=True)
    m.d.sync += data.eq(port.data)
    return SimpleNamespace(addr=port.addr, data=data)


class Scratchpad(wiring.Component):
    """``regions`` simple dual-port memories of ``depth`` rows, each row ``lanes`` words of ``width`` bits.

    Each region is one :class:`~amaranth.lib.memory.Memory` whose row is an array of ``lanes``
    words with a write enable per word (a word per bank: it maps onto L block RAMs). Two read
    ports, ``read_a`` and ``read_b``, and one write port are shared by all regions: in a cycle a
    region is read by ``read_b`` if ``read_b.region`` selects it, else by ``read_a``; reading the
    same region through both ports is not supported (``read_a`` then sees ``read_b``'s row).

    Latency: a read returns the row ``latency`` (3) cycles after its address: the memory's read,
    a register on each region's output, then the region select into a register per port. A block
    RAM's clock-to-output (5.83 ns on an ECP5 at speed 6) leaves a 100 MHz cycle only the route
    to the next register: with only registers after it, the placer puts a region's register
    near its block RAM rather than near the networks the rows go to.
    A write lands at the end of the cycle it is presented in.
    Throughput: one row per port per cycle. A read returns the row as it was before any write in
    the cycle of its address, except that a read of the row being written in that cycle is
    undefined on an FPGA (:func:`block_ram_read_port`); the accelerator never makes one (a step
    reads regions A and B and writes C, all distinct; the host makes one access at a time).
    Addresses wrap at ``depth``; a region
    number beyond ``regions`` reads the last region and writes nothing.

    Parameters
    ----------
    regions : int
        Number of regions, 1 to 8.
    lanes : int
        Words per row (banks), at least 1.
    depth : int
        Rows per region, a power of two of at least 2.
    width : int
        Word width in bits.

    Members
    -------
    read_a, read_b : ``In(Signature({"region", "addr": Out, "data": In}))``
        Read ports: ``region`` and ``addr`` in, ``data`` (``lanes`` raw words) out.
    write : ``In(Signature({"region", "addr", "data", "mask", "en"}))``
        Write port: ``mask`` bit l enables word l.
    """

    latency = 3

    def __init__(self, *, regions, lanes, depth, width):
        for name, value, ok in (("Region count", regions, isinstance(regions, int) and 1 <= regions <= 8),
                                ("Lane count", lanes, isinstance(lanes, int) and lanes >= 1),
                                ("Depth", depth, isinstance(depth, int) and depth >= 2
                                 and depth & (depth - 1) == 0),
                                ("Word width", width, isinstance(width, int) and width >= 1)):
            if not ok or isinstance(value, bool):
                raise ValueError(f"{name} is not valid for a scratchpad: {value!r}")
        self._regions, self._lanes, self._depth, self._width = regions, lanes, depth, width
        row = data.ArrayLayout(unsigned(width), lanes)
        region = unsigned(3)
        addr = unsigned((depth - 1).bit_length())
        read = wiring.Signature({"region": Out(region), "addr": Out(addr), "data": In(row)})
        super().__init__({
            "read_a": In(read),
            "read_b": In(read),
            "write": In(wiring.Signature({
                "region": Out(region), "addr": Out(addr), "data": Out(row), "mask": Out(lanes),
                "en": Out(1),
            })),
        })

    @property
    def regions(self):
        return self._regions

    @property
    def lanes(self):
        return self._lanes

    @property
    def depth(self):
        return self._depth

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        row = data.ArrayLayout(unsigned(self._width), self._lanes)
        region_a = Signal(3, name="region_a_q")
        region_b = Signal(3, name="region_b_q")
        region_a_2 = Signal(3, name="region_a_q2")
        region_b_2 = Signal(3, name="region_b_q2")
        m.d.sync += [region_a.eq(self.read_a.region), region_b.eq(self.read_b.region),
                     region_a_2.eq(region_a), region_b_2.eq(region_b)]
        data_out = []
        for r in range(self._regions):
            mem = block_ram(shape=row, depth=self._depth, init=[])
            m.submodules[f"region_{r}"] = mem
            rp = block_ram_read_port(m, mem, f"region_{r}_read")
            wp = mem.write_port(granularity=1)   # one enable per word (bank)
            m.d.comb += rp.addr.eq(self.read_a.addr)
            with m.If(self.read_b.region == r):
                m.d.comb += rp.addr.eq(self.read_b.addr)
            m.d.comb += [
                wp.addr.eq(self.write.addr),
                wp.data.eq(self.write.data),
            ]
            with m.If(self.write.en & (self.write.region == r)):
                m.d.comb += wp.en.eq(self.write.mask)
            out = Signal.like(rp.data, name=f"region_{r}_out", reset_less=True)
            m.d.sync += out.eq(rp.data)
            data_out.append(out)
        # Region numbers beyond the last read the last region.
        held_a = Signal(row, name="read_a_q", reset_less=True)
        held_b = Signal(row, name="read_b_q", reset_less=True)
        m.d.sync += [held_a.eq(data_out[-1]), held_b.eq(data_out[-1])]
        for r in range(self._regions - 1):
            with m.If(region_a_2 == r):
                m.d.sync += held_a.eq(data_out[r])
            with m.If(region_b_2 == r):
                m.d.sync += held_b.eq(data_out[r])
        m.d.comb += [self.read_a.data.eq(held_a), self.read_b.data.eq(held_b)]
        return m
