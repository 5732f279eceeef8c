"""PahoBus: the Bus port over paho-mqtt 2.x, the only module of edgeline that imports paho.

Responsible for: QoS 1 publishes that block until PUBACK, manual-ack subscriptions whose handlers run
on a worker thread (pipeline.bus.inbox), persistent sessions under a stable client id (so a restarted
worker gets what was queued while it was down, and un-acked messages again), reconnecting with backoff
and re-subscribing, shared subscriptions, the last will, a background mode for processes that must run
while the broker is away (`start_background`: no error if it is unreachable, paho keeps trying),
callbacks after every (re)connect, and turning paho/socket errors into BusError messages an operator
can act on.
Not responsible for: payload encoding (pipeline.bus.cloudevents), topics (pipeline.bus.topics), the
outbox or idempotency (the service layer). Payloads are never logged: they may carry encrypted
configs; only topics and sizes are.

Delivery is at least once: a publish that timed out may still reach the broker later, and a message
whose ack was lost is redelivered, so consumers must be idempotent (DESIGN §6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from pipeline.bus.inbox import Inbox, Subscription
from pipeline.bus.ports import Bus, BusError, InboundMessage, MessageHandler, Will
from pipeline.bus.probe import describe_unreachable
from pipeline.bus.url import SETTING, BrokerAddress, TlsFiles, parse_mqtt_url

log = logging.getLogger(__name__)

Protocol = Literal["3.1.1", "5"]
QOS = 1
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600  # MQTT 5: keep a worker's queue over a long weekend
_RECONNECT_MIN, _RECONNECT_MAX = 1, 30  # seconds; paho doubles the delay up to the maximum


class _Acks:
    """Matches broker acknowledgements (PUBACK, SUBACK) to the thread waiting on that packet id.

    An acknowledgement can arrive before `client.publish()` has even returned its mid, so results
    are stored on arrival and collected by `wait`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._results: dict[int, str | None] = {}
        self._abandoned: set[int] = set()

    def complete(self, mid: int, error: str | None) -> None:
        with self._cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            self._results[mid] = error
            self._cond.notify_all()

    def wait(self, mid: int, timeout: float) -> tuple[bool, str | None]:
        """Return (acknowledged, broker error) for `mid`, giving up after `timeout` seconds."""
        with self._cond:
            if self._cond.wait_for(lambda: mid in self._results, max(timeout, 0.0)):
                return True, self._results.pop(mid)
            self._abandoned.add(mid)
            return False, None


class PahoBus(Bus):
    """A paho-mqtt client speaking QoS 1 with manual acks to one broker."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        will: Will | None = None,
        clean_session: bool = False,
        protocol: Protocol = "3.1.1",
        ca_file: str | None = None,
        shared_subscriptions: bool = True,
        keepalive: int = 30,
        tls: TlsFiles | None = None,
    ) -> None:
        if not client_id:
            raise BusError("an MQTT client id is required: persistent sessions are keyed by it")
        self.address, self.client_id, self._protocol = address, client_id, protocol
        self._clean_session, self._shared, self._keepalive = clean_session, shared_subscriptions, keepalive
        self._connected = threading.Event()
        self._connack = threading.Event()
        self._refused: str | None = None
        self._closing = False
        self._pubacks, self._subacks = _Acks(), _Acks()
        self._resubscribe_mids: list[int] = []
        self._inbox = Inbox(client_id)
        self._connected_callbacks: list[Callable[[], None]] = []
        self._client = self._make_client(will, tls or TlsFiles(ca_file=ca_file))

    @classmethod
    def from_url(
        cls,
        url: str,
        client_id: str,
        *,
        will: Will | None = None,
        clean_session: bool = False,
        protocol: Protocol = "3.1.1",
        ca_file: str | None = None,
        shared_subscriptions: bool = True,
        tls: TlsFiles | None = None,
    ) -> PahoBus:
        """Build a client for `mqtt://[user:pass@]host[:1883]` or `mqtts://...` (TLS, `ca_file` to trust).

        `tls` adds a client certificate (brokers with `require_certificate true`) and overrides `ca_file`.
        """
        address = parse_mqtt_url(url)
        tls = tls or TlsFiles(ca_file=ca_file)
        if (tls.ca_file or tls.cert_file) and not address.tls:
            raise BusError(f"TLS files were given but {address.url} is not mqtts:// (setting {SETTING})")
        if bool(tls.cert_file) != bool(tls.key_file):
            raise BusError("a client certificate needs both mqtt_cert_file and mqtt_key_file")
        return cls(
            address,
            client_id,
            will=will,
            clean_session=clean_session,
            protocol=protocol,
            shared_subscriptions=shared_subscriptions,
            tls=tls,
        )

    def _make_client(self, will: Will | None, tls: TlsFiles) -> mqtt.Client:
        v5 = self._protocol == "5"
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": self._clean_session}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            manual_ack=True,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            **kwargs,
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            try:
                client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: unreadable or mismatched files
                raise BusError(f"MQTT TLS files ({SETTING}): {exc}") from None
        if will is not None:
            client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
        client.reconnect_delay_set(_RECONNECT_MIN, _RECONNECT_MAX)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # -- the port -------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._open(deadline)
        self._client.loop_start()
        if not self._connack.wait(max(deadline - time.monotonic(), 0.0)) or not self._connected.is_set():
            reason = self._refused or f"no CONNACK within {timeout:g} s"
            self._stop_network()
            raise BusError(
                f"MQTT broker at {self.address} did not accept client {self.client_id!r}: "
                f"{reason} — check the username/password (setting {SETTING})"
            )
        for mid in list(self._resubscribe_mids):
            self._await_suback(mid, "(re)subscribe", deadline)
        log.info("connected to MQTT broker at %s as %s", self.address.url, self.client_id)

    def start_background(self) -> None:
        """Start connecting and return at once; an unreachable broker is not an error.

        For processes that must work while the broker is away (a station spools its events on disk):
        paho retries the first connection, and later reconnects, with backoff (1 s doubling up to 30 s)
        on its network thread. Subscriptions made before the connection is up are sent on every
        connect; `on_connected` callbacks say when it is. `wait_connected` tells whether it came up.
        """
        self._client.connect_timeout = 5.0
        self._client.connect_async(
            self.address.host, self.address.port, self._keepalive, **self._connect_kwargs()
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Whether the session is up within `timeout` seconds (use after `start_background`)."""
        return self._connected.wait(max(timeout, 0.0))

    def why_disconnected(self) -> str:
        """Why there is no session right now, for an operator (probes the broker's port if needed)."""
        if self.connected:
            return "connected"
        return self._refused or describe_unreachable(self.address)

    def on_connected(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every successful (re)connect from now on, on a thread of its own.

        Not on paho's network thread: the callback may publish and wait for the PUBACK, which that
        thread delivers.
        """
        self._connected_callbacks.append(callback)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        if self._closing:
            raise BusError(f"cannot publish to {topic}: the MQTT client {self.client_id!r} was closed")
        if not self._connected.wait(timeout):
            raise BusError(
                f"cannot publish to {topic}: not connected to MQTT broker at {self.address} "
                f"after {timeout:g} s: {describe_unreachable(self.address)} (setting {SETTING})"
            )
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BusError(f"cannot publish to {topic} on {self.address}: {mqtt.error_string(info.rc)}")
        # NO_CONN means paho queued it and sends it after reconnecting; the PUBACK is still awaited.
        acked, error = self._pubacks.wait(info.mid, deadline - time.monotonic())
        if not acked:
            why = "connected but no PUBACK" if self.connected else describe_unreachable(self.address)
            raise BusError(
                f"MQTT broker at {self.address} did not acknowledge the publish to {topic} "
                f"within {timeout:g} s: {why} (setting {SETTING})"
            )
        if error:
            raise BusError(f"MQTT broker at {self.address} rejected the publish to {topic}: {error}")
        log.debug("published %d bytes to %s", len(payload), topic)

    def publish_many(self, messages: list[tuple[str, bytes]], *, timeout: float = 10.0) -> int:
        """Send every message first, then collect the PUBACKs: one round trip for the batch, not one each."""
        if not messages:
            return 0
        deadline = time.monotonic() + timeout
        if self._closing or not self._connected.wait(timeout):
            return super().publish_many(messages, timeout=timeout)  # raises the precise BusError
        mids = []
        for topic, payload in messages:
            info = self._client.publish(topic, payload, qos=QOS)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                break
            mids.append(info.mid)
        for acknowledged, mid in enumerate(mids):
            acked, error = self._pubacks.wait(mid, deadline - time.monotonic())
            if not acked or error:
                for later in mids[acknowledged + 1 :]:
                    self._pubacks.wait(later, 0.0)  # abandon: a late PUBACK is dropped, the row resent
                if acknowledged == 0:
                    raise BusError(
                        f"MQTT broker at {self.address} did not acknowledge a batch of "
                        f"{len(messages)} message(s): {error or 'no PUBACK'} (setting {SETTING})"
                    )
                return acknowledged
        log.debug("published a batch of %d message(s)", len(mids))
        return len(mids)

    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, shared_group: str | None = None
    ) -> None:
        subscription = Subscription(topic_filter, handler, shared_group)
        self._inbox.add(subscription)
        if self._connected.is_set():
            mid = self._send_subscribe(subscription)
            self._await_suback(mid, f"subscribe to {topic_filter}", time.monotonic() + 10.0)

    def close(self) -> None:
        self._closing = True
        if self._connected.is_set():
            self._client.disconnect()  # a DISCONNECT packet: the broker discards the last will
        self._stop_network()
        self._inbox.close()

    # -- helpers --------------------------------------------------------------------------------------

    def _open(self, deadline: float) -> None:
        """Open the TCP/TLS connection, retrying refused connections until `deadline`."""
        self._client.connect_timeout = max(min(deadline - time.monotonic(), 5.0), 0.1)
        while True:
            try:
                self._client.connect(
                    self.address.host, self.address.port, self._keepalive, **self._connect_kwargs()
                )
                return
            except OSError as exc:
                if time.monotonic() + 0.2 >= deadline:
                    raise BusError(
                        f"cannot reach MQTT broker at {self.address}: "
                        f"{describe_unreachable(self.address, exc)} (setting {SETTING})"
                    ) from None
                time.sleep(0.2)

    def _connect_kwargs(self) -> dict[str, Any]:
        if self._protocol != "5":
            return {}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if self._clean_session else SESSION_EXPIRY_SECONDS
        return {"clean_start": self._clean_session, "properties": properties}

    def _send_subscribe(self, subscription: Subscription) -> int:
        topic = subscription.topic_filter
        if subscription.shared_group and self._shared:
            topic = f"$share/{subscription.shared_group}/{topic}"
        if self._protocol == "5":
            rc, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=QOS))
        else:
            rc, mid = self._client.subscribe(topic, qos=QOS)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise BusError(f"cannot subscribe to {topic} on {self.address}: {mqtt.error_string(rc)}")
        return int(mid)

    def _await_suback(self, mid: int, what: str, deadline: float) -> None:
        acked, error = self._subacks.wait(mid, deadline - time.monotonic())
        if not acked or error:
            raise BusError(f"MQTT broker at {self.address} did not accept the {what}: {error or 'no SUBACK'}")

    def _run_connected_callbacks(self) -> None:
        for callback in list(self._connected_callbacks):
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from running
                log.exception("a connected-callback of MQTT client %s failed", self.client_id)

    def _stop_network(self) -> None:
        self._client.loop_stop()
        self._connected.clear()

    # -- paho callbacks (network thread: keep them short, never block) --------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.warning("MQTT broker at %s refused %s: %s", self.address, self.client_id, reason)
            self._connack.set()
            return
        self._refused = None
        self._connected.set()
        try:
            self._resubscribe_mids = [self._send_subscribe(s) for s in self._inbox.subscriptions]
        except BusError as exc:  # an exception here would end paho's network thread
            log.error("re-subscribing on %s failed: %s", self.address, exc)
        self._connack.set()
        log.info("MQTT session with %s up (session present: %s)", self.address, flags.session_present)
        if self._connected_callbacks:
            threading.Thread(target=self._run_connected_callbacks, name="mqtt-connected", daemon=True).start()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("lost connection to MQTT broker at %s (%s); reconnecting", self.address, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._pubacks.complete(mid, str(reason) if reason.is_failure else None)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        self._subacks.complete(mid, ", ".join(failed) or None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        mid, qos = message.mid, message.qos
        acked = threading.Event()

        def ack() -> None:
            if not acked.is_set():
                acked.set()
                client.ack(mid, qos)  # paho queues the PUBACK under its own lock: safe from any thread

        self._inbox.put(InboundMessage(message.topic, bytes(message.payload), ack, bool(message.dup)))
