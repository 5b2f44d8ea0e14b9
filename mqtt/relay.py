"""The box's one MQTT session, lent to the station: card lookups travel through the uplink's connection.

The broker takes a certificate's CN as the client id, so a box has exactly one session; the uplink owns it.
The station (another process, same user) asks the central service through a Unix ``SOCK_SEQPACKET`` socket
in the state directory (``uplink.sock``, mode 0600 under the daemons' umask). Every datagram is one frame:

=========================  ======================  ============================================================
frame                      direction               meaning
=========================  ======================  ============================================================
``P`` topic NUL payload    station → uplink        publish this signed request (QoS 1); only the box's own
                                                   ``req/<kind>`` topics of :attr:`RelayServer.allowed` pass
``M`` topic NUL payload    uplink → station        a message the uplink received on the box's ``rsp/+``
``C1`` / ``C0``            uplink → station        the uplink is / is not connected to the broker
=========================  ======================  ============================================================

The station signs its requests and verifies the answers itself (the uplink passes bytes through), so the
socket adds no trust: it only lets the station reach the broker without a second client id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

SOCKET_NAME = "uplink.sock"
MAX_FRAME = 64 * 1024
MAX_CLIENTS = 8
RETRY = 1.0
_MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def _frame(kind: bytes, topic: str, payload: bytes) -> bytes:
    return kind + topic.encode() + b"\0" + payload


def _split(frame: bytes) -> tuple[str, bytes] | None:
    topic, sep, payload = frame[1:].partition(b"\0")
    if not sep:
        return None
    try:
        return topic.decode("utf-8"), payload
    except UnicodeDecodeError:
        return None


def _check_path(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_PATH:
        raise ValueError(f"{path}: longer than a Unix socket path may be ({_MAX_PATH} bytes)")


class RelayServer:
    """The uplink's side: accepts the station's frames and forwards answers and connection state to it."""

    def __init__(self, path: Path, allowed: frozenset[str], publish: Callable[[str, bytes], None]) -> None:
        self.path, self.allowed, self._publish = Path(path), allowed, publish
        self._sock: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._connected = False
        self._stop = threading.Event()
        self.refused = 0

    def start(self) -> RelayServer:
        """Bind the socket (replacing a stale one) and accept in a background thread."""
        _check_path(self.path)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o077)  # only the box's own user may connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(MAX_CLIENTS)
        self._sock = sock
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                if len(self._clients) >= MAX_CLIENTS:
                    conn.close()
                    continue
                self._clients.add(conn)
                state = b"C1" if self._connected else b"C0"
            self._send(conn, state)
            threading.Thread(target=self._serve, args=(conn,), name="relay-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                frame, _, flags, _ = conn.recvmsg(MAX_FRAME + 1)
                if not frame:
                    return
                parts = _split(frame) if frame[:1] == b"P" and not flags & socket.MSG_TRUNC else None
                if parts is None or parts[0] not in self.allowed:
                    self.refused += 1
                    logger.warning("relay: refused a frame from the station (%d bytes)", len(frame))
                    continue
                self._publish(*parts)
        except OSError:
            return
        finally:
            self._drop(conn)

    def _send(self, conn: socket.socket, frame: bytes) -> None:
        try:
            conn.send(frame, socket.MSG_DONTWAIT)
        except OSError:  # a station that does not read (or is gone) loses its place, not the uplink's time
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _broadcast(self, frame: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for conn in clients:
            self._send(conn, frame)

    def deliver(self, topic: str, payload: bytes) -> None:
        """Pass a message received on the box's ``rsp/+`` to the station."""
        if len(payload) + len(topic) < MAX_FRAME:
            self._broadcast(_frame(b"M", topic, payload))

    def set_connected(self, connected: bool) -> None:
        """Tell the station whether requests can go out now."""
        with self._lock:
            self._connected = connected
        self._broadcast(b"C1" if connected else b"C0")

    def stop(self) -> None:
        """Close the socket and every station connection."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.close()
        self.path.unlink(missing_ok=True)


class RelayClient:
    """The station's side: connects (and reconnects) to the uplink's socket; ``connected`` is set while the
    socket is up and the uplink has the broker."""

    def __init__(self, path: Path, on_message: Callable[[str, bytes], None]) -> None:
        self.path, self.on_message = Path(path), on_message
        self.connected = threading.Event()
        self.attached = threading.Event()  # the socket is up (the uplink runs), whether or not it has the broker
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RelayClient:
        """Connect in the background, retrying every second."""
        _check_path(self.path)
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                self._stop.wait(RETRY)
                continue
            with self._lock:
                self._sock = sock
            self.attached.set()
            try:
                self._read(sock)
            finally:
                self.attached.clear()
                self.connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
            self._stop.wait(RETRY)

    def _read(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                frame = sock.recv(MAX_FRAME + 1)
            except OSError:
                return
            if not frame:
                return
            if frame == b"C1":
                self.connected.set()
            elif frame == b"C0":
                self.connected.clear()
            elif frame[:1] == b"M" and (parts := _split(frame)) is not None:
                try:
                    self.on_message(*parts)
                except Exception:  # the station's handler must not end the relay
                    logger.exception("relay: answer not handled")

    def publish(self, topic: str, payload: bytes) -> bool:
        """Hand a signed request to the uplink; False when the uplink is not reachable."""
        with self._lock:
            sock = self._sock
        if sock is None:
            return False
        try:
            sock.send(_frame(b"P", topic, payload))
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """Disconnect and stop reconnecting."""
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
