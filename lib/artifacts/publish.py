"""Publishing state under the warehouse, one way for every artifact (model versions, feature specs,
ESCIM labelers, train caches): write everything into a private staging folder, then make it visible
with ONE rename. A reader sees a complete folder or none; a killed writer leaves only a staging folder
(removed by housekeeping); two writers never share a folder.

* ``publish_next_version``: the folder becomes the next free ``vNNNN`` (the rename fails when another
  writer took that number first, and the next one is tried), so two jobs never claim one version.
* ``publish_as``: the folder becomes ``name`` (a content-addressed key); when another writer published
  that key first, ours is dropped and theirs is used, since both hold the same content.
* ``write_text_atomic``: a single small file (a pointer such as ``CURRENT``), replaced in one step.
* ``exclusive_lock``: for work that must run once although two jobs may start it (the first feature
  spec of a warehouse, one training run): an flock the OS drops when its holder dies.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import uuid

logger = logging.getLogger(__name__)

VERSION = re.compile(r"^v[0-9]{4,}$")
STAGING_PREFIX = "_staging-"  # a folder that never published (housekeeping removes old ones)


def new_staging(parent: str) -> str:
    """A fresh, empty folder under ``parent`` that no other writer uses."""
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.makedirs(path)
    return path


def versions_in(parent: str) -> list[str]:
    if not os.path.isdir(parent):
        return []
    return sorted((v for v in os.listdir(parent) if VERSION.match(v)), key=lambda v: int(v[1:]))


def publish_next_version(parent: str, staging: str) -> str:
    """Rename the complete ``staging`` folder to the next free ``vNNNN`` under ``parent``."""
    while True:
        existing = versions_in(parent)
        version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
        try:
            os.rename(staging, os.path.join(parent, version))  # fails onto a non-empty folder
            return version
        except OSError:
            if not os.path.isdir(os.path.join(parent, version)):
                raise


def publish_as(parent: str, name: str, staging: str) -> bool:
    """Rename ``staging`` to ``parent/name``; False (and ``staging`` removed) when it already existed."""
    target = os.path.join(parent, name)
    try:
        os.rename(staging, target)
        return True
    except OSError:
        if not os.path.isdir(target):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False


def write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def exclusive_lock(path: str, waiting: str = ""):
    """Hold an flock on ``path`` (created, with its folder) for the block; a second holder waits, and
    says ``waiting`` (when given) once before it does. A killed holder never leaves it taken."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                logger.info(waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
