"""Settings: one TOML file plus `EDGELINE_*` environment variables (the environment wins).

Responsible for: defaults, parsing, and errors that name the setting to fix.
Not responsible for: reading secrets' contents beyond locating them (see `master_key()`).

Every field maps to a TOML key of the same name and to `EDGELINE_<NAME>` in upper case, e.g.
`database_url` / `EDGELINE_DATABASE_URL`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.bus.url import TlsFiles
from pipeline.domain.identity import IdentityError, MacPolicy
from pipeline.domain.keys import KeyFormatError, SecretKey

DEFAULT_STATE_DIR = Path(".edgeline")


class ConfigError(ValueError):
    """A setting that is missing or wrong; the message names it and says how to fix it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a process of edgeline needs to know about its surroundings."""

    state_dir: Path = DEFAULT_STATE_DIR
    database_url: str = ""  # default: sqlite file in state_dir
    mqtt_url: str = ""  # default: embedded broker (demo) / required for `up`
    topic_root: str = "edgeline"
    mqtt_shared_subscriptions: bool = True
    line: str = "line1"
    product: str = "default"
    enrollment_mode: str = "group"  # group | individual
    enrollment_group_id: str = ""  # default: edgeline-{product}
    registration_id_template: str = "sn-{serial}-mac-{mac}"
    edge_version: str = "1.2"  # 1.2 -> /etc/aziot/config.toml ; 1.1 -> /etc/iotedge/config.yaml
    edge_hostname: str = ""  # template with {registration_id}; default: none (1.2), the registration ID (1.1)
    dps_connection_string: str = ""
    dps_id_scope: str = ""
    dps_global_endpoint: str = "https://global.azure-devices-provisioning.net"
    dps_api_version: str = "2021-10-01"
    dps_operations_per_minute: int = 900  # below Azure's 1,000/min so other tools keep headroom
    iot_hubs: tuple[str, ...] = ()  # linked hub host names for allocation (static/hashed)
    iot_hub_connection_strings: tuple[str, ...] = ()  # for twin tags / identity checks after assignment
    allocation_policy: str = "hashed"
    master_key: str = ""  # base64, 32 bytes; or master_key_file
    master_key_file: str = ""
    confirm_interval_seconds: float = 2.0
    confirm_backoff_initial_seconds: float = 2.0
    confirm_backoff_max_seconds: float = 3600.0
    confirm_window_hours: float = 72.0
    reconcile_interval_seconds: float = 5.0
    reconcile_stuck_seconds: float = 30.0
    # Handler threads per `edgeline up` (units are partitioned by registration ID). 2: one runs Python
    # while the other waits on PostgreSQL; more contend for the GIL. 1 handles each message on the bus
    # thread, one transaction per message (no batches).
    worker_threads: int = 2
    log_level: str = "INFO"
    # --- guard: unit admission (who may rework a unit, which MACs may become a unit) ---
    rework_assigned: str = "refuse"  # refuse: an assigned unit is reworked only after `edgeline unit release`
    mac_allowed_ouis: tuple[str, ...] = ()  # e.g. ("001B44",); empty: any OUI
    mac_allow_locally_administered: bool = True  # false: refuse MACs with the U/L bit set

    def mac_policy(self) -> MacPolicy:
        """The MAC admission rules of these settings (checked by `_validate` at load time)."""
        return MacPolicy.from_settings(self.mac_allowed_ouis, self.mac_allow_locally_administered)

    # --- end guard ---
    # --- integr: factory integration (all off by default) ---
    label_printer: str = ""  # tcp://HOST:9100 (raw ZPL) or file:/folder; empty: no labels
    label_queue_dir: str = ""  # default: beside the station key file, `<key file>.labels`
    label_preview_dir: str = ""  # PNG previews of each label's QR code; empty: none
    approval_url: str = ""  # MES webhook (POST JSON); empty and no approval_command: no approval step
    approval_command: str = ""  # or a local program: unit JSON on stdin, decision JSON on stdout
    approval_token: str = ""  # sent as `Authorization: Bearer ...` to approval_url
    approval_timeout_seconds: float = 5.0
    approval_retries: int = 2  # more attempts when the MES is unreachable or answers 5xx/429
    approval_fail_mode: str = "closed"  # closed: the unit waits (failed, retried); open: it is keyed
    approval_concurrency: int = 8  # MES requests in flight at once per `edgeline up`
    # --- keys: key custody (PKCS#11 HSM, master-key rotation) ---
    key_store: str = "database"  # database: group keys sealed in the DB | pkcs11: in an HSM token
    pkcs11_module: str = ""  # the HSM's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    pkcs11_token_label: str = ""
    pkcs11_pin_file: str = ""  # a 0600 file holding the user PIN (or EDGELINE_PKCS11_PIN)
    pkcs11_pin: str = ""  # from the environment (EDGELINE_PKCS11_PIN); never a command-line option
    pkcs11_master_key_label: str = ""  # set: the master sealing key is this AES key in the token
    master_key_previous_file: str = ""  # during a master-key rotation: the old key, to unseal only
    # --- truth: the audit tells the truth (issue #8 §3, #11 defects 4-5) ---
    assignment_overdue_seconds: float = 600.0  # flashed this long without DPS assignment: flag + notice
    # --- web: audit API, dashboard, metrics, signed exports, shift reports (issue #12) ---
    web_listen: str = "127.0.0.1:8080"  # HOST:PORT of `edgeline web`
    web_signing_key_file: str = ""  # Ed25519 private key (`edgeline audit keygen`) signing record exports
    web_stuck_seconds: float = 0.0  # dashboard's "stuck" threshold; 0 = reconcile_stuck_seconds
    metrics_listen: str = ""  # HOST:PORT where `edgeline up` serves /metrics; empty = off
    report_dir: str = ""  # where shift reports are written; default: state_dir/reports
    shift_boundaries: tuple[str, ...] = ("06:00", "14:00", "22:00")  # UTC times a shift ends
    # --- multiproc: process identity on the bus, MQTT sessions, backlog warnings (issue #8 §2) ---
    client_id: str = ""  # MQTT client id; default edgeline-worker-<host>-<instance> or -p<pid>
    instance: str = ""  # e.g. 1, 2 (systemd edgeline-up@N): a stable id per instance on one host
    mqtt_protocol: str = "5"  # 5 (session expiry, takeover detection) or 3.1.1 (brokers without 5)
    mqtt_session_expiry_seconds: int = 0  # 0: a dead worker leaves the shared group at once (issue #8)
    mqtt_unacked_warn_count: int = 0  # warn when this many received messages wait for an ack (0: off)
    mqtt_unacked_warn_seconds: float = 60.0  # warn when a received message waits this long (0: off)
    # --- edge: IoT Edge runtime liveness after assignment; line state in Sparkplug B (both off) ---
    online_check: bool = False  # assigned -> online | not_online from the hub's $edgeAgent module twin
    online_timeout_seconds: float = 900.0  # from assignment; then not_online with the last reason seen
    online_check_interval_seconds: float = 10.0  # per unit, between two looks at its module twins
    sparkplug_enabled: bool = False  # `edgeline up` publishes line state as a Sparkplug B edge node
    sparkplug_group_id: str = "edgeline"
    sparkplug_edge_node_id: str = ""  # default: the line name
    sparkplug_mqtt_url: str = ""  # default: mqtt_url
    sparkplug_interval_seconds: float = 5.0  # between two NDATA/DDATA rounds (counts read from the DB)
    # --- perf: retention of delivery-only tables (the audit log is never pruned) ---
    retention_interval_seconds: float = 300.0  # how often the retention job runs
    outbox_retention_hours: float = 24.0  # published outbox rows older than this are deleted
    # Redeliveries older than this are no longer recognised as duplicates: keep it well above the
    # longest broker session expiry / station spool age.
    processed_retention_hours: float = 168.0
    retention_batch: int = 5000  # rows per delete transaction (short transactions, no long locks)
    consumer_batch_size: int = 100  # queued messages a handler thread commits (and acks) together
    # --- faults: MQTT over TLS (files made by `edgeline certs`; empty = system trust, no client cert) ---
    mqtt_ca_file: str = ""
    mqtt_cert_file: str = ""
    mqtt_key_file: str = ""

    def mqtt_tls(self) -> TlsFiles:
        """The TLS files for an mqtts:// broker URL."""
        return TlsFiles.from_settings(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the state directory."""
        return self.database_url or f"sqlite:///{(self.state_dir / 'edgeline.db').resolve()}"

    def approval_enabled(self) -> bool:
        """Whether units need the MES's approval before they get a key."""
        return bool(self.approval_url or self.approval_command)

    def group_id(self) -> str:
        """The enrollment group ID for this product (group mode)."""
        return self.enrollment_group_id or f"edgeline-{self.product}"

    def load_master_key(self) -> SecretKey:
        """The key that seals stored keys, from EDGELINE_MASTER_KEY or a 0600 key file."""
        if self.master_key:
            try:
                return SecretKey.from_base64(self.master_key, what="master_key (EDGELINE_MASTER_KEY)")
            except KeyFormatError as exc:
                raise ConfigError(str(exc)) from None
        if not self.master_key_file:
            raise ConfigError(
                "no master key: set EDGELINE_MASTER_KEY (base64 of 32 random bytes) or "
                "EDGELINE_MASTER_KEY_FILE (a file with mode 0600); e.g. `head -c32 /dev/urandom | base64`"
            )
        return read_key_file(self.master_key_file, "master_key_file")

    def load_pkcs11_pin(self) -> str:
        """The token's user PIN, from EDGELINE_PKCS11_PIN or a 0600 file (never a command-line option)."""
        if self.pkcs11_pin:
            return self.pkcs11_pin
        if not self.pkcs11_pin_file:
            raise ConfigError(
                "no PKCS#11 PIN: set EDGELINE_PKCS11_PIN or pkcs11_pin_file (a file with mode 0600)"
            )
        return read_secret_file(self.pkcs11_pin_file, "pkcs11_pin_file").strip()


def read_secret_file(name: str, setting: str) -> str:
    """Read a secret from a file that only its owner may read; errors name the setting."""
    path = Path(name)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: {exc.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{setting} {path} is readable by others: run `chmod 600 {path}`")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting} {path}: cannot read it ({exc})") from None


def read_key_file(name: str, setting: str) -> SecretKey:
    """Read a base64 key from a 0600 file."""
    try:
        return SecretKey.from_base64(read_secret_file(name, setting), what=f"{setting} {name}")
    except KeyFormatError as exc:
        raise ConfigError(str(exc)) from None


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, (bool, float)):  # int(900.5) would silently truncate, int(True) gives 1
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if isinstance(value, bool) or not math.isfinite(number):  # 'nan'/'inf' would stall the scheduler
                raise ValueError(value)
            return number
        if isinstance(default, Path):
            return Path(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if isinstance(value, (dict, list)):
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ConfigError(
            f"setting {name} (EDGELINE_{name.upper()}): {str(value)[:60]!r} is not a valid {kind}"
        ) from None


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Load settings from an optional TOML file, then `EDGELINE_*` variables, then explicit overrides."""
    settings, problems = load_settings_reporting(path, env, **overrides)
    raise_if_any(problems)
    return settings


def load_settings_reporting(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> tuple[Settings, list[str]]:
    """Like `load_settings`, but return invalid values as problems (those settings keep their defaults).

    For commands that report every problem at once (`edgeline up`, `edgeline doctor`). An unreadable
    config file still raises: nothing else can be judged without it.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_path = path or (Path(env["EDGELINE_CONFIG"]) if env.get("EDGELINE_CONFIG") else None)
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text())
        except OSError as exc:
            raise ConfigError(f"config file {config_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
        data = data.get("edgeline", data)
        if not isinstance(data, dict):
            raise ConfigError(f"config file {config_path}: 'edgeline' must be a table ([edgeline])")
        for name, value in data.items():
            if name not in _FIELDS:
                raise ConfigError(
                    f"config file {config_path}: unknown setting {name!r}; known: {sorted(_FIELDS)}"
                )
            values[name] = value
    for name in _FIELDS:
        env_value = env.get(f"EDGELINE_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    defaults = Settings()
    coerced: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in values.items():
        try:
            coerced[name] = _coerce(name, value, getattr(defaults, name))
        except ConfigError as exc:
            problems.append(str(exc))
    settings = dataclasses.replace(defaults, **coerced)
    bad = problems + invalid_values(settings)
    invalid = {name for name, (allowed, _) in _CHOICES.items() if getattr(settings, name) not in allowed}
    return dataclasses.replace(settings, **{name: getattr(defaults, name) for name in invalid}), bad


def raise_if_any(problems: list[str]) -> None:
    """Raise one ConfigError listing every problem, one line each (the first alone if only one)."""
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} settings to fix:\n" + "\n".join(f"  - {p}" for p in problems))


_CHOICES = {
    "enrollment_mode": (("group", "individual"), "'group' or 'individual'"),
    "edge_version": (("1.1", "1.2"), "'1.2' (config.toml) or '1.1' (config.yaml)"),
    "allocation_policy": (("hashed", "static"), "'hashed' or 'static'"),
    "mqtt_protocol": (("5", "3.1.1"), "'5' (MQTT 5) or '3.1.1' (brokers without MQTT 5)"),
    "rework_assigned": (("refuse", "allow"), "'refuse' or 'allow'"),
    "approval_fail_mode": (
        ("closed", "open"),
        "'closed' (units wait for the MES) or 'open' (units pass when the MES is unreachable)",
    ),
    "key_store": (("database", "pkcs11"), "'database' or 'pkcs11'"),
}
_NOT_NEGATIVE = (
    "mqtt_session_expiry_seconds",
    "mqtt_unacked_warn_count",
    "mqtt_unacked_warn_seconds",
    "dps_operations_per_minute",
    "online_timeout_seconds",
    "online_check_interval_seconds",
    "sparkplug_interval_seconds",
)


def invalid_values(s: Settings) -> list[str]:
    """Every setting whose value is out of range, one line each (required-ness is `validate_for`'s)."""
    problems = [
        f"{name} (EDGELINE_{name.upper()}) must be {words}, not {getattr(s, name)!r}"
        for name, (allowed, words) in _CHOICES.items()
        if getattr(s, name) not in allowed
    ]
    problems += [
        f"{name} (EDGELINE_{name.upper()}) must be 0 or more, not {getattr(s, name)!r}"
        for name in _NOT_NEGATIVE
        if getattr(s, name) < 0
    ]
    if s.worker_threads < 1:
        problems.append(f"worker_threads (EDGELINE_WORKER_THREADS) must be 1 or more, not {s.worker_threads}")
    if s.approval_url and s.approval_command:
        problems.append("set approval_url or approval_command, not both (EDGELINE_APPROVAL_URL / _COMMAND)")
    try:
        s.mac_policy()
    except IdentityError as exc:
        problems.append(f"mac_allowed_ouis (EDGELINE_MAC_ALLOWED_OUIS): {exc}")
    if s.sparkplug_enabled and s.sparkplug_interval_seconds <= 0:
        problems.append("sparkplug_interval_seconds (EDGELINE_SPARKPLUG_INTERVAL_SECONDS) must be above 0")
    if s.sparkplug_enabled and not (s.sparkplug_group_id and "/" not in s.sparkplug_group_id):
        problems.append("sparkplug_group_id (EDGELINE_SPARKPLUG_GROUP_ID) must be a name without '/'")
    return problems
