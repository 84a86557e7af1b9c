"""Pure (stdlib-only) ``google.api.http`` path templates: parse, render and compile.

``reference`` holds a regex-based matcher used by tests; import it explicitly.
"""

from .compiler import Capture, CompiledSegment, CompiledTemplate, SegmentKind, compile_template
from .parser import (
    DeepWildcard,
    Literal,
    PlainSegment,
    Segment,
    Template,
    TemplateError,
    Variable,
    Wildcard,
    parse,
    render,
    validate,
)

__all__ = [
    "Capture",
    "CompiledSegment",
    "CompiledTemplate",
    "DeepWildcard",
    "Literal",
    "PlainSegment",
    "Segment",
    "SegmentKind",
    "Template",
    "TemplateError",
    "Variable",
    "Wildcard",
    "compile_template",
    "parse",
    "render",
    "validate",
]
