"""Pre-fill a benchmark database with generated history, to show per-unit cost does not grow with it.

`seed(url, n)` adds n assigned units, about six audit records, processed-message ids and published
outbox rows per unit (the shape a line leaves behind), chains the audit head past them and ANALYZEs.
The audit hashes are placeholders: `edgeline audit verify` is not meaningful on a seeded database.
"""

from __future__ import annotations

import psycopg

PER_UNIT = 6  # audit records / processed ids / outbox rows one unit leaves behind

_UNITS = """
INSERT INTO units (registration_id, serial, mac, line, station, port, product, mode, state, group_id,
    device_id, assigned_hub, attempts, rework_count, checks, scanned_at, keyed_at, enrolled_at,
    config_issued_at, flashed_at, assigned_at, created_at, updated_at)
SELECT 'sn-seed' || g || '-mac-' || replace(m, ':', '-'), 'SEED' || g, m, 'line1', 'S1', 'p0', 'default',
    'group', 'assigned', 'edgeline-default', 'sn-seed' || g, 'edgeline-hub-1.azure-devices.net', 1, 0, 1,
    t, t, t, t, t, t, t, t
FROM (SELECT g, '02:5e:' || substr(h, 1, 2) || ':' || substr(h, 3, 2) || ':' || substr(h, 5, 2) || ':'
             || substr(h, 7, 2) AS m, now() - interval '1 day' + g * interval '1 millisecond' AS t
      FROM (SELECT g, lpad(to_hex(g), 8, '0') AS h FROM generate_series(1, %(n)s::int) g) s) x
"""
_AUDIT = """
INSERT INTO audit_log (id, at, kind, actor, registration_id, detail, prev_hash, hash)
SELECT g, now() - interval '1 day' + g * interval '1 millisecond', 'unit.seeded', 'seed',
    'sn-seed' || (g / 6), '{}', lpad(to_hex(g - 1), 64, '0'), lpad(to_hex(g), 64, '0')
FROM generate_series(%(first)s::int, %(last)s::int) g
"""
_PROCESSED = """
INSERT INTO processed_messages (event_id, handler, processed_at)
SELECT md5(g::text), 'seed', now() - interval '1 hour' FROM generate_series(1, %(m)s::int) g
"""
_OUTBOX = """
INSERT INTO outbox (event_id, topic, payload, created_at, published_at)
SELECT 'seed-' || g, 'seed/topic', '\\x7b7d', now() - interval '2 hours', now() - interval '2 hours'
FROM generate_series(1, %(m)s::int) g
"""


def seed(url: str, n: int) -> None:
    """Add n generated units and their history to the (migrated, otherwise empty) database at `url`."""
    if n <= 0:
        return
    m = n * PER_UNIT
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_UNITS, {"n": n})
        last = conn.execute("SELECT last_id FROM audit_head WHERE id = 1").fetchone()
        first = (last[0] if last else 0) + 1
        conn.execute(_AUDIT, {"first": first, "last": first + m - 1})
        conn.execute(
            "UPDATE audit_head SET last_id = %(last)s::int, last_hash = lpad(to_hex(%(last)s::int), 64, '0')",
            {"last": first + m - 1},
        )
        conn.execute(_PROCESSED, {"m": m})
        conn.execute(_OUTBOX, {"m": m})
        conn.execute("ANALYZE")
