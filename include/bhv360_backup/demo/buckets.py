"""A small demo bucket tree: certificates (PDF), floor plans and photos (PNG), nested folders,
names with spaces and non-ASCII letters. Deterministic, so a second run changes nothing."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path


def _pdf(title: str, rng: random.Random) -> bytes:
    lines = " ".join(f"({title} regel {i}: {rng.random():.6f}) Tj" for i in range(rng.randint(20, 200)))
    stream = f"BT /F1 10 Tf 40 800 Td {lines} ET".encode()
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n2 0 obj << /Length "
            + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream endobj\n%%EOF\n")


def _png(width: int, height: int, rng: random.Random) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(width * 3)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def create_demo_buckets(root: Path, organisations: int = 20) -> int:
    """Write the tree under ``root`` (one folder per bucket) unless it is there; return the file count."""
    if root.exists():
        return sum(1 for path in root.rglob("*") if path.is_file())
    rng = random.Random(360)
    count = 0
    for org in range(1, organisations + 1):
        for staff in range(1, 11):
            path = root / "certificates" / f"org-{org}" / f"staff-{staff}" / "BHV basis.pdf"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_pdf(f"Certificaat {org}-{staff}", rng))
            count += 1
        for floor in range(1, 4):
            path = root / "floor-plans" / f"org-{org}" / f"verdieping {floor}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_png(48, 32, rng))
            count += 1
        path = root / "incident-photos" / f"org-{org}" / "2026" / f"ontruiming café {org}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(64, 48, rng))
        count += 1
    (root / "public-assets").mkdir(parents=True, exist_ok=True)
    (root / "public-assets" / "logo.png").write_bytes(_png(32, 32, rng))
    (root / "public-assets" / "empty.txt").write_bytes(b"")
    return count + 2
