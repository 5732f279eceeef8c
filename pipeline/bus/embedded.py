"""An in-process MQTT broker (amqtt) for `edgeline demo` and tests, when no broker URL is configured.

Responsible for: running an amqtt broker on a background thread with its own asyncio loop, on a free
local port, anonymous access, and stopping it cleanly.
Not responsible for: production use. amqtt speaks MQTT 3.1.1 only (no MQTT 5), has no shared
subscriptions (`$share/...` filters), keeps sessions only in memory and is much slower than Mosquitto
(~2,000 QoS 1 messages/s). Clients must therefore connect with `shared_subscriptions=False`
(`EmbeddedBroker.shared_subscriptions`) and run a single copy of each worker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from amqtt.broker import Broker

from pipeline.bus.ports import BusError

log = logging.getLogger(__name__)

_ANONYMOUS = "amqtt.plugins.authentication.AnonymousAuthPlugin"


class EmbeddedBroker:
    """An amqtt broker serving `mqtt://host:port` from a daemon thread of this process."""

    shared_subscriptions = False  # amqtt ignores `$share/...` semantics; see module docstring
    protocol = "3.1.1"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None
        self._host = ""
        self._port = 0

    @property
    def url(self) -> str:
        """The broker URL for `PahoBus.from_url`, e.g. `mqtt://127.0.0.1:40123`."""
        if not self._port:
            raise BusError("embedded MQTT broker is not running: call start() first")
        return f"mqtt://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> str:
        """Start listening on `host:port` (0 picks a free port) and return the broker URL."""
        if self._thread is not None:
            raise BusError("embedded MQTT broker is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="edgeline-embedded-mqtt", daemon=True)
        thread.start()
        self._loop, self._thread, self._host = loop, thread, host
        future = asyncio.run_coroutine_threadsafe(self._start(host, port), loop)
        try:
            self._port = future.result(timeout)
        except (FutureTimeout, OSError, Exception) as exc:
            self._stop_loop()
            raise BusError(f"cannot start the embedded MQTT broker on {host}:{port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s", self.url)
        return self.url

    async def _start(self, host: str, port: int) -> int:
        broker = Broker(_config(host, port), loop=asyncio.get_running_loop())
        await broker.start()
        self._broker = broker
        server = broker._servers["default"].instance  # amqtt exposes no public accessor for the bound port
        sockets: list[Any] = list(getattr(server, "sockets", None) or [])
        return int(sockets[0].getsockname()[1])

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down (clients see their connection dropped) and end its thread."""
        loop, broker = self._loop, self._broker
        if loop is None:
            return
        if broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout)
            except Exception as exc:  # shutdown is best effort: the loop is torn down regardless
                log.warning("embedded MQTT broker did not shut down cleanly: %s", exc)
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
            if not thread.is_alive():
                loop.close()
        self._loop = self._thread = self._broker = None
        self._port = 0

    def __enter__(self) -> EmbeddedBroker:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(host: str, port: int) -> dict[str, Any]:
    """Return amqtt's configuration: one TCP listener, anonymous clients, no $SYS or packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {_ANONYMOUS: {"allow_anonymous": True}},
    }
