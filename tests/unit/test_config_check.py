"""Every missing or invalid setting is reported at once, one line each (`validate_for`)."""

from __future__ import annotations

import base64
import os

import pytest

from pipeline.cli.main import main
from pipeline.config import ConfigError, load_settings
from pipeline.config_check import problems_for, validate_for

KEY = base64.b64encode(bytes(32)).decode()
EMULATOR_DPS = (
    f"HostName=http://127.0.0.1:5080;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}"
)
COMPLETE = {
    "EDGELINE_MQTT_URL": "mqtt://127.0.0.1:1883",
    "EDGELINE_DPS_CONNECTION_STRING": EMULATOR_DPS,
    "EDGELINE_DPS_ID_SCOPE": "0ne00000001",
    "EDGELINE_DPS_GLOBAL_ENDPOINT": "http://127.0.0.1:5080",
    "EDGELINE_MASTER_KEY": KEY,
}


def test_a_complete_configuration_passes() -> None:
    validate_for(load_settings(env=COMPLETE), "up")


def test_up_with_nothing_set_names_every_missing_setting_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate_for(load_settings(env={}), "up")
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "4 settings to fix:"
    text = str(excinfo.value)
    for setting in ("EDGELINE_MQTT_URL", "EDGELINE_DPS_CONNECTION_STRING", "EDGELINE_DPS_ID_SCOPE"):
        assert setting in text
    assert "EDGELINE_MASTER_KEY" in text


def test_the_emulator_with_azures_default_global_endpoint_is_refused() -> None:
    env = {k: v for k, v in COMPLETE.items() if k != "EDGELINE_DPS_GLOBAL_ENDPOINT"}
    with pytest.raises(ConfigError, match=r"global endpoint .* is Azure's but the DPS service is"):
        validate_for(load_settings(env=env), "up")


def test_a_station_is_checked_only_for_what_it_knows() -> None:
    settings = load_settings(env={"EDGELINE_MQTT_URL": "mqtt://broker:1883"})
    assert problems_for(settings, "station") == []  # no DPS credentials on a station: nothing to pair


def test_malformed_values_are_each_reported() -> None:
    env = {
        **COMPLETE,
        "EDGELINE_MQTT_URL": "http://broker",
        "EDGELINE_DPS_CONNECTION_STRING": "HostName=x",
        "EDGELINE_IOT_HUB_CONNECTION_STRINGS": "nonsense",
    }
    problems = problems_for(load_settings(env=env), "up")
    assert len(problems) == 3, problems
    assert any("mqtt://" in p and "EDGELINE_MQTT_URL" in p for p in problems)
    assert any("EDGELINE_DPS_CONNECTION_STRING" in p and "missing" in p for p in problems)
    assert any("EDGELINE_IOT_HUB_CONNECTION_STRINGS" in p for p in problems)


def test_loading_reports_every_bad_value_at_once() -> None:
    env = {
        "EDGELINE_ENROLLMENT_MODE": "both",
        "EDGELINE_MQTT_PROTOCOL": "4",
        "EDGELINE_MQTT_SESSION_EXPIRY_SECONDS": "-1",
        "EDGELINE_WORKER_THREADS": "many",
    }
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)
    text = str(excinfo.value)
    assert text.startswith("4 settings to fix:")
    for name in ("ENROLLMENT_MODE", "MQTT_PROTOCOL", "MQTT_SESSION_EXPIRY_SECONDS", "WORKER_THREADS"):
        assert f"EDGELINE_{name}" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["up"],
        ["station", "run", "--name", "S1", "--key-file", "S1.key", "--watch-dir", "ports", "--simulate", "1"],
    ],
)
def test_up_and_station_refuse_the_emulator_with_azures_endpoint_in_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("EDGELINE_")]:
        monkeypatch.delenv(name)
    for name, value in COMPLETE.items():
        if name != "EDGELINE_DPS_GLOBAL_ENDPOINT":
            monkeypatch.setenv(name, value)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgeline {argv[0]}: the device global endpoint"), err
    assert "is Azure's but the DPS service is http://127.0.0.1:5080" in err[0]


def test_up_reports_invalid_values_and_missing_settings_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("EDGELINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EDGELINE_MQTT_PROTOCOL", "4")
    monkeypatch.setenv("EDGELINE_WORKER_THREADS", "none")
    assert main(["up"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "edgeline up: 6 settings to fix:"
    text = "\n".join(err[1:])
    for setting in ("MQTT_PROTOCOL", "WORKER_THREADS", "MQTT_URL", "DPS_CONNECTION_STRING", "DPS_ID_SCOPE"):
        assert f"EDGELINE_{setting}" in text
    assert "EDGELINE_MASTER_KEY" in text and len(err) == 7
