"""Eddy's Python SDK: write a processor as a plain function.

    import eddy

    @eddy.handler
    def handle(inv: eddy.Invocation):
        words = inv.json()["text"].split()
        eddy.emit("count", {"n": len(words)})
        return {"words": len(words)}

What a handler returns is the output: a dict, list, number, bool or None as
JSON, a str as text, bytes as octet-stream, or an `eddy.Output` to name the
content type. `raise eddy.ProcessorError(code, message)` fails the
invocation for good, `raise eddy.Retry(message)` asks Eddy to try again
later, and any other exception fails it for good as `exception` with its
type, message and traceback: a bug does not get better on retry.

Built with componentize-py (`eddy build`), the module runs in Eddy's
sandbox; imported by CPython (tests, `eddy.run`), it runs against a local
host that keeps the emits and logs, so a handler is testable without a
build.
"""

from __future__ import annotations

import json as _json
import sys as _sys
import time as _time
import traceback as _traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "Invocation", "Output", "ProcessorError", "Retry", "Emit", "Result",
    "handler", "emit", "log", "run",
]

try:  # Inside a component: the bindings componentize-py generates.
    import wit_world as _wit_world  # type: ignore
    from wit_world.imports import host as _host, types as _types  # type: ignore
    from componentize_py_types import Err as _Err  # type: ignore
except ImportError:  # Plain CPython: the local host below.
    _wit_world = _host = _types = _Err = None

# Longest traceback kept in an `exception` error (the host keeps 16 KiB of
# any message; the head, type and message, matters most).
_MAX_TRACE = 8 << 10


@dataclass
class Invocation:
    """One invocation. `id` is stable across retries: key side effects on it."""

    id: str
    run_id: str
    function: str
    attempt: int
    depth: int
    content_type: str
    payload: bytes
    config: Dict[str, str] = field(default_factory=dict)
    #: The tenant that owns the function.
    tenant: str = "local"
    #: The version of the function that runs (0 outside a deployment).
    version: int = 0
    #: When this attempt's time runs out, in ms since the Unix epoch.
    deadline_ms: int = 0
    #: The W3C trace context of the invocation's span, when it is traced.
    traceparent: Optional[str] = None

    def time_left(self) -> float:
        """Seconds until the deadline (the host stops the instance then)."""
        return max(0.0, self.deadline_ms / 1000 - _time.time())

    def json(self) -> Any:
        """The payload parsed as JSON (`bad-input` error if it is not)."""
        try:
            return _json.loads(self.payload)
        except ValueError as e:
            raise ProcessorError("bad-input", f"the payload is not JSON: {e}") from None

    def text(self) -> str:
        """The payload as UTF-8 text (`bad-input` error if it is not)."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProcessorError("bad-input", f"the payload is not UTF-8: {e}") from None


@dataclass
class Output:
    """An output with an explicit content type."""

    payload: bytes
    content_type: str = "application/octet-stream"


class ProcessorError(Exception):
    """Fails the invocation with `code` and `message`; retried only if `retryable`."""

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code = str(code)
        self.message = str(message)
        self.retryable = bool(retryable)


class Retry(ProcessorError):
    """A failure worth another attempt (with backoff), e.g. an upstream 503."""

    def __init__(self, message: str, code: str = "retry"):
        super().__init__(code, message, retryable=True)


@dataclass
class Emit:
    function: str
    payload: bytes
    content_type: str


@dataclass
class Result:
    """What `eddy.run` returns: the output or the error, emits and logs."""

    output: Optional[Output]
    error: Optional[ProcessorError]
    emits: List[Emit]
    logs: List[Tuple[str, str]]

    def json(self) -> Any:
        if self.output is None:
            raise AssertionError(f"the processor failed: {self.error.code}: {self.error.message}")
        return _json.loads(self.output.payload)


_local: Optional[Result] = None


def _encode(data: Any) -> Tuple[bytes, str]:
    if isinstance(data, Output):
        return data.payload, data.content_type
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), "application/octet-stream"
    if isinstance(data, str):
        return data.encode("utf-8"), "text/plain; charset=utf-8"
    return _json.dumps(data, separators=(",", ":")).encode("utf-8"), "application/json"


def emit(function: str, data: Any = None) -> None:
    """Queues a follow-up invocation of `function` in this run, committed
    only if this invocation succeeds. `data` is encoded as a handler's
    output is (JSON unless bytes, str or an `Output`)."""
    payload, content_type = _encode(data)
    if _host is not None:
        _host.emit(function, payload, _types.EmitOptions(content_type=content_type))
    elif _local is not None:
        _local.emits.append(Emit(function, payload, content_type))
    else:
        raise RuntimeError("eddy.emit outside an invocation")


class _Log:
    """`eddy.log.info("...")`: a line in the invocation's log."""

    def _line(self, level: str, message: str) -> None:
        if _host is not None:
            _host.log(getattr(_types.Level, level.upper()), str(message))
        elif _local is not None:
            _local.logs.append((level, str(message)))
        else:
            print(f"{level}: {message}", file=_sys.stderr)

    def trace(self, message: str) -> None:
        self._line("trace", message)

    def debug(self, message: str) -> None:
        self._line("debug", message)

    def info(self, message: str) -> None:
        self._line("info", message)

    def warn(self, message: str) -> None:
        self._line("warn", message)

    def error(self, message: str) -> None:
        self._line("error", message)


log = _Log()


def _exception(e: BaseException) -> ProcessorError:
    head = "".join(_traceback.format_exception_only(type(e), e)).strip()
    trace = "".join(_traceback.format_exception(type(e), e, e.__traceback__))
    if len(trace) > _MAX_TRACE:
        trace = "...\n" + trace[-_MAX_TRACE:]
    return ProcessorError("exception", f"{head}\n\n{trace}")


def _call(fn: Callable[[Invocation], Any], inv: Invocation) -> Tuple[Optional[Output], Optional[ProcessorError]]:
    try:
        payload, content_type = _encode(fn(inv))
        return Output(payload, content_type), None
    except ProcessorError as e:
        return None, e
    except (Exception, SystemExit) as e:  # noqa: BLE001 - every bug is a final error
        return None, _exception(e)


_handler: Optional[Callable[[Invocation], Any]] = None


def handler(fn: Callable[[Invocation], Any]) -> Callable[[Invocation], Any]:
    """Makes `fn` the processor's `handle`: one per component, defined in
    the module `main` names (componentize-py looks for the export there)."""
    global _handler
    if _handler is not None and _handler is not fn:
        raise RuntimeError(f"@eddy.handler is on {_handler.__name__} already; one handler per component")
    _handler = fn
    if _wit_world is not None:
        # componentize-py looks for the export class in the built module.
        _sys.modules[fn.__module__].WitWorld = _WitWorld
    return fn


if _wit_world is not None:

    class _WitWorld(_wit_world.WitWorld):
        def handle(self, invocation):  # noqa: D102
            inv = Invocation(
                id=invocation.id,
                run_id=invocation.run_id,
                function=invocation.function,
                attempt=invocation.attempt,
                depth=invocation.depth,
                content_type=invocation.content_type,
                payload=bytes(invocation.payload),
                config=dict(invocation.config),
                tenant=invocation.tenant,
                version=invocation.version,
                deadline_ms=invocation.deadline_ms,
                traceparent=invocation.traceparent,
            )
            if _handler is None:
                raise _Err(_types.Error("no-handler", "no function is decorated with @eddy.handler", False))
            output, error = _call(_handler, inv)
            if error is not None:
                raise _Err(_types.Error(error.code, error.message, error.retryable))
            return _types.Output(content_type=output.content_type, payload=output.payload)


def run(fn: Callable[[Invocation], Any], data: Any = None, *, function: str = "local",
        config: Optional[Dict[str, str]] = None, attempt: int = 1,
        timeout_ms: int = 30_000) -> Result:
    """Runs `fn` once in this process, as Eddy would, and returns what it did."""
    global _local
    payload, content_type = _encode(data)
    inv = Invocation(id="local", run_id="local", function=function, attempt=attempt,
                     depth=0, content_type=content_type, payload=payload, config=dict(config or {}),
                     deadline_ms=int(_time.time() * 1000) + timeout_ms)
    _local = Result(None, None, [], [])
    try:
        _local.output, _local.error = _call(fn, inv)
        return _local
    finally:
        _local = None
