"""Reviewed vulture whitelist: names vulture calls unused that are used, by a framework or by tests.

Run: `vulture pipeline stations examples .ci/vulture_whitelist.py --min-confidence 60` (from .ci/run).
Add a name here only with the reason it is alive; anything really unused is deleted instead
(e.g. `Unit.is_past`).
This file is never imported; each line is an expression that "uses" one name.
"""

# ruff: noqa: F821, B018

# Signatures fixed by a protocol (__exit__, signal handlers, paho callbacks, an emulator port method).
exc_info  # pipeline/azure/dps_service.py: __exit__
tb  # pipeline/cli/station_output.py, stations/runtime/operator_view.py: __exit__
frame  # pipeline/cli/common.py: signal handler
signum  # pipeline/cli/common.py: signal handler
props  # pipeline/bus/paho.py: paho callback signature
userdata  # pipeline/bus/paho.py: paho callback signature
new_hub  # pipeline/emulator/hub_registry.py: move(old_hub, new_hub, ...) port signature

# Set for a library that reads them: paho, rich, SQLAlchemy, http.server, socketserver, shlex.
_.on_connect  # paho client callbacks
_.on_disconnect
_.on_publish
_.on_subscribe
_.on_connect_fail
_.on_pre_connect
_.SessionExpiryInterval  # paho MQTT v5 properties
_.caption  # rich Table
_.isolation_level  # SQLAlchemy connection (SQLite BEGIN handling)
_on_begin  # SQLAlchemy event listeners (decorated)
_on_error
impl  # SQLAlchemy TypeDecorator
cache_ok
_.process_bind_param
_.process_result_value
metadata  # SQLAlchemy declarative base
type_annotation_map
scanned_at  # SQLAlchemy mapped columns (written and read through the ORM, audited by SQL)
keyed_at
enrolled_at
assigned_at
flashed_at
online_at
not_online_at
failed_at
quarantined_at
revoked_at
processed_at
protocol_version  # http.server.BaseHTTPRequestHandler
server_version
wbufsize
disable_nagle_algorithm
do_DELETE
do_PATCH
do_POST
do_PUT
_.log_message
_.close_connection
_.handle_error
daemon_threads  # socketserver.ThreadingMixIn
block_on_close
allow_reuse_address
_.whitespace_split  # shlex lexer in stations/drivers/linux_console/simulated_shell.py

# Data carried on the wire or in records (read by consumers outside Python, or by the JSON codec).
redelivered  # pipeline/bus/ports.py InboundMessage: set by the bus adapters, asserted by bus tests
conflicting_registration_id  # pipeline/domain/events.py: field of unit.quarantined.v1 (JSON Schema)
created  # pipeline/emulator/hub_registry.py: record field never read; left to the emulator's owner

# Public API used by tests, benchmarks or entry points (not by pipeline/stations code itself).
_.to_string  # pipeline/azure/sas.py: tests/unit/test_sas.py
validate_published  # pipeline/bus/contract.py: contract tests and tests/e2e
HAPPY_PATH  # pipeline/domain/model.py: the state machine's happy path, asserted by tests
_.set_faults  # pipeline/emulator/server.py: fault injection used by integration tests
conformance_kit  # stations/drivers/*/conformance.py: found by tests/integration/drivers/test_conformance.py
_.flashed_files  # simulators (stations/drivers/port.py SimulatedUnit): read by tests
simulator  # stations/drivers/port.py SimulatorKit fields: read by the conformance tests
unplug_mid_flash
unverifiable
recoverable

# CLI runners named by string (`func="pipeline.cli.x_run:name"`), imported by pipeline.cli.main.resolve.
demo  # pipeline/cli/demo_run.py
disable  # pipeline/cli/enrollment_run.py
enable  # pipeline/cli/enrollment_run.py
up  # pipeline/cli/up_run.py
_keygen  # pipeline/cli/audit_sign_run.py
_shift  # pipeline/cli/report_run.py
_token_create  # pipeline/cli/web_run.py
_token_list
_token_revoke

# Read by people and audit queries, not by code: when the MES decided (unit_approvals.decided_at).
decided_at

# Called by OpenHTF: plug lifecycle and the test API's attributes (stations/htf), and by station scripts.
auto_placeholder
tearDown
_.dut_id
_.scan_to_config_seconds
_.flash_seconds
_.fixture_powered  # examples/openhtf_station.py

# Web (FastAPI/Starlette routes are registered by their decorators; Jinja2 and uvicorn read attributes).
export_units_csv
export_units_json
export_records
metrics_endpoint
live_page
live_fragment
units_page
unit_page
_.undefined  # jinja2 Environment(undefined=StrictUndefined)
_.should_exit  # uvicorn.Server: set to stop it
collect  # prometheus-client custom collector protocol
next_runs  # APScheduler job introspection, read by tests/integration/test_shift_report_cli.py
_.assign_seconds  # OpenHTF measurement (stations/htf/phases.py)
_.fatal_error  # PahoBus: why the bus gave up, read by tests/integration/test_bus_sessions.py
_.feeding_error  # SimulatedFleet: why the feeder stopped, read by tests/unit/test_fleet.py
MAY_PASS  # stations/simulation/hostile.py: which hostile kinds may still pass, read by tests/faults
