"""PahoBus: the Bus port over paho-mqtt 2.x, the only module of edgeline that imports paho.

Responsible for: QoS 1 publishes that block until PUBACK, manual-ack subscriptions whose handlers run
on a worker thread (pipeline.bus.inbox), sessions under a stable client id with an MQTT 5 expiry
(workers: 0, so a dead worker's session leaves the shared group the moment its socket closes instead of
taking its share of the messages; see DEFAULT_SESSION_EXPIRY_SECONDS), never acknowledging a message
received in a session the broker has since forgotten (`_on_message`), reconnecting with
backoff and re-subscribing, shared subscriptions, the last will, stopping for good with one line when
another process takes the client id over (`stop_on_takeover`, `on_fatal`), warning when received
messages stay un-acknowledged (pipeline.bus.acks), a background mode for processes that must run
while the broker is away (`start_background`: no error if it is unreachable, paho keeps trying),
callbacks after every (re)connect, and turning paho/socket errors into BusError messages an operator
can act on.
Not responsible for: payload encoding (pipeline.bus.cloudevents), topics (pipeline.bus.topics), the
outbox or idempotency (the service layer). Payloads are never logged: they may carry encrypted
configs; only topics and sizes are.

Delivery is at least once: a publish that timed out may still reach the broker later, and a message
whose ack was lost is redelivered, so consumers must be idempotent (architecture §6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from pipeline import metrics
from pipeline.bus.acks import Acks, UnackedWatch
from pipeline.bus.client_id import TakeoverSuspicion, takeover_message
from pipeline.bus.inbox import Inbox, Subscription
from pipeline.bus.ports import Bus, BusError, InboundMessage, MessageHandler, Will
from pipeline.bus.probe import describe_unreachable
from pipeline.bus.url import SETTING, BrokerAddress, TlsFiles, parse_mqtt_url

log = logging.getLogger(__name__)

Protocol = Literal["3.1.1", "5"]
QOS = 1
# MQTT 5 session expiry after a disconnect, for clients that do not choose one: outlives a reconnect blip.
# Workers in a shared group use the setting mqtt_session_expiry_seconds, 0 by default: while a session
# outlives its connection the broker keeps routing its share of the group's messages to it, and those
# units wait for the reconciler (a killed worker replaced under a fresh id: p95 scan->assigned 117 s with
# a 7-day expiry, 37 s with 60 s, 1.5-2.2 s with 0 as undisturbed; issue #8, benchmarks/stale_session.py).
DEFAULT_SESSION_EXPIRY_SECONDS = 60
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another connection used this client id
_RECONNECT_MIN, _RECONNECT_MAX = 1, 30  # seconds; paho doubles the delay up to the maximum


@dataclass(frozen=True, slots=True)
class PahoOptions:
    """How a PahoBus talks to its broker (everything but where the broker is and who the client is)."""

    will: Will | None = None
    clean_session: bool = False
    protocol: Protocol = "3.1.1"
    ca_file: str | None = None
    # A client certificate (brokers with `require_certificate true`); its ca_file overrides `ca_file`.
    tls: TlsFiles | None = None
    shared_subscriptions: bool = True
    keepalive: int = 30
    session_expiry_seconds: int = DEFAULT_SESSION_EXPIRY_SECONDS  # MQTT 5 only
    unacked_warn_count: int = 0  # 0: never warn by count
    unacked_warn_seconds: float = 0.0  # 0: never warn by age (workers: setting mqtt_unacked_warn_seconds)
    # Stop for good (see `on_fatal`) when another client takes this id over, instead of reconnecting and
    # taking it back in a loop. For processes that can exit with an error (workers), not for stations,
    # which must keep trying whatever happens.
    stop_on_takeover: bool = False


class PahoBus(Bus):
    """A paho-mqtt client speaking QoS 1 with manual acks to one broker."""

    def __init__(self, address: BrokerAddress, client_id: str, options: PahoOptions | None = None) -> None:
        if not client_id:
            raise BusError("an MQTT client id is required: persistent sessions are keyed by it")
        self.address, self.client_id = address, client_id
        self.options = options or PahoOptions()
        self._protocol = self.options.protocol
        self._connected = threading.Event()
        self._connack = threading.Event()
        self._refused: str | None = None
        self._fatal: str | None = None
        self._closing = False
        self._pubacks, self._subacks = Acks(), Acks()
        self._unacked = UnackedWatch()
        self._suspicion = TakeoverSuspicion()
        self._session = 0  # +1 whenever the broker starts a new session (CONNACK without session present)
        self._resubscribe_mids: list[int] = []
        self._inbox = Inbox(client_id)
        self._connected_callbacks: list[Callable[[], None]] = []
        self._fatal_callbacks: list[Callable[[str], None]] = []
        self._client = self._make_client(self.options.will, self._tls_files())

    @classmethod
    def from_url(
        cls, url: str, client_id: str, options: PahoOptions | None = None, **option_fields: Any
    ) -> PahoBus:
        """Build a client for `mqtt://[user:pass@]host[:1883]` or `mqtts://...` (TLS, `ca_file` to trust).

        Options come as a PahoOptions or as its fields by keyword (`clean_session=True`), not both.
        """
        if options is not None and option_fields:
            raise TypeError("pass either a PahoOptions or its fields as keywords, not both")
        chosen = options or PahoOptions(**option_fields)
        address = parse_mqtt_url(url)
        tls = chosen.tls or TlsFiles(ca_file=chosen.ca_file)
        if (tls.ca_file or tls.cert_file) and not address.tls:
            raise BusError(f"TLS files were given but {address.url} is not mqtts:// (setting {SETTING})")
        if bool(tls.cert_file) != bool(tls.key_file):
            raise BusError("a client certificate needs both mqtt_cert_file and mqtt_key_file")
        return cls(address, client_id, chosen)

    def _tls_files(self) -> TlsFiles:
        return self.options.tls or TlsFiles(ca_file=self.options.ca_file)

    def _make_client(self, will: Will | None, tls: TlsFiles) -> mqtt.Client:
        v5 = self._protocol == "5"
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": self.options.clean_session}
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
        client.on_connect_fail = lambda client, userdata: self._suspicion.connect_failed()
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
        self._start_watch()
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
            self.address.host, self.address.port, self.options.keepalive, **self._connect_kwargs()
        )
        self._client.loop_start()
        self._start_watch()

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

    def on_fatal(self, callback: Callable[[str], None]) -> None:
        """Call `callback(one-line reason)` once if the client gives up for good (session taken over)."""
        self._fatal_callbacks.append(callback)

    @property
    def fatal_error(self) -> str | None:
        """Why this client stopped for good (another process took its client id over), or None."""
        return self._fatal

    def renew_will_on_connect(self, make_will: Callable[[], Will]) -> None:
        """Register `make_will()` as the last will before every (re)connect (edge: Sparkplug's bdSeq).

        Call before `connect`. paho runs the hook on its network thread just before each CONNECT, so each
        session's will is the one `make_will` returned last; it must not block.
        """

        def before_connect(client: mqtt.Client, userdata: Any) -> None:
            will = make_will()
            client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)

        self._client.on_pre_connect = before_connect

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        if self._fatal:
            raise BusError(f"cannot publish to {topic}: {self._fatal}")
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
        self._unacked.stop_warnings()
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
                    self.address.host, self.address.port, self.options.keepalive, **self._connect_kwargs()
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
        expiry = 0 if self.options.clean_session else self.options.session_expiry_seconds
        properties.SessionExpiryInterval = expiry
        return {"clean_start": self.options.clean_session, "properties": properties}

    def _expiry_text(self) -> str:
        if self._protocol != "5":
            return "set by the broker (persistent_client_expiration)"
        return "0 s" if self.options.clean_session else f"{self.options.session_expiry_seconds} s"

    def _send_subscribe(self, subscription: Subscription) -> int:
        topic = subscription.topic_filter
        if subscription.shared_group and self.options.shared_subscriptions:
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

    def _start_watch(self) -> None:
        self._unacked.start_warnings(
            self.client_id, self.options.unacked_warn_count, self.options.unacked_warn_seconds, log.warning
        )

    def _give_up(self, evidence: str = "") -> None:
        """Stop for good after a takeover: reconnecting would only take the session back and forth."""
        self._fatal = takeover_message(self.client_id, str(self.address), evidence)
        log.error("%s", self._fatal)
        self._unacked.stop_warnings()
        # Not on the network thread: loop_stop() joins it (paho offers no other way to end its reconnects).
        threading.Thread(target=self._stop_after_takeover, name="mqtt-fatal", daemon=True).start()

    def _stop_after_takeover(self) -> None:
        self._stop_network()
        fatal = self._fatal or ""
        for callback in list(self._fatal_callbacks):
            try:
                callback(fatal)
            except Exception:  # one failing callback must not keep the others from running
                log.exception("a fatal-callback of MQTT client %s failed", self.client_id)

    def _stop_network(self) -> None:
        self._client.loop_stop()
        self._connected.clear()

    # -- paho callbacks (network thread: keep them short, never block) --------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._suspicion.connect_failed()
            self._refused = str(reason)
            log.warning("MQTT broker at %s refused %s: %s", self.address, self.client_id, reason)
            self._connack.set()
            return
        self._refused = None
        self._connected.set()
        self._suspicion.connected()
        if not flags.session_present:
            self._session += 1  # the broker forgot the old session: its packet ids mean nothing any more
        try:
            self._resubscribe_mids = [self._send_subscribe(s) for s in self._inbox.subscriptions]
        except BusError as exc:  # an exception here would end paho's network thread
            log.error("re-subscribing on %s failed: %s", self.address, exc)
        self._connack.set()
        log.info(
            "MQTT session with %s up as %s (MQTT %s, session present: %s, expiry %s)",
            self.address,
            self.client_id,
            self._protocol,
            flags.session_present,
            self._expiry_text(),
        )
        if self._connected_callbacks:
            threading.Thread(target=self._run_connected_callbacks, name="mqtt-connected", daemon=True).start()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self._unacked.clear()  # the broker redelivers un-acked messages on the next session
        churning = self._suspicion.lost()
        if self.options.stop_on_takeover and not self._closing and not self._fatal:
            if self._protocol == "5" and getattr(reason, "value", None) == SESSION_TAKEN_OVER:
                self._give_up()
                return
            if churning:
                self._give_up("; the broker closed it 3 times within seconds of each connect")
                return
        if not self._closing:
            log.warning("lost connection to MQTT broker at %s (%s); reconnecting", self.address, reason)
            metrics.current().bus_reconnect()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._pubacks.complete(mid, str(reason) if reason.is_failure else None)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        self._subacks.complete(mid, ", ".join(failed) or None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        mid, qos, session = message.mid, message.qos, self._session
        acked = threading.Event()
        token = self._unacked.received()

        def ack() -> None:
            if not acked.is_set():
                acked.set()
                self._unacked.acked(token)
                if session != self._session:
                    # Received in a session the broker has dropped (expiry 0 and a reconnect): a PUBACK
                    # with its packet id would acknowledge whatever new message now has that id.
                    log.debug("not acknowledging message %d of an expired session of %s", mid, self.client_id)
                    return
                client.ack(mid, qos)  # paho queues the PUBACK under its own lock: safe from any thread

        self._inbox.put(InboundMessage(message.topic, bytes(message.payload), ack, bool(message.dup)))
