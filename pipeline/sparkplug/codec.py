"""Sparkplug B payloads and topics through `pysparkplug` (the only module importing it).

Responsible for: turning edgeline's metrics into NBIRTH/DBIRTH/NDATA/DDATA/NDEATH protobuf payloads
(timestamps in ms since the epoch, datatypes in births, `bdSeq` in NBIRTH and NDEATH, the mandatory
`Node Control/Rebirth` metric in NBIRTH) and the `spBv1.0/{group}/{type}/{node}[/{device}]` topics.
Not responsible for: MQTT sessions (pysparkplug's own client needs paho-mqtt 1.x; edgeline publishes
through its bus port on paho 2.x) or sequence numbering (publisher).
"""

from __future__ import annotations

import pysparkplug as spb

from pipeline.sparkplug.model import Kind, MetricValue

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
_TYPES = {
    Kind.INT64: spb.DataType.INT64,
    Kind.UINT64: spb.DataType.UINT64,
    Kind.DOUBLE: spb.DataType.DOUBLE,
    Kind.STRING: spb.DataType.STRING,
    Kind.BOOLEAN: spb.DataType.BOOLEAN,
}


def topic(message_type: str, group: str, node: str, device: str | None = None) -> str:
    """`spBv1.0/{group}/{NBIRTH|...}/{node}[/{device}]`."""
    return "/".join([NAMESPACE, group, message_type, node, *([device] if device else [])])


def _metric(metric: MetricValue, timestamp: int) -> spb.Metric:
    return spb.Metric(timestamp=timestamp, name=metric.name, datatype=_TYPES[metric.kind], value=metric.value)


def node_birth(timestamp: int, bd_seq: int, metrics: list[MetricValue]) -> bytes:
    """NBIRTH: seq 0, bdSeq of this session, Node Control/Rebirth, then the line's metrics."""
    extra = [MetricValue(BD_SEQ, Kind.INT64, bd_seq), MetricValue(REBIRTH, Kind.BOOLEAN, False)]
    payload = spb.NBirth(timestamp, 0, tuple(_metric(m, timestamp) for m in [*extra, *metrics]))
    return bytes(payload.encode(include_dtypes=True))


def device_birth(timestamp: int, seq: int, metrics: list[MetricValue]) -> bytes:
    """DBIRTH: every metric of the device, with its datatype."""
    payload = spb.DBirth(timestamp, seq, tuple(_metric(m, timestamp) for m in metrics))
    return bytes(payload.encode(include_dtypes=True))


def data(timestamp: int, seq: int, metrics: list[MetricValue], *, device: bool) -> bytes:
    """NDATA or DDATA with the changed metrics."""
    kind = spb.DData if device else spb.NData
    return bytes(
        kind(timestamp, seq, tuple(_metric(m, timestamp) for m in metrics)).encode(include_dtypes=True)
    )


def node_death(bd_seq: int) -> bytes:
    """NDEATH: only the bdSeq of the session it ends (registered as the MQTT will at connect)."""
    metric = spb.Metric(timestamp=None, name=BD_SEQ, datatype=spb.DataType.INT64, value=bd_seq)
    return bytes(spb.NDeath(timestamp=spb.get_current_timestamp(), bd_seq_metric=metric).encode())


def is_rebirth_request(raw: bytes) -> bool:
    """Whether an NCMD payload sets `Node Control/Rebirth` true (what a host sends to get births again).

    A payload that does not decode is not a request (the caller logs it; a host cannot crash the node).
    """
    try:
        command = spb.NCmd.decode(raw)
    except Exception:  # protobuf's DecodeError and pysparkplug's own errors: untrusted bytes
        return False
    return any(m.name == REBIRTH and m.value is True for m in command.metrics)
