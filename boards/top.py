"""The board-independent top: a UART, the UART-to-AXI4-Lite bridge and the design it serves."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hw.host_port import AXI4LiteSignature, HostPortExample
from ..hw.uart import UARTRx, UARTTx
from ..hw.uart_bridge import UARTBridge

__all__ = ["LinkTop", "make_target", "TARGETS"]

#: Designs a board can carry behind its host link.
TARGETS = ("accelerator", "example")


def make_target(name, *, config=None):
    """Return a fresh instance of target design ``name`` (a component with an ``axi`` port).

    ``"accelerator"`` is :class:`~fetta.hw.accelerator.AcceleratorSystem` (the accelerator
    behind its host port) with ``config`` (an :class:`~fetta.hw.config.AcceleratorConfig`,
    default: the default configuration).
    ``"example"`` is the host port's example target (three registers and a 256-word memory), a
    small design for checking a board's link.
    """
    if name == "example":
        return HostPortExample(depth=256)
    if name == "accelerator":
        from ..hw.accelerator import AcceleratorSystem
        from ..hw.config import AcceleratorConfig
        return AcceleratorSystem(AcceleratorConfig() if config is None else config)
    raise ValueError(f"Target must be one of {TARGETS!r}, not {name!r}")


class LinkTop(wiring.Component):
    """A serial host link in front of ``target``: UART receiver and transmitter, bridge, target.

    This is what every board carries in its ``sync`` domain, and what the RTL tests simulate
    through its two serial pins.

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit (see :func:`~fetta.hw.uart.uart_divisor`).
    timeout : int
        The bridge's request timeout in cycles (see :class:`~fetta.hw.uart_bridge.UARTBridge`).
    target : wiring.Component
        The design behind the bridge: it must have a member ``axi`` of signature
        ``In(AXI4LiteSignature(...))``.

    Members
    -------
    rx : ``In(1, init=1)``
        Serial line from the host.
    tx : ``Out(1, init=1)``
        Serial line to the host.
    """

    def __init__(self, *, divisor, timeout, target):
        member = getattr(target, "signature", None)
        member = (member.members["axi"] if isinstance(member, wiring.Signature)
                  and "axi" in member.members else None)
        if (member is None or not member.is_signature
                or not isinstance(member.signature, AXI4LiteSignature) or member.flow != In):
            raise TypeError(f"Target must be a component with an 'axi' member of signature "
                            f"In(AXI4LiteSignature(...)), not {target!r}")
        self._uart_rx = UARTRx(divisor=divisor)
        self._uart_tx = UARTTx(divisor=divisor)
        self._bridge = UARTBridge(addr_width=member.signature.addr_width, timeout=timeout)
        self._target = target
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    @property
    def divisor(self):
        return self._uart_rx.divisor

    @property
    def timeout(self):
        return self._bridge.timeout

    @property
    def addr_width(self):
        return self._bridge.addr_width

    @property
    def ident(self):
        return self._bridge.ident

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = self._uart_rx
        m.submodules.uart_tx = tx = self._uart_tx
        m.submodules.bridge = bridge = self._bridge
        m.submodules.target = target = self._target
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, bridge.i)
        wiring.connect(m, bridge.o, tx.i)
        wiring.connect(m, bridge.axi, target.axi)
        return m
