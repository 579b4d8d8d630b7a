"""Relative paths that cannot leave their folder: a location's keys and a restored object's path."""

from __future__ import annotations

from bhv360_backup.errors import BackupError


def check_relative_path(path: str) -> str:
    """Refuse a path that could leave its folder: absolute, ``..``, empty parts, NUL or backslash."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise BackupError(f"unsafe relative path {path!r}")
    parts = path.split("/")
    if "" in parts or "." in parts or ".." in parts:
        raise BackupError(f"unsafe relative path {path!r}")
    return path
