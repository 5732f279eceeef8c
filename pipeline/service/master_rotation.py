"""Re-seal every stored secret under a new master key, without stopping the line.

How a rotation runs with no downtime (docs/key-custody.md): every worker is first given the old key as
`master_key_previous_file` and the new one as its master key (it then seals under the new key and still
unseals blobs sealed under the old); this re-seals what is left, in small transactions so workers are
never blocked for long; finally `master_key_previous_file` is removed. Running it again re-seals only
blobs not yet under the new key, so a crash mid-way is finished by running it again.
Not responsible for: where the keys come from (`pipeline.keystore.custody`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pipeline.crypto.sealing import KeySealer
from pipeline.keystore.sealed import SealedGroupKeyStore
from pipeline.service.common import device_key_context
from pipeline.service.unit_of_work import GroupRecord, UnitOfWork

ACTOR = "operator"
BATCH = 500
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class MasterRotation:
    """What was re-sealed."""

    new_key_id: str
    device_keys: int
    group_keys: int


def rotate_master_key(
    uow_factory: Callable[[], UnitOfWork],
    sealer: KeySealer,
    clock: Callable[[], datetime],
    *,
    group_keys_sealed: bool,
    actor: str = ACTOR,
    on_progress: Progress = lambda done: None,
) -> MasterRotation:
    """Re-seal device keys (and database-sealed group keys) not yet under `sealer`'s current key."""
    devices = _reseal_device_keys(uow_factory, sealer, on_progress)
    groups = _reseal_group_keys(uow_factory, sealer) if group_keys_sealed else 0
    with uow_factory() as uow:
        uow.audit.append(
            at=clock(),
            kind="keys.master_rotated",
            actor=actor,
            registration_id=None,
            detail={"master_key_id": sealer.key_id, "device_keys": devices, "group_keys": groups},
        )
        uow.commit()
    return MasterRotation(sealer.key_id, devices, groups)


def _reseal_device_keys(
    uow_factory: Callable[[], UnitOfWork], sealer: KeySealer, on_progress: Progress
) -> int:
    after: str | None = None
    done = 0
    while True:
        with uow_factory() as uow:
            page = uow.keys.page(after, BATCH)
            for registration_id, blob in page:
                if not sealer.sealed_with_current_key(blob):
                    context = device_key_context(registration_id)
                    uow.keys.put(
                        registration_id,
                        sealer.seal_key(sealer.unseal_key(blob, context=context), context=context),
                    )
                    done += 1
            uow.commit()
        if not page:
            return done
        after = page[-1][0]
        on_progress(done)


def _reseal_group_keys(uow_factory: Callable[[], UnitOfWork], sealer: KeySealer) -> int:
    store = SealedGroupKeyStore(sealer)
    done = 0
    with uow_factory() as uow:
        for record in uow.groups.list():
            handles = []
            for slot, blob in (
                ("primary", record.sealed_primary_key),
                ("secondary", record.sealed_secondary_key),
            ):
                if sealer.sealed_with_current_key(blob):
                    handles.append(blob)
                else:
                    handles.append(
                        store.store(record.group_id, slot, store.reveal(blob, record.group_id, slot))
                    )
                    done += 1
            uow.groups.put(
                GroupRecord(record.group_id, record.product, handles[0], handles[1], record.created_at)
            )
        uow.commit()
    return done
