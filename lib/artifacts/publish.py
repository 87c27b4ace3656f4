"""Publishing state under the warehouse, one way for every artifact (model versions, feature specs,
ESCIM labelers, train caches): write everything into a private staging folder, then make it visible
with ONE rename. A reader sees a complete folder or none; a killed writer leaves only a staging folder
(removed by housekeeping); two writers never share a folder.

* ``publish_next_version``: the folder becomes the next free ``vNNNN`` (the rename fails when another
  writer took that number first, and the next one is tried), so two jobs never claim one version.
* ``publish_as``: the folder becomes ``name`` (a content-addressed key); when another writer published
  that key first, ours is dropped and theirs is used, since both hold the same content.
* ``write_text_atomic``: a single small file (a pointer such as ``CURRENT``), replaced in one step.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid

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
