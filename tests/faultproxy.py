"""A TCP proxy on loopback that misbehaves on request: the link between a kiosk and its hub.

It forwards bytes without looking at them (TLS passes through whole, so the
kiosk still checks the hub's pinned certificate), and can:

- refuse connections (its port is closed: the kiosk sees ECONNREFUSED);
- cut the connection carrying the N-th byte from the kiosk (``drop_after``): a link that
  drops in the middle of a body;
- throttle both directions to B bytes per second (``throttle``): a poor 2G link;
- cut every open connection at once (``cut_all``): the hub's host vanished.

Every thread is named and joined at :meth:`close`.

Example::

    with FaultProxy(hub_port) as proxy:
        proxy.drop_after(50_000)      # the next connection breaks mid-body
        client = HubClient(f"https://127.0.0.1:{proxy.port}", cert)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

_CHUNK = 16 * 1024


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._countdown: int | None = None  # kiosk -> hub bytes until the cut
        self._rate: float | None = None  # bytes per second, each direction
        self.connections = 0  # connections accepted (and forwarded)
        self.bytes_up = 0  # kiosk -> hub, forwarded, all connections
        self.bytes_down = 0
        self.drops = 0  # connections cut by drop_after
        self._listen()

    # -- faults --------------------------------------------------------------------

    def refuse(self) -> None:
        """Close the port: new connections are refused until :meth:`accept`."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)

    def accept(self) -> None:
        """Open the port again (the same number) after :meth:`refuse`."""
        if self._listener is None:
            self._listen()

    def drop_after(self, count: int | None) -> None:
        """Cut the connection that carries the ``count``-th byte kiosk -> hub from now
        (counted over every connection; None: no cut). Once."""
        with self._lock:
            self._countdown = count

    def throttle(self, bytes_per_second: float | None) -> None:
        """Forward at most this many bytes a second in each direction (None: full speed)."""
        with self._lock:
            self._rate = bytes_per_second

    def cut_all(self) -> None:
        """Cut every open connection now."""
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            _close(sock)

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.refuse()
        self.cut_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"faultproxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refuse() or close() closed the listener
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)  # the hub is down: the kiosk sees the connection end
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    _close(client)
                    _close(upstream)
                    return
                self.connections += 1
                self._sockets.update((client, upstream))
                number = self.connections
            for name, source, sink, up in (
                ("up", client, upstream, True),
                ("down", upstream, client, False),
            ):
                thread = threading.Thread(
                    target=self._pump,
                    args=(source, sink, up, (client, upstream)),
                    name=f"faultproxy-{self.port}-{number}-{name}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
            self._threads = [thread for thread in self._threads if thread.is_alive()]

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        up: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        cut = False
        try:
            while not cut:
                with self._lock:
                    rate, countdown = self._rate, self._countdown if up else None
                size = _CHUNK if rate is None else max(1, min(_CHUNK, int(rate / 20)))
                if countdown is not None:
                    size = min(size, countdown)
                data = source.recv(size)
                if not data:
                    break
                sink.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                        if self._countdown is not None:
                            self._countdown -= len(data)
                            if self._countdown <= 0:
                                self._countdown = None
                                self.drops += 1
                                cut = True
                    else:
                        self.bytes_down += len(data)
                if rate is not None:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        if cut or not up:
            for sock in pair:  # a cut, or the end of the hub's side: both go
                _close(sock)
            with self._lock:
                self._sockets.difference_update(pair)
        else:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)  # the kiosk finished sending


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
