"""Python literals for generated code: proto names are identifiers, but JSON names (`json_name`) and
path templates are arbitrary text, so every string written into a module goes through here."""

from __future__ import annotations


def pyrepr(value: object) -> str:
    """A Python literal; strings in double quotes (ruff's preferred style) when that needs no escapes."""
    if isinstance(value, str) and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return repr(value)
