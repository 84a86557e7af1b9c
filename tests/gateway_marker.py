"""Which tests serve a generated gateway to an upstream, so that `make test` runs them a second time with
the native gRPC transport (`PYGATEWAY_TRANSPORT=native pytest -m gateway`).

conftest marks a test `gateway` when its own code, or a fixture it uses, reaches (through the functions
and classes of tests/ it calls, followed transitively) one of the helpers that serve a gateway whose
transport follows $PYGATEWAY_TRANSPORT: conftest's `GatewayServer` (the `gateway`, `uvicorn_gateway` and
`client` fixtures), tests/servers.py's configurations, tests/ops_support.py's `serve_app`, the serve
command run as a subprocess (`pygateway_serve.py ... --upstream`), or `pygateway_runtime.open_channel`.
A new end-to-end test written with these helpers is covered without being marked by hand. Tests that
build their own `grpc.aio` channel test grpcio and are not repeated.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any

import pytest

#: Names whose use means "a gateway on the transport of the environment is served here".
HELPERS = frozenset(
    {
        "GatewayServer",  # tests/conftest.py: the serve command as a subprocess
        "GatewayProcess",  # tests/servers.py: one server configuration
        "start_gateways",
        "lazy_app",  # tests/servers.py: the app granian imports
        "LazyGateway",
        "serve_app",  # tests/ops_support.py: uvicorn on a thread, app built in its loop
        "ThreadedUvicorn",
        "LazyApp",
        "open_channel",  # pygateway_runtime.open_channel: the default transport from the environment
    }
)
#: A code object whose constants include both runs the serve command against an upstream.
SERVE_COMMAND = ("pygateway_serve.py", "--upstream")

MARKER = "gateway"
MARKER_HELP = (
    f"{MARKER}: serves a generated gateway whose transport follows $PYGATEWAY_TRANSPORT (applied "
    "automatically by tests/conftest.py; `make test` runs these again with the native transport)"
)


def _strings(code: types.CodeType) -> set[str]:
    found: set[str] = set()
    for const in code.co_consts:
        if isinstance(const, str):
            found.add(const)
        elif isinstance(const, tuple):
            found.update(item for item in const if isinstance(item, str))
    return found


class _Walker:
    def __init__(self, fixture: Callable[[str], Sequence[Any]]) -> None:
        self.seen: set[int] = set()
        self.fixture = fixture  # name -> the fixture definitions visible to the item

    def code_serves(self, code: types.CodeType, namespace: dict[str, Any]) -> bool:
        if id(code) in self.seen:
            return False
        self.seen.add(id(code))
        names = set(code.co_names) | set(code.co_freevars)
        if names & HELPERS:
            return True
        strings = _strings(code)
        if any(SERVE_COMMAND[0] in s for s in strings) and any(SERVE_COMMAND[1] in s for s in strings):
            return True
        for const in code.co_consts:
            if isinstance(const, types.CodeType) and self.code_serves(const, namespace):
                return True
        # `request.getfixturevalue("uvicorn_gateway" if ... else "granian")`: the fixtures it may name.
        if "getfixturevalue" in names and any(self.fixture_serves(name) for name in sorted(strings)):
            return True
        return any(self.object_serves(namespace[name]) for name in names if name in namespace)

    def object_serves(self, obj: Any) -> bool:
        """A function or class of tests/ (others are not followed) whose code reaches a helper."""
        if id(obj) in self.seen:
            return False
        module = getattr(obj, "__module__", "") or ""
        if not module.startswith("tests"):
            return False
        if isinstance(obj, type):
            self.seen.add(id(obj))
            return any(self.object_serves(member) for member in vars(obj).values())
        if isinstance(obj, (staticmethod, classmethod)):
            return self.object_serves(obj.__func__)
        if isinstance(obj, property):
            return any(self.object_serves(f) for f in (obj.fget, obj.fset) if f is not None)
        function = inspect.unwrap(obj) if callable(obj) else None
        code = getattr(function, "__code__", None)
        if code is None:
            return False
        return self.code_serves(code, getattr(function, "__globals__", {}))

    def fixture_serves(self, name: str) -> bool:
        return any(self.object_serves(definition.func) for definition in self.fixture(name))


def serves_gateway(item: pytest.Item) -> bool:
    manager = item.session._fixturemanager
    node = item

    def fixture(name: str) -> Sequence[Any]:
        if not name.isidentifier():
            return ()
        return manager.getfixturedefs(name, node) or ()

    walker = _Walker(fixture)
    function = getattr(item, "function", None)
    if function is not None and walker.object_serves(function):
        return True
    info = getattr(item, "_fixtureinfo", None)
    return any(walker.fixture_serves(name) for name in getattr(info, "names_closure", ()))


def mark_gateway_tests(items: list[pytest.Item]) -> None:
    for item in items:
        if serves_gateway(item):
            item.add_marker(MARKER)
