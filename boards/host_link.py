"""The host side of the serial link: register and memory access to a board over its UART.

:class:`UARTLink` speaks the framed protocol of :mod:`fetta.hw.uart_bridge` through any object
with pyserial's ``read(n)`` / ``write(data)`` interface: a :class:`serial.Serial` on a board's
USB serial port, or a simulated port in front of the RTL simulation of the same board top.
"""

import struct

import numpy as np

from ..hw.uart_bridge import (BridgeCommand, BridgeStatus, IDENT_MAGIC, MAX_BURST,
                              PROTOCOL_VERSION)

__all__ = ["LinkError", "UARTLink"]


class LinkError(IOError):
    """A request failed: the bridge reported an error, or its answer did not arrive.

    Attributes
    ----------
    status : BridgeStatus or None
        The status byte, or ``None`` if no status arrived.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def _check_address(address, count=1):
    if not isinstance(address, (int, np.integer)) or not 0 <= address < 1 << 32 or address % 4:
        raise ValueError(f"Address must be a word-aligned integer from 0 to 2**32 - 4, "
                         f"not {address!r}")
    if address + 4 * count > 1 << 32:
        raise ValueError(f"A burst of {count} words from {address:#x} runs past 2**32")
    return int(address)


def _describe(status):
    names = [flag.name for flag in BridgeStatus if flag and status & flag]
    return " | ".join(names) or "OK"


class UARTLink:
    """Register-access layer over the UART bridge: 32-bit reads and writes at byte addresses.

    Every call is one or more complete requests; a call returns only after the status byte and
    raises :class:`LinkError` if the status is not OK (for a read, the data that arrived is in
    the exception's ``data`` attribute) or if the answer is short. Blocks longer than
    :data:`~fetta.hw.uart_bridge.MAX_BURST` words are split into several requests.

    Parameters
    ----------
    port : object
        A byte port with ``write(data)`` and ``read(n)`` (which returns fewer than ``n`` bytes on
        a timeout), and optionally ``flush()`` (wait until written bytes are sent), such as
        :class:`serial.Serial`. A request fails when no byte of its answer arrives within one
        read timeout.
    """

    def __init__(self, port):
        if not callable(getattr(port, "read", None)) or not callable(getattr(port, "write", None)):
            raise TypeError(f"Port must have read() and write() methods, not {port!r}")
        self._port = port

    @classmethod
    def open(cls, device, *, baud=115200, timeout=1.0):
        """Open serial ``device`` (e.g. ``/dev/ttyUSB0``) at ``baud`` and return a link on it."""
        import serial
        return cls(serial.Serial(device, baudrate=baud, timeout=timeout))

    @property
    def port(self):
        return self._port

    def close(self):
        close = getattr(self._port, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, data):
        self._port.write(data)
        # Wait until the request is on the line, so that the read timeout covers the answer only.
        flush = getattr(self._port, "flush", None)
        if flush is not None:
            flush()

    def _read_exact(self, n, what):
        # pyserial's timeout bounds one read() call; a long burst is read until it stops coming.
        data = bytearray()
        while len(data) < n:
            chunk = self._port.read(n - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) != n:
            # An aborted request answers with its status byte alone.
            status = BridgeStatus(data[0]) if len(data) == 1 and data[0] & BridgeStatus.ABORT else None
            detail = f": {_describe(status)}" if status is not None else ""
            raise LinkError(f"{what}: expected {n} bytes, received {len(data)}{detail}", status)
        return bytes(data)

    def _finish(self, status_byte, what, data=None):
        status = BridgeStatus(status_byte)
        if status != BridgeStatus.OK:
            error = LinkError(f"{what} failed: {_describe(status)}", status)
            error.data = data
            raise error

    def ident(self):
        """Return the bridge's identity: ``{"version": int, "addr_width": int}``.

        Raises :exc:`LinkError` if the answer is not a bridge of this protocol version.
        """
        self._send(bytes([BridgeCommand.IDENT.value]))
        data = self._read_exact(5, "IDENT")
        self._finish(data[4], "IDENT")
        word = int.from_bytes(data[:4], "little")
        if word >> 16 != IDENT_MAGIC or word & 0xFF != PROTOCOL_VERSION:
            raise LinkError(f"IDENT answered {word:#010x}: not a bridge of protocol version "
                            f"{PROTOCOL_VERSION}")
        return {"version": word & 0xFF, "addr_width": (word >> 8) & 0xFF}

    def read_block(self, address, count):
        """Read ``count`` consecutive words from byte ``address``; return a ``uint32`` array."""
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"Count must be a positive integer, not {count!r}")
        address = _check_address(address, count)
        out = np.empty(count, dtype=np.uint32)
        for start in range(0, count, MAX_BURST):
            n = min(MAX_BURST, count - start)
            base = address + 4 * start
            what = f"read of {n} words at {base:#010x}"
            self._send(struct.pack("<BIH", BridgeCommand.READ.value, base, n - 1))
            data = self._read_exact(4 * n + 1, what)
            out[start:start + n] = np.frombuffer(data[:-1], dtype="<u4")
            self._finish(data[-1], what, out[:start + n])
        return out

    def write_block(self, address, words):
        """Write the 32-bit ``words`` (a sequence or array) to consecutive words from ``address``."""
        words = np.asarray(words)
        if words.ndim != 1 or words.size == 0 or words.dtype.kind not in "iu" or (
                words.size and (words.min() < 0 or words.max() > 0xFFFFFFFF)):
            raise ValueError(f"Words must be a non-empty 1-D sequence of integers from 0 to "
                             f"2**32 - 1, not {words!r}")
        address = _check_address(address, words.size)
        words = words.astype("<u4")
        for start in range(0, words.size, MAX_BURST):
            chunk = words[start:start + MAX_BURST]
            base = address + 4 * start
            self._send(struct.pack("<BIH", BridgeCommand.WRITE.value, base, chunk.size - 1)
                       + chunk.tobytes())
            what = f"write of {chunk.size} words at {base:#010x}"
            self._finish(self._read_exact(1, what)[0], what)

    def read32(self, address):
        """Read one 32-bit word at byte ``address``."""
        return int(self.read_block(address, 1)[0])

    def write32(self, address, value):
        """Write the 32-bit ``value`` at byte ``address``."""
        if not isinstance(value, (int, np.integer)) or not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"Value must be an integer from 0 to 2**32 - 1, not {value!r}")
        self.write_block(address, [int(value)])
