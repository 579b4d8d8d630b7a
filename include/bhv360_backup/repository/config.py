"""The configuration backup format: one deterministic ``config.json`` (sorted keys, fixed indentation)
whose secret-looking Airflow variables are masked; with a Supabase project, its configuration in the
``project`` section with every secret value replaced by a marker (set or unset, and a fingerprint that
shows a change without the value), the values themselves in ``project-secrets.json`` (written only
when the backup is encrypted), and each Edge Function's body as ``functions/<slug>.body``."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.locations.base import Location
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import read_checked_artifact

CONFIG_ARTIFACT = "config.json"
PROJECT_SECRETS_ARTIFACT = "project-secrets.json"
CONFIG_FORMAT = 1
MASK = "***"

SECRET_FIELD = re.compile(r"(_secrets?|^smtp_pass|_auth_token|_api_key|_access_key)$")
# what a GET returns for these is a SHA-256 digest of the value, never the value (as the Supabase CLI reads it)
DIGEST_FIELD = re.compile(r"^(smtp_pass|hook_\w+_secrets)$")
SECRET_SECTIONS = ("auth", "postgrest")
_FINGERPRINT_KEY = b"bhv360 config fingerprint v1"
_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def fingerprint(value: Any) -> str:
    """A keyed digest that shows whether a value changed, not what it is."""
    data = json.dumps(value, sort_keys=True, default=str).encode()
    return hmac.new(_FINGERPRINT_KEY, data, hashlib.sha256).hexdigest()[:16]


def is_secret_field(section: str, field: str, value: Any) -> bool:
    return section in SECRET_SECTIONS and bool(SECRET_FIELD.search(field)) and not isinstance(value, bool)


def secret_marker(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {"secret": "unset"}
    return {"secret": "set", "fingerprint": fingerprint(value)}


def split_secrets(section: str, data: Any) -> tuple[Any, dict[str, Any]]:
    """A section with each secret value replaced by its marker, and the values taken out."""
    if not isinstance(data, dict):
        return data, {}
    shown, hidden = {}, {}
    for field, value in data.items():
        if is_secret_field(section, field, value):
            shown[field] = secret_marker(value)
            if value not in (None, ""):
                hidden[field] = value
        else:
            shown[field] = value
    return shown, hidden


def secret_digests(listed: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The project's secrets as ``GET /secrets`` lists them, kept as names and the digests it gives, by name."""
    return [{"name": item["name"], "sha256": item["value"]} for item in sorted(listed, key=lambda item: item["name"])]


def function_body_artifact(slug: str) -> str:
    if not _SLUG.match(slug):
        raise ValueError(f"function slug {slug!r} is not a slug ([A-Za-z0-9_-])")
    return f"functions/{slug}.body"


def project_fields(project: Mapping[str, Any]) -> dict[str, str]:
    """Every setting of a ``project`` section as ``section.field`` (a list's items by their slug, name or
    id), with its fingerprint: what a later backup compares to say what changed."""
    fields = {}
    for section, data in project.items():
        if isinstance(data, dict):
            for field, value in data.items():
                fields[f"{section}.{field}"] = fingerprint(value)
        elif isinstance(data, list):
            for index, item in enumerate(data):
                key = next((item[k] for k in ("slug", "name", "id", "identifier") if isinstance(item, dict)
                            and item.get(k)), index)
                fields[f"{section}[{key}]"] = fingerprint(item)
        else:
            fields[section] = fingerprint(data)
    return dict(sorted(fields.items()))


def watched(changes: Mapping[str, str], patterns: Sequence[str]) -> list[str]:
    """The changed fields a watch list names (``auth.external_*_enabled``: shell-style patterns)."""
    return [field for field in changes if any(fnmatch.fnmatchcase(field.split("[")[0], pattern)
                                              for pattern in patterns)]


def changed_fields(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """``{field: "added" | "removed" | "changed"}`` between two backups' fields."""
    changes = {}
    for field in sorted(set(before) | set(after)):
        if field not in before:
            changes[field] = "added"
        elif field not in after:
            changes[field] = "removed"
        elif before[field] != after[field]:
            changes[field] = "changed"
    return changes


def encode(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, so equal documents are equal bytes."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n").encode()


def read_config(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> dict[str, Any]:
    """The checked configuration document of a config backup (decrypted with ``identities``)."""
    return json.loads(read_checked_artifact(location, manifest, CONFIG_ARTIFACT, identities))
