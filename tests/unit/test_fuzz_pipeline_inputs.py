"""Fuzz the pipeline's untrusted inputs: identities, registration ID templates, CloudEvents, the config file.

Each parser either returns a value or raises its documented error (`IdentityError`, `DecodeError`,
`ConfigError`) with a non-empty reason; nothing else escapes, and an accepted registration ID always
satisfies the article's rule.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.bus.cloudevents import DecodeError, decode
from pipeline.config import ConfigError, Settings, load_settings
from pipeline.domain.events import BY_TYPE
from pipeline.domain.identity import DeviceIdentity, IdentityError, check_template

FUZZ = settings(max_examples=300, deadline=None)
VALID_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _reason(exc: Exception) -> None:
    assert str(exc).strip(), f"{type(exc).__name__} without a reason"


@FUZZ
@given(
    st.text(max_size=80),
    st.text(max_size=40),
    st.sampled_from(["sn-{serial}-mac-{mac}", "{mac}", "x{serial}"]),
)
def test_registration_ids_are_valid_or_refused_with_a_reason(serial: str, mac: str, template: str) -> None:
    try:
        registration_id = DeviceIdentity.parse(serial, mac).registration_id(template)
    except IdentityError as exc:
        _reason(exc)
        return
    assert VALID_ID.fullmatch(registration_id), registration_id


@FUZZ
@given(
    st.from_regex(r"[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}", fullmatch=True), st.text(min_size=1, max_size=20)
)
def test_mac_shaped_input(mac: str, serial: str) -> None:
    try:
        DeviceIdentity.parse(serial, mac).registration_id()
    except IdentityError as exc:
        _reason(exc)


@FUZZ
@given(st.text(max_size=60))
def test_templates(template: str) -> None:
    try:
        check_template(template)
    except IdentityError as exc:
        _reason(exc)


@FUZZ
@given(st.binary(max_size=2000))
def test_cloudevents_of_random_bytes(payload: bytes) -> None:
    try:
        decode(payload)
    except DecodeError as exc:
        _reason(exc)


@FUZZ
@given(
    st.sampled_from(sorted(BY_TYPE)),
    st.dictionaries(st.sampled_from(["id", "source", "time", "subject", "specversion"]), json_values),
    json_values | st.dictionaries(st.text(max_size=20), json_values, max_size=8),
)
def test_cloudevents_shaped_like_ours(event_type: str, attributes: dict[str, object], data: object) -> None:
    body = {
        "specversion": "1.0",
        "type": event_type,
        "id": "x",
        "source": "s",
        "time": "2026-12-03T00:00:00Z",
    }
    body |= attributes
    body["data"] = data
    try:
        decode(json.dumps(body).encode())
    except DecodeError as exc:
        _reason(exc)


FIELDS = sorted(f.name for f in dataclasses.fields(Settings))
toml_scalars = st.one_of(
    st.text(max_size=30).map(json.dumps),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["nan", "inf", "-inf"]),
    st.sampled_from(["true", "false", '["a", "b"]', "[1, 2]", "{ x = 1 }", "1979-05-27T07:32:00Z"]),
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(FIELDS).map(lambda n: f"EDGELINE_{n.upper()}"), st.text(max_size=40), max_size=6
    )
)
def test_environment_settings(env: dict[str, str]) -> None:
    try:
        load_settings(env=env)
    except ConfigError as exc:
        _reason(exc)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), toml_scalars, max_size=6), st.booleans())
def test_config_files_with_known_settings(values: dict[str, str], table: bool) -> None:
    lines = ["[edgeline]"] if table else []
    _load_config_text("\n".join([*lines, *(f"{k} = {v}" for k, v in values.items())]))


@FUZZ
@given(st.text(max_size=300))
def test_config_files(text: str) -> None:
    _load_config_text(text)


def _load_config_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edgeline.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_settings(path, env={})
        except ConfigError as exc:
            _reason(exc)
