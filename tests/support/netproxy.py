"""A TCP proxy a test controls: the network between a box and the broker.

:class:`NetProxy` listens on a loopback port and forwards every connection to the upstream address. The
test switches it between four states:

* :meth:`~NetProxy.forward` / :meth:`~NetProxy.restore`: bytes flow both ways (restore also reopens the
  listening socket after a cut and releases stalled traffic);
* :meth:`~NetProxy.cut`: every open connection is closed and new ones are refused (the port is closed,
  so a client sees ``ECONNREFUSED``), like a cable pulled or a router rebooting;
* :meth:`~NetProxy.stall`: connections stay open and new ones are accepted, but nothing is forwarded
  until :meth:`~NetProxy.restore`: a link that silently stops carrying traffic (what keepalives detect).

>>> with NetProxy(("127.0.0.1", broker_port)) as proxy:                 # doctest: +SKIP
...     box_connects_to(proxy.port)
...     proxy.cut(); time.sleep(2); proxy.restore()
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

logger = logging.getLogger(__name__)

FORWARD, CUT, STALL = "forward", "cut", "stall"


class NetProxy:
    """Threaded TCP forwarder with cut / stall / restore on command."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.mode = FORWARD
        self.connections = 0  # accepted so far
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False

    # -- control -------------------------------------------------------------------------------------
    def start(self) -> NetProxy:
        """Listen (on a free port unless one was given) and start accepting."""
        self._listen()
        return self

    def cut(self) -> None:
        """Close every connection and stop listening: clients are refused until :meth:`restore`."""
        with self._lock:
            self.mode = CUT
            self._flowing.set()  # let stalled pumps run into their closed sockets and exit
            listener, self._listener = self._listener, None
            socks, self._socks = self._socks, set()
        if listener is not None:
            _close(listener)
        for s in socks:
            _close(s)
        logger.info("proxy %d: cut (%d sockets closed)", self.port, len(socks))

    def stall(self) -> None:
        """Keep connections open but forward nothing until :meth:`restore`."""
        with self._lock:
            self.mode = STALL
            self._flowing.clear()
        logger.info("proxy %d: stalled", self.port)

    def restore(self) -> None:
        """Forward again: listen again after a cut, release the traffic held by a stall."""
        with self._lock:
            was = self.mode
            self.mode = FORWARD
            self._flowing.set()
        if was == CUT:
            self._listen()
        logger.info("proxy %d: forwarding (was %s)", self.port, was)

    forward = restore

    def close(self) -> None:
        """Stop for good."""
        self._closed = True
        self.cut()

    def __enter__(self) -> NetProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------
    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        with self._lock:
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), name=f"proxy-{self.port}", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # listener closed by cut() or close()
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._flowing.wait()  # a stalled link does not even reach the other side
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        with self._lock:
            if self.mode == CUT or self._closed:
                _close(client)
                _close(upstream)
                return
            self._socks.update((client, upstream))
            self.connections += 1
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
