"""PostgreSQL's own rules for where a change stands: the order of WAL positions, and whether a
transaction is visible in a snapshot. The capture (a source) and the replay (a consumer) both follow them."""

from __future__ import annotations

from typing import Any


def lsn_position(lsn: str) -> int:
    """An LSN (``16/B374D848``) as a number, for ordering."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def snapshot_visible(snapshot: dict[str, Any], xid: int) -> bool:
    """Whether transaction ``xid`` (32-bit, as decoded) is visible in a recorded ``pg_current_snapshot()``
    (``xmin``, ``xmax``, ``xip`` as 64-bit numbers): committed before the snapshot was taken."""
    xmin, xmax = snapshot["xmin"], snapshot["xmax"]
    base = (xmax & ~0xFFFFFFFF) | xid
    full = min((base - (1 << 32), base, base + (1 << 32)), key=lambda value: abs(value - xmax))  # nearest epoch
    if full < xmin:
        return True
    return full < xmax and full not in set(snapshot["xip"])
