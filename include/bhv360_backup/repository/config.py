"""The configuration backup format: one deterministic ``config.json`` (sorted keys, fixed indentation)
whose secret-looking Airflow variables are masked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.locations.base import Location
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import read_checked_artifact

CONFIG_ARTIFACT = "config.json"
CONFIG_FORMAT = 1
MASK = "***"


def encode(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, so equal documents are equal bytes."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n").encode()


def read_config(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> dict[str, Any]:
    """The checked configuration document of a config backup (decrypted with ``identities``)."""
    return json.loads(read_checked_artifact(location, manifest, CONFIG_ARTIFACT, identities))
