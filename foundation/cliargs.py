"""Small helpers shared by the command-line tools."""

from __future__ import annotations

from pathlib import Path


def parse_pairs(items: list[str], option: str) -> dict[str, Path]:
    """``["ISS=FILE", ...]`` as ``{ISS: Path(FILE)}``; raises ``ValueError`` naming ``option`` on a bad item."""
    out: dict[str, Path] = {}
    for item in items:
        key, _, path = item.partition("=")
        if not key or not path:
            raise ValueError(f"{option} takes NAME=FILE, not {item!r}")
        out[key] = Path(path)
    return out
