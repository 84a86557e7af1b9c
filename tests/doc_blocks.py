"""Fenced code blocks of the Markdown docs, for tests that run them verbatim."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

_FENCE = re.compile(
    r"^```(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """1-based line of the opening fence."""
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """`NAME` when the block's first line is a `# NAME` comment naming a file (yaml/toml blocks)."""
        first = self.text.split("\n", 1)[0]
        match = re.fullmatch(r"#\s*([\w./-]+\.(?:ya?ml|toml|json|cfg|ini))\s*", first)
        return match.group(1) if match else None


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, in order."""
    text = path.read_text("utf-8")
    return [
        Block(path, text.count("\n", 0, match.start()) + 1, match.group("lang"), match.group("body"))
        for match in _FENCE.finditer(text)
    ]
