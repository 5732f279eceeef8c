"""The session operator commands (`group`, `enrollment`) run in, with their errors as one line each.

Responsible for: loading settings, opening the bootstrap's AdminSession, closing it, and turning the
expected failures (DPS unreachable or refusing, database missing, key not stored, a refused
operation) into `CommandError` so the operator sees one line naming what to fix.
Not responsible for: what a command does (pipeline.service.groups / revocation) or wiring
(pipeline.bootstrap).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.azure.ports import AzureError
from pipeline.bootstrap import AdminSession, open_admin
from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_FAILURE, CommandError
from pipeline.crypto.sealing import SealError
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.keystore.ports import KeyStoreError
from pipeline.service.common import KeyUnavailable
from pipeline.service.group_keys import GroupKeyMismatch
from pipeline.service.groups import GroupError
from pipeline.service.revocation import RevocationError

EXPECTED = (
    DatabaseUnavailable,
    SchemaMissing,
    KeyUnavailable,
    GroupError,
    RevocationError,
    KeyStoreError,
    GroupKeyMismatch,
)


@contextmanager
def admin_session(args: argparse.Namespace, **overrides: Any) -> Iterator[AdminSession]:
    """Yield an AdminSession from --config, EDGELINE_* and `overrides`; expected failures: CommandError."""
    session = open_admin(settings_from(args, **overrides))
    try:
        yield session
    except AzureError as exc:
        raise CommandError(f"DPS: {exc}", EXIT_FAILURE) from None
    except SealError as exc:
        raise CommandError(
            f"cannot unseal a stored key ({exc}): is EDGELINE_MASTER_KEY the key they were sealed with?"
        ) from None
    except EXPECTED as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from None
    finally:
        session.close()
