"""Composition root: builds the pipeline's parts from Settings and wires them together.

The only place that knows every adapter; handlers, jobs and the consumer get their dependencies from
here (cosmicpython's bootstrap). Nothing is built at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.ports import DpsClient, HubRegistry
from pipeline.azure.sas import SasError
from pipeline.bus.client_id import claim_instance_slot, worker_client_id
from pipeline.bus.paho import PahoBus, PahoOptions
from pipeline.bus.ports import Bus
from pipeline.bus.topics import Topics
from pipeline.config import ConfigError, Settings
from pipeline.db.group_history import SqlGroupKeyHistory
from pipeline.db.session import Database
from pipeline.db.transient import is_transient_db_error, is_write_conflict
from pipeline.keystore.custody import KeyCustody, open_key_custody
from pipeline.mes.command import CommandApprover
from pipeline.mes.ports import Approver
from pipeline.mes.webhook import WebhookApprover
from pipeline.scheduler.jobs import PipelineScheduler
from pipeline.service.actors import cli_identity
from pipeline.service.approving import ApprovalRunner
from pipeline.service.consumer import Consumer
from pipeline.service.context import Context, no_approval, utcnow
from pipeline.service.enrolling import ensure_group
from pipeline.service.groups import GroupKeyHistory
from pipeline.service.messagebus import BATCH_PREPARERS, HANDLERS
from pipeline.service.outbox_relay import OutboxRelay

log = logging.getLogger(__name__)
WORKER_GROUP = "edgeline-workers"


def make_dps_client(settings: Settings) -> DpsClient:
    """The DPS service client from the connection string setting."""
    if not settings.dps_connection_string:
        raise ConfigError(
            "dps_connection_string (EDGELINE_DPS_CONNECTION_STRING) is not set: copy it from the "
            "DPS instance's shared access policies (provisioningserviceowner)"
        )
    if not settings.dps_id_scope:
        raise ConfigError("dps_id_scope (EDGELINE_DPS_ID_SCOPE) is not set: it is on the DPS overview page")
    try:
        return HttpDpsClient.from_connection_string(
            settings.dps_connection_string,
            api_version=settings.dps_api_version,
            operations_per_minute=settings.dps_operations_per_minute,
        )
    except SasError as exc:
        raise ConfigError(f"dps_connection_string (EDGELINE_DPS_CONNECTION_STRING): {exc}") from None


def make_hub_registry(settings: Settings) -> HubRegistry | None:
    """The IoT Hub registry adapter, if hub connection strings are configured."""
    if not settings.iot_hub_connection_strings:
        return None
    from pipeline.azure.hub_registry import AzureHubRegistry

    try:
        return AzureHubRegistry(list(settings.iot_hub_connection_strings))
    except SasError as exc:
        raise ConfigError(
            f"iot_hub_connection_strings (EDGELINE_IOT_HUB_CONNECTION_STRINGS): {exc}"
        ) from None


def make_approval_runner(settings: Settings) -> ApprovalRunner | None:
    """The MES approval runner, if `approval_url` or `approval_command` is set."""
    approver: Approver
    try:
        if settings.approval_url:
            timeout, token = settings.approval_timeout_seconds, settings.approval_token
            approver = WebhookApprover(settings.approval_url, timeout=timeout, token=token)
        elif settings.approval_command:
            approver = CommandApprover(settings.approval_command, timeout=settings.approval_timeout_seconds)
        else:
            return None
    except ValueError as exc:
        raise ConfigError(f"{exc} (EDGELINE_APPROVAL_URL / EDGELINE_APPROVAL_COMMAND)") from None
    return ApprovalRunner(approver, settings.approval_concurrency)


def default_client_id(role: str, settings: Settings) -> str:
    """The MQTT client id: the configured one, else per host and instance or free slot; see bus.client_id."""
    if settings.client_id:
        return settings.client_id
    instance = settings.instance or claim_instance_slot(role) or ""
    return worker_client_id(role, instance=instance)


def bus_options(settings: Settings, *, clean_session: bool = False) -> PahoOptions:
    """How the workers talk to the broker, from the settings."""
    return PahoOptions(
        clean_session=clean_session,
        protocol="3.1.1" if settings.mqtt_protocol == "3.1.1" else "5",
        shared_subscriptions=settings.mqtt_shared_subscriptions,
        session_expiry_seconds=settings.mqtt_session_expiry_seconds,
        unacked_warn_count=settings.mqtt_unacked_warn_count,
        unacked_warn_seconds=settings.mqtt_unacked_warn_seconds,
        stop_on_takeover=True,
        tls=settings.mqtt_tls(),
    )


@dataclass
class Pipeline:
    """The running central workers: consumer, outbox relay and scheduler over one bus and database."""

    ctx: Context
    bus: Bus
    db: Database
    relay: OutboxRelay
    consumer: Consumer
    scheduler: PipelineScheduler
    approvals: ApprovalRunner | None = None
    custody: KeyCustody | None = None
    started: bool = field(default=False)

    def start(self) -> None:
        """Ensure the enrollment group (group mode), then start consuming, relaying and scheduling."""
        self.bus.connect()
        if self.ctx.settings.enrollment_mode == "group":
            ensure_group(self.ctx)
        # Subscribe before publishing: with a session expiry of 0 nothing is queued for an absent worker,
        # so events the relay sends before this worker's subscriptions exist reach no one (if it is alone).
        self.consumer.start()
        self.relay.start()
        self.scheduler.start()
        self.started = True

    def stop(self) -> None:
        """Stop in the reverse order; unacknowledged messages are redelivered to the next run."""
        if self.started:
            self.started = False  # a second stop() (e.g. a test's cleanup) must not stop them twice
            self.scheduler.stop()
            self.consumer.stop()
            if self.approvals is not None:
                self.approvals.stop()
            self.relay.stop()
        self.bus.close()
        self.ctx.dps.close()
        self.db.dispose()
        if self.custody is not None:
            self.custody.close()


def build_pipeline(
    settings: Settings,
    *,
    client_id: str | None = None,
    dps: DpsClient | None = None,
    hub: HubRegistry | None = None,
    clean_session: bool = False,
) -> Pipeline:
    """Wire a Pipeline from settings (the broker URL must be set)."""
    if not settings.mqtt_url:
        raise ConfigError("mqtt_url (EDGELINE_MQTT_URL) is not set, e.g. mqtt://127.0.0.1:1883")
    db = Database(settings.resolved_database_url())
    bus = PahoBus.from_url(
        settings.mqtt_url,
        client_id or default_client_id("worker", settings),
        bus_options(settings, clean_session=clean_session),
    )
    relay = OutboxRelay(db.uow, bus, utcnow, is_transient_db_error)
    approvals = make_approval_runner(settings)
    custody = open_key_custody(settings)
    ctx = Context(
        settings=settings,
        uow_factory=db.uow,
        sealer=custody.sealer,
        group_keys=custody.group_keys,
        dps=dps or make_dps_client(settings),
        hub=hub or make_hub_registry(settings),
        topics=Topics(settings.topic_root),
        notify_outbox=relay.wake,
        request_approval=approvals.submit if approvals else no_approval,
    )
    if approvals is not None:
        approvals.bind(ctx)
    shared = WORKER_GROUP if settings.mqtt_shared_subscriptions else None
    consumer = Consumer(
        ctx,
        bus,
        HANDLERS,
        is_transient_db_error,
        shared_group=shared,
        workers=settings.worker_threads,
        is_conflict=is_write_conflict,
        batch_size=settings.consumer_batch_size,
        preparers=BATCH_PREPARERS,
    )
    scheduler = PipelineScheduler(ctx)
    return Pipeline(ctx, bus, db, relay, consumer, scheduler, approvals=approvals, custody=custody)


@dataclass
class AdminSession:
    """What one-shot operator commands (`group`, `enrollment`) run on: no bus, no workers."""

    ctx: Context
    db: Database
    group_history: GroupKeyHistory
    custody: KeyCustody | None = None

    def close(self) -> None:
        """Close the DPS client, the database engine and the key store."""
        self.ctx.dps.close()
        self.db.dispose()
        if self.custody is not None:
            self.custody.close()


def open_admin(settings: Settings) -> AdminSession:
    """Wire a Context on the configured database, DPS and (if configured) IoT hubs, for revocation."""
    hub = make_hub_registry(settings)
    dps = make_dps_client(settings)
    custody = open_key_custody(settings)
    db = Database(settings.resolved_database_url())
    ctx = Context(
        settings=settings,
        uow_factory=db.uow,
        sealer=custody.sealer,
        group_keys=custody.group_keys,
        dps=dps,
        hub=hub,
        topics=Topics(settings.topic_root),
        instance=cli_identity(),
    )
    return AdminSession(ctx=ctx, db=db, group_history=SqlGroupKeyHistory(db), custody=custody)
