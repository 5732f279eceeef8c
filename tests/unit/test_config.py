"""Settings: TOML file + EDGELINE_* environment (environment wins), the master key (architecture §7, §9)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from pipeline.config import DEFAULT_STATE_DIR, ConfigError, Settings, load_settings
from pipeline.domain.keys import SecretKey

MASTER = base64.b64encode(bytes(range(32))).decode()
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeline.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------
# Sources and precedence
# ---------------------------------------------------------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(env={})

    assert settings == Settings()
    assert settings.state_dir == DEFAULT_STATE_DIR
    assert settings.topic_root == "edgeline"
    assert settings.enrollment_mode == "group"
    assert settings.registration_id_template == "sn-{serial}-mac-{mac}"
    assert settings.edge_version == "1.2"
    assert settings.dps_global_endpoint == "https://global.azure-devices-provisioning.net"
    assert settings.dps_operations_per_minute == 900
    assert settings.mqtt_shared_subscriptions is True
    assert settings.iot_hubs == ()


def test_unrelated_environment_is_ignored() -> None:
    assert load_settings(env={"PATH": "/bin", "EDGELINE": "x", "EDGELINEX_LINE": "l9"}) == Settings()


def test_toml_file_sets_values_with_their_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'line = "line2"\n'
        "dps_operations_per_minute = 500\n"
        "confirm_window_hours = 12.5\n"
        "mqtt_shared_subscriptions = false\n"
        'iot_hubs = ["hub-a.azure-devices.net", "hub-b.azure-devices.net"]\n'
        'state_dir = "/var/lib/edgeline"\n',
    )

    settings = load_settings(path, env={})

    assert settings.line == "line2"
    assert settings.dps_operations_per_minute == 500
    assert settings.confirm_window_hours == 12.5
    assert settings.mqtt_shared_subscriptions is False
    assert settings.iot_hubs == ("hub-a.azure-devices.net", "hub-b.azure-devices.net")
    assert settings.state_dir == Path("/var/lib/edgeline")


def test_edgeline_table_form(tmp_path: Path) -> None:
    path = write(tmp_path, '[edgeline]\nline = "line3"\nenrollment_mode = "individual"\n')

    settings = load_settings(path, env={})

    assert (settings.line, settings.enrollment_mode) == ("line3", "individual")


def test_edgeline_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    # Regression: `edgeline = "x"` used to crash with AttributeError.
    path = write(tmp_path, 'edgeline = "line1"\n')

    with pytest.raises(ConfigError, match=r"'edgeline' must be a table \(\[edgeline\]\)"):
        load_settings(path, env={})


def test_config_file_can_be_named_by_edgeline_config(tmp_path: Path) -> None:
    path = write(tmp_path, 'line = "from-file"\n')

    assert load_settings(env={"EDGELINE_CONFIG": str(path)}).line == "from-file"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'line = "from-file"\nproduct = "kept"\ndps_operations_per_minute = 100\n')

    settings = load_settings(
        path, env={"EDGELINE_LINE": "from-env", "EDGELINE_DPS_OPERATIONS_PER_MINUTE": "200"}
    )

    assert settings.line == "from-env"
    assert settings.product == "kept"
    assert settings.dps_operations_per_minute == 200


def test_explicit_overrides_win_over_environment_and_none_is_ignored() -> None:
    settings = load_settings(
        env={"EDGELINE_LINE": "from-env", "EDGELINE_PRODUCT": "p"}, line="cli", product=None
    )

    assert (settings.line, settings.product) == ("cli", "p")


def test_unknown_key_in_file_is_rejected_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'lien = "line1"\n')

    with pytest.raises(ConfigError, match=f"config file {path}: unknown setting 'lien'"):
        load_settings(path, env={})


def test_extras_cannot_be_set_from_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[edgeline.extras]\na = 1\n")

    with pytest.raises(ConfigError, match="unknown setting 'extras'"):
        load_settings(path, env={})


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError, match=f"config file {path}: No such file"):
        load_settings(path, env={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "line = \n")

    with pytest.raises(ConfigError, match=f"config file {path} is not valid TOML"):
        load_settings(path, env={})


# ---------------------------------------------------------------------------------------------------------
# Parsing values
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hub-a, hub-b ,hub-c", ("hub-a", "hub-b", "hub-c")),
        ("hub-a", ("hub-a",)),
        ("hub-a,,", ("hub-a",)),
        ("", ()),
    ],
)
def test_tuples_from_comma_separated_environment(text: str, expected: tuple[str, ...]) -> None:
    assert load_settings(env={"EDGELINE_IOT_HUBS": text}).iot_hubs == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_bool_parsing(text: str, expected: bool) -> None:
    assert (
        load_settings(env={"EDGELINE_MQTT_SHARED_SUBSCRIPTIONS": text}).mqtt_shared_subscriptions is expected
    )


def test_numbers_from_environment() -> None:
    settings = load_settings(
        env={"EDGELINE_DPS_OPERATIONS_PER_MINUTE": " 600 ", "EDGELINE_CONFIRM_WINDOW_HOURS": "1.5"}
    )

    assert settings.dps_operations_per_minute == 600
    assert settings.confirm_window_hours == 1.5


def test_integer_file_value_for_a_float_setting_is_accepted(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "confirm_window_hours = 24\n"), env={}).confirm_window_hours == 24.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mqtt_shared_subscriptions", "maybe"),
        ("mqtt_shared_subscriptions", ""),
        ("dps_operations_per_minute", "many"),
        ("dps_operations_per_minute", "9.5"),
        ("confirm_window_hours", "a day"),
        ("confirm_window_hours", "nan"),  # regression: accepted, then every comparison is False
        ("confirm_interval_seconds", "inf"),
    ],
)
def test_bad_environment_values_name_the_setting_and_variable(name: str, value: str) -> None:
    var = f"EDGELINE_{name.upper()}"

    with pytest.raises(ConfigError, match=f"setting {name} \\({var}\\): .* is not a valid"):
        load_settings(env={var: value})


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("dps_operations_per_minute = 900.5", "dps_operations_per_minute"),  # regression: silently truncated
        ("dps_operations_per_minute = true", "dps_operations_per_minute"),  # regression: became 1
        ("confirm_window_hours = false", "confirm_window_hours"),
        ("confirm_window_hours = [1]", "confirm_window_hours"),
        ('mqtt_shared_subscriptions = "perhaps"', "mqtt_shared_subscriptions"),
        ("line = [1, 2]", "line"),
        ("line = { a = 1 }", "line"),
        ("iot_hubs = 5", "iot_hubs"),
        ("state_dir = 5", "state_dir"),
    ],
)
def test_bad_file_values_name_the_setting_and_variable(tmp_path: Path, line: str, name: str) -> None:
    with pytest.raises(ConfigError, match=f"setting {name} \\(EDGELINE_{name.upper()}\\)"):
        load_settings(write(tmp_path, line + "\n"), env={})


@pytest.mark.parametrize(
    ("name", "value"),
    [("enrollment_mode", "both"), ("edge_version", "1.5"), ("allocation_policy", "geolatency")],
)
def test_invalid_choices_name_setting_variable_and_allowed_values(name: str, value: str) -> None:
    var = f"EDGELINE_{name.upper()}"

    with pytest.raises(ConfigError, match=f"^{name} \\({var}\\) must be .* not '{value}'$"):
        load_settings(env={var: value})


def test_edge_version_given_as_a_toml_float_is_understood(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "edge_version = 1.1\n"), env={}).edge_version == "1.1"


# ---------------------------------------------------------------------------------------------------------
# Derived values
# ---------------------------------------------------------------------------------------------------------


def test_resolved_database_url_defaults_to_an_absolute_sqlite_file_in_state_dir(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")

    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'state' / 'edgeline.db'}"
    assert settings.resolved_database_url().startswith("sqlite:////")  # four slashes: an absolute path


def test_relative_state_dir_is_resolved_in_the_database_url() -> None:
    url = Settings().resolved_database_url()

    assert url == f"sqlite:///{(Path.cwd() / '.edgeline' / 'edgeline.db').resolve()}"


def test_explicit_database_url_is_kept() -> None:
    url = "postgresql+psycopg://edgeline@db/edgeline"

    assert Settings(database_url=url).resolved_database_url() == url


def test_group_id_defaults_to_product() -> None:
    assert Settings(product="gw-100").group_id() == "edgeline-gw-100"
    assert Settings(product="gw-100", enrollment_group_id="custom").group_id() == "custom"


# ---------------------------------------------------------------------------------------------------------
# Master key
# ---------------------------------------------------------------------------------------------------------


def test_master_key_from_environment() -> None:
    key = load_settings(env={"EDGELINE_MASTER_KEY": MASTER}).load_master_key()

    assert key == SecretKey(bytes(range(32)))


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_master_key_names_the_variable_without_the_key(bad: str) -> None:
    settings = load_settings(env={"EDGELINE_MASTER_KEY": bad})

    with pytest.raises(ConfigError, match=r"master_key \(EDGELINE_MASTER_KEY\)") as excinfo:
        settings.load_master_key()

    assert bad not in str(excinfo.value)


def test_no_master_key_gives_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"EDGELINE_MASTER_KEY.*EDGELINE_MASTER_KEY_FILE.*0600.*urandom"):
        Settings().load_master_key()


@posix_only
def test_master_key_from_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER + "\n")
    path.chmod(0o600)

    key = load_settings(env={"EDGELINE_MASTER_KEY_FILE": str(path)}).load_master_key()

    assert key == SecretKey(bytes(range(32)))


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_master_key_file_readable_by_others_is_refused_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER)
    path.chmod(mode)

    with pytest.raises(ConfigError, match=f"readable by others: run `chmod 600 {path}`") as excinfo:
        Settings(master_key_file=str(path)).load_master_key()

    assert MASTER not in str(excinfo.value)


def test_missing_master_key_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"

    with pytest.raises(ConfigError, match=f"master_key_file {path}: No such file"):
        Settings(master_key_file=str(path)).load_master_key()


@posix_only
def test_master_key_file_with_garbage_names_the_file_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("garbage-content!")
    path.chmod(0o600)

    with pytest.raises(ConfigError, match=f"master_key_file {path} is not valid base64") as excinfo:
        Settings(master_key_file=str(path)).load_master_key()

    assert "garbage-content" not in str(excinfo.value)


def test_environment_key_wins_over_key_file(tmp_path: Path) -> None:
    settings = Settings(master_key=MASTER, master_key_file=str(tmp_path / "absent.key"))

    assert settings.load_master_key() == SecretKey(bytes(range(32)))


def test_workers_sessions_end_with_their_connection_by_default() -> None:
    """Issue #8 §2: a session outliving a killed worker keeps taking its share of the shared group."""
    from pipeline.bootstrap import bus_options

    assert load_settings(env={}).mqtt_session_expiry_seconds == 0
    assert bus_options(Settings(mqtt_session_expiry_seconds=0)).session_expiry_seconds == 0
    raised = load_settings(env={"EDGELINE_MQTT_SESSION_EXPIRY_SECONDS": "30"})
    assert bus_options(raised).session_expiry_seconds == 30
