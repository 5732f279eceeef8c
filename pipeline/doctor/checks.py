"""The checks of `edgeline doctor`, each a small function returning what is wrong (or nothing).

Responsible for: telling an operator, before a shift starts, every reason the line would not run —
settings, the broker (reachable, credentials, queue limit where readable), the database (reachable,
schema at head, autovacuum on), DPS (reachable, credentials, the stored group key matching DPS's, the device
endpoint belonging to the service, clock skew) and each IoT hub — one line each with what to do.
Not responsible for: fixing anything; it changes nothing (the probe client uses a clean session).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.azure.clock import base_url, server_time
from pipeline.azure.ports import AzureError, EnrollmentGroupSpec
from pipeline.azure.sas import SasError, parse_connection_string
from pipeline.bootstrap import bus_options
from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import BusError, InboundMessage
from pipeline.config import ConfigError, Settings
from pipeline.config_check import dps_credential_problems, master_key_problems, mqtt_problems, problems_for
from pipeline.db import migrate
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database
from pipeline.service.common import KeyUnavailable
from pipeline.service.context import Context
from pipeline.service.group_keys import GroupKeyMismatch, group_key_values

MAX_SKEW_SECONDS = 60.0  # SAS tokens are checked against the server's clock; minutes off breaks them
SYS_TOPICS = ("$SYS/broker/version", "$SYS/broker/publish/messages/dropped")


OpenContext = Callable[[Settings], tuple["Context", Callable[[], None]]]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: a line naming what is wrong and what to do. Warnings do not fail the doctor."""

    text: str
    warning: bool = False


def check_settings(settings: Settings) -> list[Problem]:
    """Every missing or invalid setting (what `edgeline up` would refuse to start with)."""
    return [Problem(text) for text in problems_for(settings, "doctor")]


def check_broker(settings: Settings, wait: float = 3.0) -> list[Problem]:
    """Connect with a throw-away clean session; read Mosquitto's $SYS for dropped messages."""
    seen: dict[str, bytes] = {}
    arrived = threading.Event()

    def record(message: InboundMessage) -> None:
        seen[message.topic] = message.payload
        message.ack()
        arrived.set()

    client_id = f"edgeline-doctor-{socket.gethostname()}-p{os.getpid()}"[:64]
    try:
        bus = PahoBus.from_url(settings.mqtt_url, client_id, bus_options(settings, clean_session=True))
        for topic in SYS_TOPICS:
            bus.subscribe(topic, record)
        bus.connect(10)
    except BusError as exc:
        return [Problem(f"broker: {exc}")]
    try:
        arrived.wait(wait)
        time.sleep(0.3)  # the second retained $SYS message follows the first at once, if it exists
    finally:
        bus.close()
    return [p for p in [queue_limit_problem(seen)] if p]


def queue_limit_problem(seen: dict[str, bytes]) -> Problem | None:
    """What the broker's $SYS topics (`seen`, topic -> payload) say about dropped messages."""
    if "$SYS/broker/version" not in seen:
        return Problem(
            "broker: its $SYS topics are not readable (not Mosquitto, or an ACL): check by hand that it "
            "does not drop queued QoS 1 messages (Mosquitto: `max_queued_messages 0`)",
            warning=True,
        )
    dropped = seen.get("$SYS/broker/publish/messages/dropped", b"0").decode(errors="replace").strip()
    if dropped not in ("", "0"):
        return Problem(
            f"broker: it dropped {dropped} message(s) since it started (queue limit): set "
            "`max_queued_messages 0` in mosquitto.conf; the reconciler re-drives, but units wait"
        )
    return None


def check_database(settings: Settings) -> list[Problem]:
    """The database answers, its schema is at the newest migration, and it is kept vacuumed."""
    url = settings.resolved_database_url()
    db = Database(url)
    try:
        db.ping()
        maintenance = db.maintenance_problem()
    except DatabaseUnavailable as exc:
        return [Problem(f"database: {exc}")]
    finally:
        db.dispose()
    warnings = [Problem(f"database: {maintenance}", warning=True)] if maintenance else []
    try:
        current, newest = migrate.current(url), migrate.head()
    except Exception as exc:  # any driver error: reported, never a traceback
        return [
            Problem(
                f"database: cannot read the schema version ({type(exc).__name__}) (EDGELINE_DATABASE_URL)"
            ),
            *warnings,
        ]
    if current != newest:
        return [
            Problem(
                f"database: schema at {current or 'nothing'}, this edgeline needs {newest}: "
                "run `edgeline db upgrade`"
            ),
            *warnings,
        ]
    return warnings


def check_group_key(ctx: Context, in_dps: bool) -> Problem | None:
    """Group mode: DPS holds the group, with the key stored (sealed) in the database."""
    group_id = ctx.settings.group_id()
    with ctx.uow_factory() as uow:
        record = uow.groups.get(group_id)
    if record is None:
        return Problem(
            f"DPS: enrollment group {group_id!r} has no key in the database yet: `edgeline up` creates it",
            warning=True,
        )
    if not in_dps:
        return Problem(
            f"DPS: enrollment group {group_id!r} is in the database but not in DPS: "
            "start `edgeline up` (it re-creates it)"
        )
    try:  # from the key store, or (keys locked in an HSM) DPS's keys confirmed by the token
        primary, secondary = group_key_values(ctx, record)
    except (GroupKeyMismatch, KeyUnavailable) as exc:
        return Problem(f"DPS: {exc}")
    ctx.dps.ensure_enrollment_group(EnrollmentGroupSpec(group_id, primary, secondary))  # exists: compares
    return None


def check_dps(ctx: Context) -> list[Problem]:
    """DPS answers with these credentials; in group mode the stored group key matches DPS's."""
    group_mode = ctx.settings.enrollment_mode == "group"
    try:
        if not group_mode:
            ctx.dps.get_individual_enrollment("edgeline-doctor-probe")
            return []
        in_dps = ctx.dps.get_enrollment_group(ctx.settings.group_id()) is not None
        problem = check_group_key(ctx, in_dps)
    except AzureError as exc:
        return [Problem(f"DPS: {exc} (EDGELINE_DPS_CONNECTION_STRING)")]
    except (DatabaseUnavailable, SchemaMissing):
        return []  # reported by check_database; the key comparison needs the database
    return [problem] if problem else []


def check_hubs(ctx: Context) -> list[Problem]:
    """Each configured IoT hub answers with its connection string."""
    problems = []
    for text in ctx.settings.iot_hub_connection_strings:
        try:
            host = parse_connection_string(text).host_name
        except SasError:
            continue  # reported by check_settings
        try:
            if ctx.hub is not None:
                ctx.hub.get_device(host, "edgeline-doctor-probe")
        except AzureError as exc:
            problems.append(Problem(f"IoT hub {host}: {exc} (EDGELINE_IOT_HUB_CONNECTION_STRINGS)"))
    return problems


def check_clock(
    settings: Settings, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Problem | None:
    """This host's clock agrees with DPS's `Date` header within MAX_SKEW_SECONDS."""
    try:
        url = base_url(parse_connection_string(settings.dps_connection_string).host_name)
    except SasError:
        return None  # reported by check_settings
    try:
        theirs = server_time(url)
    except ConnectionError as exc:
        return Problem(f"DPS: cannot reach {url} ({exc}) (EDGELINE_DPS_CONNECTION_STRING)")
    if theirs is None:
        return Problem(f"DPS at {url} sent no Date header: cannot check this host's clock", warning=True)
    return skew_problem((now() - theirs).total_seconds(), url)


def skew_problem(skew: float, url: str) -> Problem | None:
    """The finding for a clock `skew` (seconds, ours minus theirs), if it is too large."""
    if abs(skew) <= MAX_SKEW_SECONDS:
        return None
    side = "ahead of" if skew > 0 else "behind"
    return Problem(
        f"clock: this host is {abs(skew):.0f} s {side} DPS at {url}: SAS tokens will be refused; "
        "sync the clock (NTP: `timedatectl set-ntp true`)"
    )


def admin_checks(
    settings: Settings, open_ctx: Callable[[Settings], tuple[Context, Callable[[], None]]]
) -> list[Problem]:
    """The checks that need the DPS/hub clients and the database wired together."""
    try:
        ctx, close = open_ctx(settings)
    except (ConfigError, DatabaseUnavailable) as exc:
        return [Problem(str(exc))]
    try:
        return check_dps(ctx) + check_hubs(ctx)
    finally:
        close()


def run_all(settings: Settings, open_ctx: OpenContext) -> list[Problem]:
    """Every check whose prerequisites are configured; a check that cannot run is covered by settings."""
    problems = check_settings(settings)
    if not mqtt_problems(settings):
        problems += check_broker(settings)
    problems += check_database(settings)
    dps_configured = not dps_credential_problems(settings)
    if dps_configured and not master_key_problems(settings):
        problems += admin_checks(settings, open_ctx)
    if dps_configured:
        problems += [p for p in [check_clock(settings)] if p]
    return problems
