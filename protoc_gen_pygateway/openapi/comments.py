"""Descriptions and deprecation of proto elements, from the request's FileDescriptorProtos.

Comments come from `source_code_info`, which protoc fills only for the files to generate: types of other
files (the well-known types, imported protos) get no description. `deprecated` options are read from every
file. Keys are `kind:full.name`, e.g. `message:shop.v1.Book`, `field:shop.v1.Book.title`,
`method:shop.v1.ShopService.GetBook`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

# Field numbers in descriptor.proto, as they appear in SourceCodeInfo.Location.path.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

#: AIP-192 internal comments: `(-- api-linter: ... --)` is for API authors, not readers.
_INTERNAL = re.compile(r"\(--.*?--\)", re.DOTALL)


@dataclass(frozen=True)
class Doc:
    description: str = ""
    deprecated: bool = False


def clean_comment(text: str) -> str:
    """A protoc comment as Markdown text: one leading space per line removed, blank edges dropped."""
    text = _INTERNAL.sub("", text)
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    lines = [line.rstrip() for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


class DocIndex:
    """Description and deprecation of every message, field, oneof, enum, enum value, service and method;
    and the values of every enum (the model's registry does not keep them)."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._docs: dict[str, Doc] = {}
        #: enum full name -> (value name, number) in declaration order
        self.enum_values: dict[str, tuple[tuple[str, int], ...]] = {}
        for file in files:
            comments: dict[tuple[int, ...], str] = {}
            for location in file.source_code_info.location:
                parts = [clean_comment(location.leading_comments), clean_comment(location.trailing_comments)]
                text = "\n\n".join(p for p in parts if p)
                if text:
                    comments[tuple(location.path)] = text
            prefix = f"{file.package}." if file.package else ""
            for i, message in enumerate(file.message_type):
                self._message(message, prefix, (_FILE_MESSAGE, i), comments)
            for i, enum in enumerate(file.enum_type):
                self._enum(enum, prefix, (_FILE_ENUM, i), comments)
            for i, service in enumerate(file.service):
                path = (_FILE_SERVICE, i)
                full = prefix + service.name
                self._add("service", full, path, comments, service.options.deprecated)
                for j, method in enumerate(service.method):
                    deprecated = method.options.deprecated or service.options.deprecated
                    self._add(
                        "method", f"{full}.{method.name}", (*path, _SERVICE_METHOD, j), comments, deprecated
                    )

    def _add(
        self,
        kind: str,
        full: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
        deprecated: bool,
    ) -> None:
        self._docs[f"{kind}:{full}"] = Doc(comments.get(path, ""), deprecated)

    def _message(
        self,
        message: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        full = prefix + message.name
        self._add("message", full, path, comments, message.options.deprecated)
        for i, field in enumerate(message.field):
            self._add(
                "field",
                f"{full}.{field.name}",
                (*path, _MESSAGE_FIELD, i),
                comments,
                field.options.deprecated,
            )
        for i, oneof in enumerate(message.oneof_decl):
            self._add("oneof", f"{full}.{oneof.name}", (*path, _MESSAGE_ONEOF, i), comments, False)
        for i, nested in enumerate(message.nested_type):
            self._message(nested, full + ".", (*path, _MESSAGE_NESTED, i), comments)
        for i, enum in enumerate(message.enum_type):
            self._enum(enum, full + ".", (*path, _MESSAGE_ENUM, i), comments)

    def _enum(
        self,
        enum: descriptor_pb2.EnumDescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        full = prefix + enum.name
        self._add("enum", full, path, comments, enum.options.deprecated)
        self.enum_values[full] = tuple((value.name, value.number) for value in enum.value)
        for i, value in enumerate(enum.value):
            self._add(
                "value", f"{full}.{value.name}", (*path, _ENUM_VALUE, i), comments, value.options.deprecated
            )

    def get(self, kind: str, full_name: str) -> Doc:
        return self._docs.get(f"{kind}:{full_name}", Doc())


__all__ = ["Doc", "DocIndex", "clean_comment"]
