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
    worker_threads: int = 4  # handler threads per `edgeline up` (units are partitioned by registration ID)
    log_level: str = "INFO"
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
        path = Path(self.master_key_file)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"master_key_file {path}: {exc.strerror}") from None
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"master_key_file {path} is readable by others: run `chmod 600 {path}`")
        try:
            return SecretKey.from_base64(path.read_text(), what=f"master_key_file {path}")
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
    coerced = {n: _coerce(n, v, getattr(defaults, n)) for n, v in values.items()}
    settings = dataclasses.replace(defaults, **coerced)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.enrollment_mode not in ("group", "individual"):
        raise ConfigError(
            f"enrollment_mode (EDGELINE_ENROLLMENT_MODE) must be 'group' or 'individual', "
            f"not {s.enrollment_mode!r}"
        )
    if s.edge_version not in ("1.1", "1.2"):
        raise ConfigError(
            f"edge_version (EDGELINE_EDGE_VERSION) must be '1.2' (config.toml) or '1.1' "
            f"(config.yaml), not {s.edge_version!r}"
        )
    if s.allocation_policy not in ("hashed", "static"):
        raise ConfigError(
            f"allocation_policy (EDGELINE_ALLOCATION_POLICY) must be 'hashed' or 'static', "
            f"not {s.allocation_policy!r}"
        )
