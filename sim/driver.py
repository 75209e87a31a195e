"""The host driver: one API to load, run and read back the accelerator, on any backend.

Two layers:

* a **register-access backend** (:class:`RegisterAccess`) moves 32-bit words at byte addresses:
  :class:`ModelBackend` (the register map of docs/isa.md emulated over the cycle-exact model
  :class:`fetta.sim.model.Machine`), :class:`RTLBackend` (the Verilated RTL behind its AXI4-Lite
  port, driven by cocotbext-axi's :class:`~cocotbext.axi.AxiLiteMaster` inside a cocotb test) and
  :class:`LinkBackend` (any blocking link with ``read32``/``write32``, such as the board's
  :class:`fetta.boards.host_link.UARTLink`). A failed access (SLVERR) raises
  :class:`HostBusError` on every backend.
* the **driver** (:class:`Driver`) speaks the register map: program, route tables, scratchpad
  rows and tensors, START, polling, counters, error cause, CLEAR.

Every method of both layers is a coroutine, so that one script drives every backend: under cocotb
for the RTL, under :func:`asyncio.run` (or :func:`run_sync`) for the model and the board, whose
coroutines never suspend.
"""

import dataclasses

import numpy as np

from ..hw import isa
from ..hw.accelerator import Datapath
from ..hw.config import AcceleratorConfig
from ..hw.isa import CSR, WINDOWS, Cause
from ..hw.uart_bridge import BridgeStatus
from .model import Machine

__all__ = ["HostBusError", "DriverTimeout", "RegisterAccess", "ModelBackend", "RTLBackend",
           "LinkBackend", "Driver", "Status", "run_sync", "describe", "register"]

_MASK = 0xFFFF_FFFF


class HostBusError(IOError):
    """The accelerator rejected an access (SLVERR on AXI, an error status on a link).

    Attributes
    ----------
    address : int
        Byte address of the (first) failed access.
    write : bool
        Whether the access was a write.
    """

    def __init__(self, address, *, write, detail=""):
        kind = "write" if write else "read"
        super().__init__(f"{kind} at {address:#x} rejected{': ' + detail if detail else ''}")
        self.address = address
        self.write = write


class DriverTimeout(TimeoutError):
    """The accelerator did not report DONE within the allowed number of status polls."""


def run_sync(coroutine):
    """Run a coroutine that never suspends (the model's and a link's) and return its result."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the coroutine suspended; run it under asyncio or cocotb instead")


def _check_address(address, count=1):
    if (not isinstance(address, (int, np.integer)) or isinstance(address, bool)
            or not 0 <= address <= (1 << 32) - 4 * count or address % 4):
        raise ValueError(f"Address must be a word-aligned integer from 0 to 2**32 - 4, "
                         f"not {address!r}")
    return int(address)


def _check_word(value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
            or not 0 <= value <= _MASK:
        raise ValueError(f"Word must be an integer from 0 to 2**32 - 1, not {value!r}")
    return int(value)


class RegisterAccess:
    """32-bit register access at byte addresses; the layer each backend implements.

    Subclasses implement :meth:`_read32` and :meth:`_write32` (raising :class:`HostBusError` for a
    rejected access) and may override :meth:`_read_block` / :meth:`_write_block` to move blocks
    faster than word by word.
    """

    async def read32(self, address):
        """Return the word at byte ``address`` (word-aligned)."""
        return await self._read32(_check_address(address))

    async def write32(self, address, value):
        """Write ``value`` (0 to 2**32 - 1) to byte ``address`` (word-aligned)."""
        await self._write32(_check_address(address), _check_word(value))

    async def read_block(self, address, count):
        """Return ``count`` consecutive words from byte ``address`` as a list of ints."""
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"Count must be a non-negative integer, not {count!r}")
        if not count:
            return []
        return await self._read_block(_check_address(address, count), int(count))

    async def write_block(self, address, words):
        """Write ``words`` to consecutive words from byte ``address``."""
        words = [_check_word(w) for w in words]
        if words:
            await self._write_block(_check_address(address, len(words)), words)

    async def _read32(self, address):
        raise NotImplementedError

    async def _write32(self, address, value):
        raise NotImplementedError

    async def _read_block(self, address, count):
        return [await self._read32(address + 4 * k) for k in range(count)]

    async def _write_block(self, address, words):
        for k, word in enumerate(words):
            await self._write32(address + 4 * k, word)


class ModelBackend(RegisterAccess):
    """The host register map of docs/isa.md over the model :class:`~fetta.sim.model.Machine`.

    Accesses are answered as the RTL answers them, including which ones fail: outside the windows
    or beyond the configured sizes, unknown CSR offsets, writes to read-only CSRs. A write of
    START runs the program to its end at once (the model has no BUSY phase), so the memory windows
    are never refused for being busy.

    Parameters
    ----------
    machine : Machine or AcceleratorConfig
        The model to drive, or a configuration to build a fresh one from.
    """

    def __init__(self, machine):
        if isinstance(machine, AcceleratorConfig):
            machine = Machine(machine)
        if not isinstance(machine, Machine):
            raise TypeError(f"Model backend needs a Machine or an AcceleratorConfig, "
                            f"not {machine!r}")
        self._machine = machine
        c = machine.config
        dp = machine.datapath
        self._entry = 0
        # Route words as the RTL's memories hold them (whole words, padding included).
        self._dist_words = dp.dist_words
        self._red_words = dp.red_words
        self._dist_raw = [0] * c.dist_routes
        self._red_raw = [0] * c.red_routes
        self._sizes = {
            "CSR": WINDOWS["CSR"][1] // 4,
            "PROGRAM": 2 * c.prog_depth,
            "DIST_ROUTES": dp.dist_words * c.dist_routes,
            "RED_ROUTES": dp.red_words * c.red_routes,
            "SCRATCHPAD": c.regions * c.depth * c.lanes,
        }
        self._csr_by_offset = {offset: (name, access) for name, (offset, access, _) in CSR.items()}

    @property
    def machine(self):
        return self._machine

    def _locate(self, address, write):
        for name, (base, _) in WINDOWS.items():
            offset = (address - base) // 4
            if address >= base and offset < self._sizes[name]:
                return name, offset
        raise HostBusError(address, write=write, detail="outside every window")

    def _csr_values(self):
        m, c, dp = self._machine, self._machine.config, self._machine.datapath
        k = m.counters
        values = {
            "ID": isa.ID_VALUE, "LANES": c.lanes, "WIDTH": c.width, "ACC_WIDTH": c.acc_width,
            "REGIONS": c.regions, "DEPTH": c.depth, "LOOP_LEVELS": c.loop_levels,
            "PROG_DEPTH": c.prog_depth, "DIST_ROUTES": c.dist_routes, "RED_ROUTES": c.red_routes,
            "DIST_WORDS": dp.dist_words, "RED_WORDS": dp.red_words, "CTRL": 0,
            "STATUS": int(m.done) << 1 | int(m.error) << 2 | int(m.qsat) << 3,
            "CAUSE": Cause(m.cause).value, "ERR_PC": m.err_pc, "ENTRY": self._entry, "PC": m.pc,
            "SEED": m.seed,
        }
        for name, value in (("CYCLES", k.cycles), ("BUSY", k.busy), ("MACS", k.macs),
                            ("STALLS", k.stalls)):
            values[f"{name}_LO"] = value & _MASK
            values[f"{name}_HI"] = (value >> 32) & _MASK
        return values

    async def _read32(self, address):
        window, offset = self._locate(address, False)
        m = self._machine
        if window == "CSR":
            if 4 * offset not in self._csr_by_offset:
                raise HostBusError(address, write=False, detail="no such register")
            name, _ = self._csr_by_offset[4 * offset]
            return self._csr_values()[name] & _MASK
        if window == "PROGRAM":
            return (m.program[offset >> 1] >> (32 * (offset & 1))) & _MASK
        if window == "DIST_ROUTES":
            entry, part = divmod(offset, self._dist_words)
            return (self._dist_raw[entry] >> (32 * part)) & _MASK
        if window == "RED_ROUTES":
            entry, part = divmod(offset, self._red_words)
            return (self._red_raw[entry] >> (32 * part)) & _MASK
        lanes, depth = m.config.lanes, m.config.depth
        region, rest = divmod(offset, depth * lanes)
        row, lane = divmod(rest, lanes)
        return int(m.scratchpad[region, row, lane]) & _MASK

    async def _write32(self, address, value):
        window, offset = self._locate(address, True)
        m, dp = self._machine, self._machine.datapath
        if window == "CSR":
            if 4 * offset not in self._csr_by_offset:
                raise HostBusError(address, write=True, detail="no such register")
            name, access = self._csr_by_offset[4 * offset]
            if access == "ro":
                raise HostBusError(address, write=True, detail=f"{name} is read-only")
            if name == "ENTRY":
                self._entry = value & 0xFFFF
            elif name == "SEED":
                m.seed = value
            elif name == "CTRL":
                # As in the RTL, START in the same write as CLEAR still sees the old ERROR.
                start = value & 1 and not m.error
                if value & 2:
                    m.clear()
                if start:
                    m.run(entry=self._entry)
            return
        if window == "PROGRAM":
            shift = 32 * (offset & 1)
            word = m.program[offset >> 1]
            m.program[offset >> 1] = (word & ~(_MASK << shift)) | value << shift
        elif window == "DIST_ROUTES":
            entry, part = divmod(offset, self._dist_words)
            raw = self._dist_raw[entry] & ~(_MASK << 32 * part) | value << 32 * part
            self._dist_raw[entry] = raw
            m.set_dist_route(entry, raw & ((1 << dp.dist_bits) - 1))
        elif window == "RED_ROUTES":
            entry, part = divmod(offset, self._red_words)
            raw = self._red_raw[entry] & ~(_MASK << 32 * part) | value << 32 * part
            self._red_raw[entry] = raw
            m.set_red_route(entry, raw & ((1 << dp.red_entry_bits) - 1))
        else:
            c = m.config
            region, rest = divmod(offset, c.depth * c.lanes)
            row, lane = divmod(rest, c.lanes)
            low = value & ((1 << c.width) - 1)
            m.scratchpad[region, row, lane] = low - (1 << c.width) if low >> (c.width - 1) else low


class RTLBackend(RegisterAccess):
    """The Verilated RTL behind its AXI4-Lite port, driven by cocotbext-axi inside a cocotb test.

    Blocks are moved as one multi-word access of the master, which pipelines the single-word AXI
    transactions. With ``pause`` > 0, every channel (AW, W, B, AR, R) is paused on a random
    fraction ``pause`` of the cycles (back-pressure on B and R, idle cycles on the others).

    Parameters
    ----------
    dut : cocotb handle
        The top; its AXI4-Lite ports are ``<prefix>__awaddr`` and so on.
    clock, reset : cocotb handles, optional
        Default ``dut.clk`` and ``dut.rst`` (active high).
    prefix : str
        Name of the AXI4-Lite port.
    pause : float
        Probability, from 0 to 1 (excluded), that a channel is paused in a cycle.
    seed : int
        Seed of the pause patterns.
    """

    def __init__(self, dut, *, clock=None, reset=None, prefix="axi", pause=0.0, seed=0):
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster
        if not isinstance(pause, (int, float)) or not 0 <= pause < 1:
            raise ValueError(f"Pause probability must be from 0 to 1 (excluded), not {pause!r}")
        clock = dut.clk if clock is None else clock
        reset = dut.rst if reset is None else reset
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix, bus_separator="__"),
                                    clock, reset)
        if pause:
            rng = np.random.default_rng(seed)
            for channel in (self.master.write_if.aw_channel, self.master.write_if.w_channel,
                            self.master.write_if.b_channel, self.master.read_if.ar_channel,
                            self.master.read_if.r_channel):
                channel.set_pause_generator(_pauses(np.random.default_rng(rng.integers(1 << 32)),
                                                    pause))

    async def _read32(self, address):
        return (await self._read_block(address, 1))[0]

    async def _write32(self, address, value):
        await self._write_block(address, [value])

    async def _read_block(self, address, count):
        from cocotbext.axi import AxiResp
        got = await self.master.read(address, 4 * count)
        if got.resp != AxiResp.OKAY:
            raise HostBusError(address, write=False, detail=f"{got.resp.name} in a block of {count}")
        return [int.from_bytes(got.data[4 * k:4 * k + 4], "little") for k in range(count)]

    async def _write_block(self, address, words):
        from cocotbext.axi import AxiResp
        data = b"".join(w.to_bytes(4, "little") for w in words)
        got = await self.master.write(address, data)
        if got.resp != AxiResp.OKAY:
            raise HostBusError(address, write=True,
                               detail=f"{got.resp.name} in a block of {len(words)}")


def _pauses(rng, p):
    while True:
        yield bool(rng.random() < p)


def _bus_rejection(error):
    """Whether a link error reports a rejected access (its ``status`` has a bus error bit)."""
    status = getattr(error, "status", None)
    bus_errors = BridgeStatus.SLVERR | BridgeStatus.DECERR | BridgeStatus.RANGE
    return (isinstance(status, int) and not status & BridgeStatus.ABORT
            and bool(status & bus_errors))


class LinkBackend(RegisterAccess):
    """Any blocking link with ``read32``, ``write32``, ``read_block`` and ``write_block``.

    The board's :class:`fetta.boards.host_link.UARTLink` is one: it translates the same register
    accesses into serial frames. A link error whose ``status`` (a
    :class:`~fetta.hw.uart_bridge.BridgeStatus`) reports SLVERR, DECERR or an address out of range
    becomes :class:`HostBusError`; other errors (timeouts, framing) propagate unchanged.

    Parameters
    ----------
    link : object
        The link.
    rejected : callable, optional
        ``rejected(exception) -> bool`` decides which exceptions of the link are rejected
        accesses (default: the status test above).
    """

    def __init__(self, link, *, rejected=_bus_rejection):
        for name in ("read32", "write32", "read_block", "write_block"):
            if not callable(getattr(link, name, None)):
                raise TypeError(f"Link must have a {name}() method, not {link!r}")
        self.link = link
        self._rejected = rejected

    def _call(self, address, write, method, *args):
        try:
            return method(address, *args)
        except Exception as e:
            if isinstance(e, HostBusError) or not self._rejected(e):
                raise
            raise HostBusError(address, write=write, detail=str(e)) from e

    async def _read32(self, address):
        return int(self._call(address, False, self.link.read32))

    async def _write32(self, address, value):
        self._call(address, True, self.link.write32, value)

    async def _read_block(self, address, count):
        return [int(w) for w in self._call(address, False, self.link.read_block, count)]

    async def _write_block(self, address, words):
        self._call(address, True, self.link.write_block, words)


@dataclasses.dataclass(frozen=True)
class Status:
    """The ``STATUS`` register, decoded."""
    busy: bool
    done: bool
    error: bool
    qsat: bool

    @classmethod
    def from_word(cls, word):
        return cls(busy=bool(word & 1), done=bool(word & 2), error=bool(word & 4),
                   qsat=bool(word & 8))


class Driver:
    """The accelerator seen from the host, through any :class:`RegisterAccess` backend.

    Parameters
    ----------
    backend : RegisterAccess
    config : AcceleratorConfig
        The accelerator's configuration; :meth:`connect` reads it from the CSRs instead.
    """

    def __init__(self, backend, config):
        if not isinstance(backend, RegisterAccess):
            raise TypeError(f"Backend must be a RegisterAccess, not {backend!r}")
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        self._backend = backend
        self._config = config
        self._datapath = Datapath(config)

    @classmethod
    async def connect(cls, backend):
        """Check the ``ID`` register and build a driver from the configuration CSRs."""
        ident = await backend.read32(CSR["ID"][0])
        if ident != isa.ID_VALUE:
            raise IOError(f"ID register reads {ident:#010x}, not {isa.ID_VALUE:#010x}: "
                          f"not an accelerator")
        names = ("LANES", "WIDTH", "ACC_WIDTH", "REGIONS", "DEPTH", "LOOP_LEVELS",
                 "PROG_DEPTH", "DIST_ROUTES", "RED_ROUTES")
        values = {name.lower(): await backend.read32(CSR[name][0]) for name in names}
        driver = cls(backend, AcceleratorConfig(**values))
        for name, want in (("DIST_WORDS", driver._datapath.dist_words),
                           ("RED_WORDS", driver._datapath.red_words)):
            got = await backend.read32(CSR[name][0])
            if got != want:
                raise IOError(f"{name} reads {got}, but this software expects {want}")
        return driver

    @property
    def backend(self):
        return self._backend

    @property
    def config(self):
        return self._config

    async def _csr_read(self, name):
        return await self._backend.read32(CSR[name][0])

    async def _csr_write(self, name, value):
        await self._backend.write32(CSR[name][0], value)

    # Loading.

    async def load_program(self, words, *, at=0):
        """Write 64-bit instruction ``words`` into program memory from instruction ``at``."""
        words = [int(w) for w in words]
        depth = self._config.prog_depth
        if not isinstance(at, int) or at < 0 or at + len(words) > depth:
            raise ValueError(f"A program of {len(words)} instructions at {at!r} does not fit "
                             f"prog_depth = {depth}")
        for w in words:
            if not 0 <= w < 1 << isa.INSTR_WIDTH:
                raise ValueError(f"Instruction words must be 64-bit unsigned, not {w!r}")
        halves = [h for w in words for h in (w & _MASK, w >> 32)]
        await self._backend.write_block(WINDOWS["PROGRAM"][0] + 8 * at, halves)

    async def load_routes(self, *, dist=None, red=None):
        """Write route table entries: ``dist`` and ``red`` map entry numbers to entry bits.

        Reduction entries are packed as :meth:`fetta.hw.accelerator.Datapath.pack_red_entry` does.
        """
        dp, c = self._datapath, self._config
        for window, table, size, words, check in (
                ("DIST_ROUTES", dist, c.dist_routes, dp.dist_words, dp.check_dist_bits),
                ("RED_ROUTES", red, c.red_routes, dp.red_words, dp.check_red_entry)):
            for entry, bits in (table or {}).items():
                if not isinstance(entry, int) or not 0 <= entry < size:
                    raise ValueError(f"{window} entry must be from 0 to {size - 1}, not {entry!r}")
                bits = check(int(bits))
                await self._backend.write_block(
                    WINDOWS[window][0] + 4 * words * entry,
                    [(bits >> (32 * j)) & _MASK for j in range(words)])

    # Scratchpad.

    def _row_address(self, region, row):
        c = self._config
        if not isinstance(region, (int, np.integer)) or not 0 <= region < c.regions:
            raise ValueError(f"Region must be from 0 to {c.regions - 1}, not {region!r}")
        return WINDOWS["SCRATCHPAD"][0] + 4 * ((int(region) * c.depth + int(row)) * c.lanes)

    def _check_rows(self, row, count):
        depth = self._config.depth
        if not isinstance(row, (int, np.integer)) or row < 0 or row + count > depth:
            raise ValueError(f"Rows {row!r} to {row!r} + {count} do not fit depth = {depth}")

    async def write_rows(self, region, row, values):
        """Write ``values`` (signed W-bit integers, shape ``(rows, lanes)``) from ``row``."""
        c = self._config
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != c.lanes:
            raise ValueError(f"Rows must have shape (rows, {c.lanes}), not {values.shape!r}")
        # int() would silently truncate fractions.
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"Row values must be integers, not an array of {values.dtype}")
        bad = values[(values < c.word_min) | (values > c.word_max)]
        if bad.size:
            raise ValueError(f"Row values must be signed {c.width}-bit integers, from "
                             f"{c.word_min} to {c.word_max}, not {int(bad[0])!r}")
        self._check_rows(row, len(values))
        words = [int(v) & _MASK for v in values.reshape(-1)]
        await self._backend.write_block(self._row_address(region, row), words)

    async def read_rows(self, region, row, count):
        """Return ``count`` rows from ``row`` of ``region``: int64 of shape ``(count, lanes)``."""
        self._check_rows(row, count)
        words = np.array(await self._backend.read_block(self._row_address(region, row),
                                                        count * self._config.lanes),
                         dtype=np.int64)
        words = np.where(words >= 1 << 31, words - (1 << 32), words)
        return words.reshape(count, self._config.lanes)

    async def write_tensor(self, array, layout, *, region=None, base_row=None):
        """Write ``array`` where its :class:`fetta.search.layout.TensorLayout` places it.

        ``region`` and ``base_row`` override the layout's own. Only the rows the tensor occupies
        are written (with zeros on their padding lanes); rows between them, which may belong to
        other tensors, are left alone.
        """
        layout = layout.placed(region=region, base=base_row)
        layout.check_fits(self._config)
        rows = layout.pack(array)
        used = np.unique(layout.positions()[0])
        for first, last in _runs(used):
            await self.write_rows(layout.region, layout.base + first, rows[first:last + 1])

    async def read_tensor(self, layout, *, region=None, base_row=None):
        """Return the tensor that ``layout`` describes (``region``/``base_row`` override its own)."""
        layout = layout.placed(region=region, base=base_row)
        layout.check_fits(self._config)
        rows = np.zeros((layout.rows_needed, self._config.lanes), dtype=np.int64)
        for first, last in _runs(np.unique(layout.positions()[0])):
            rows[first:last + 1] = await self.read_rows(layout.region, layout.base + first,
                                                        last + 1 - first)
        return layout.unpack(rows)

    # Control.

    async def start(self, *, entry=0, seed=None):
        """Set ``ENTRY`` (and ``SEED`` if given) and START.

        Raises :exc:`RuntimeError` if the accelerator is busy or holds an error (START would be
        ignored): :meth:`clear` first.
        """
        status = await self.status()
        if status.busy or status.error:
            raise RuntimeError(f"START refused: the accelerator is "
                               f"{'busy' if status.busy else 'in error'} ({status})")
        await self._csr_write("ENTRY", entry)
        if seed is not None:
            await self._csr_write("SEED", seed)
        await self._csr_write("CTRL", 1)

    async def status(self):
        """Return the decoded ``STATUS`` register."""
        return Status.from_word(await self._csr_read("STATUS"))

    async def wait(self, timeout=1 << 20):
        """Poll ``STATUS`` until DONE, at most ``timeout`` times; return the final :class:`Status`.

        Raises :class:`DriverTimeout` if DONE does not come.
        """
        for _ in range(timeout):
            status = await self.status()
            if status.done:
                return status
        raise DriverTimeout(f"no DONE after {timeout} status polls")

    async def counters(self):
        """Return the performance counters: ``{"cycles", "busy", "macs", "stalls"}`` -> int."""
        out = {}
        for name in ("CYCLES", "BUSY", "MACS", "STALLS"):
            lo = await self._csr_read(f"{name}_LO")
            hi = await self._csr_read(f"{name}_HI")
            out[name.lower()] = lo | hi << 32
        return out

    async def error(self):
        """Return ``None`` if no error is flagged, else ``(cause, err_pc)`` with a :class:`Cause`."""
        if not (await self.status()).error:
            return None
        return Cause(await self._csr_read("CAUSE")), await self._csr_read("ERR_PC")

    async def clear(self):
        """CLEAR: drop DONE, ERROR, the cause and the sticky flags."""
        await self._csr_write("CTRL", 2)

    async def run(self, *, entry=0, seed=None, timeout=1 << 20):
        """START, wait for DONE; return ``(status, counters, error)``."""
        await self.start(entry=entry, seed=seed)
        status = await self.wait(timeout)
        return status, await self.counters(), await self.error()


def _runs(sorted_rows):
    """Maximal runs of consecutive integers in a sorted array, as ``(first, last)`` pairs."""
    rows = [int(r) for r in sorted_rows]
    runs = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return [tuple(run) for run in runs]


async def describe(driver):
    """Return a text report of the accelerator: identity, configuration, status and counters."""
    status = await driver.status()
    error = await driver.error()
    counters = await driver.counters()
    c = driver.config
    lines = [
        f"accelerator: L = {c.lanes}, W = {c.width}, accumulators {c.acc_width} bits, "
        f"{c.regions} regions x {c.depth} rows, {c.loop_levels} loop levels",
        f"program memory {c.prog_depth} instructions, route tables {c.dist_routes} + "
        f"{c.red_routes} entries",
        "status: " + (", ".join(name for name in ("busy", "done", "error", "qsat")
                                 if getattr(status, name)) or "idle"),
    ]
    if error is not None:
        lines.append(f"error: {error[0].name} at instruction {error[1]}")
    lines.append("counters: " + ", ".join(f"{name} {value}" for name, value in counters.items()))
    return "\n".join(lines) + "\n"


def register(subparsers):
    """Add the ``host`` subcommand: report an accelerator's state through a driver backend."""
    p = subparsers.add_parser(
        "host", help="show an accelerator's configuration, status and counters",
        description="Connect to an accelerator (a board over its serial link, or the model) and "
                    "print its configuration, status, error cause and performance counters.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="DEVICE", help="the board's serial port")
    where.add_argument("--model", action="store_true", help="a fresh model instead of a board")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--config", default=None, metavar="TOML",
                   help="configuration of the model (default: the default configuration)")
    p.add_argument("--clear", action="store_true", help="write CLEAR after the report")
    p.set_defaults(run=_run_host)
    return p


def _run_host(args):
    if args.model:
        config = (AcceleratorConfig.from_toml(args.config) if args.config is not None
                  else AcceleratorConfig())
        _report(ModelBackend(config), args.clear)
    else:
        from ..boards.host_link import UARTLink
        with UARTLink.open(args.serial, baud=args.baud) as link:
            _report(LinkBackend(link), args.clear)
    return 0


def _report(backend, clear):
    driver = run_sync(Driver.connect(backend))
    print(run_sync(describe(driver)), end="")
    if clear:
        run_sync(driver.clear())
