"""Every setting and every command is documented where a user looks: the README or a page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

import click

from interpedia.cli import main
from interpedia.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _docs() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(p.read_text() for p in pages)


def _commands(group: click.Group, prefix: str) -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        out.append(path)
        if isinstance(command, click.Group):
            out.extend(_commands(command, path))
    return out


def test_every_setting_is_documented() -> None:
    text = _docs()
    names = [f"INTERPEDIA_{name.upper()}" for name in Settings.model_fields]
    missing = [n for n in names if not re.search(rf"\b{n}\b", text)]
    assert not missing, f"settings not in README.md or docs/*.md: {missing}"


def test_every_command_is_documented() -> None:
    text = _docs()
    missing = [c for c in _commands(main, "interpedia") if c not in text]
    assert not missing, f"commands not in README.md or docs/*.md: {missing}"
