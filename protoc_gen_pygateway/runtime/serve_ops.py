"""The serve command's CORS, health and drain options (docs/operations.md in the generator's repository):
`--cors-origin ...` -> CorsPolicy, `--no-health`/`--health-*` -> HealthOptions, `--drain-seconds`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .cors import CorsPolicy
from .health import HealthOptions


def add_ops_arguments(parser: argparse.ArgumentParser) -> None:
    """CORS, health and drain options (docs/operations.md)."""
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin browser calls from ORIGIN (scheme://host[:port], repeatable; * for any, "
        "only without --cors-credentials); off by default",
    )
    parser.add_argument("--cors-credentials", action="store_true", help="CORS: allow cookies/credentials")
    parser.add_argument(
        "--cors-allow-header",
        action="append",
        default=[],
        metavar="NAME",
        help="CORS: also allow this request header",
    )
    parser.add_argument(
        "--cors-expose-header",
        action="append",
        default=[],
        metavar="NAME",
        help="CORS: let scripts read this header",
    )
    parser.add_argument(
        "--cors-max-age", type=int, default=600, help="CORS: seconds a preflight may be cached"
    )
    parser.add_argument("--no-health", action="store_true", help="do not serve GET /healthz and GET /readyz")
    parser.add_argument(
        "--health-timeout", type=float, default=1.0, help="deadline (s) of /healthz's upstream health check"
    )
    parser.add_argument(
        "--health-unimplemented",
        choices=("fail", "serving"),
        default="fail",
        help="/healthz when the upstream has no grpc.health.v1.Health: fail (503, default) or serving (200)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM/SIGINT: seconds /readyz answers 503 while everything else is still served, before "
        "the graceful shutdown (default 0)",
    )


def ops_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The CORS policy, health options and drain time the arguments ask for (parser.error when invalid)."""
    cors = None
    if args.cors_origin:
        try:
            cors = CorsPolicy(
                allow_origins=args.cors_origin,
                allow_credentials=args.cors_credentials,
                allow_headers=args.cors_allow_header,
                expose_headers=args.cors_expose_header,
                max_age=args.cors_max_age,
            )
        except ValueError as err:
            parser.error(f"--cors-origin: {err}")
    elif args.cors_credentials or args.cors_allow_header or args.cors_expose_header:
        parser.error("--cors-credentials/--cors-allow-header/--cors-expose-header need --cors-origin")
    health = None
    if not args.no_health:
        try:
            health = HealthOptions(timeout=args.health_timeout, unimplemented=args.health_unimplemented)
        except ValueError as err:
            parser.error(f"--health-timeout: {err}")
    if args.drain_seconds < 0:
        parser.error("--drain-seconds must be >= 0")
    return {"cors": cors, "health": health, "drain_seconds": args.drain_seconds}


def gateway_ops(config: dict[str, Any]) -> dict[str, Any]:
    """The GatewayOptions fields `ops_config` decided (cors, health)."""
    return {"cors": config.get("cors"), "health": config.get("health")}


def _begin_drain(app: Any) -> None:
    """/readyz answers 503 from now on while everything else is still served, so that load balancers stop
    sending requests before the shutdown ends streams."""
    app.draining_started = True
    logging.getLogger("pygateway").info(
        "draining: /readyz answers 503 for %ss before the shutdown", app.config.get("drain_seconds", 0)
    )
    if app.app is not None:
        app.app.draining = True


def drain_first(app: Any, loop: asyncio.AbstractEventLoop, shutdown: Callable[[], None]) -> bool:
    """On the first shutdown signal with `--drain-seconds`: begin the drain, run `shutdown` after it, and
    return True; otherwise (no drain, or a second signal: shut down at once) False. On the serving loop."""
    seconds = app.config.get("drain_seconds", 0)
    if seconds <= 0 or getattr(app, "draining_started", False):
        return False
    _begin_drain(app)
    loop.call_later(seconds, shutdown)
    return True


async def drain(app: Any) -> None:
    """With `--drain-seconds`: drain for that long (see `drain_first`)."""
    seconds = app.config.get("drain_seconds", 0)
    if seconds > 0:
        _begin_drain(app)
        await asyncio.sleep(seconds)
