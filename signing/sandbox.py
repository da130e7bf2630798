"""Run a parser over untrusted bytes in a forked child with time and memory limits.

Hostile PDFs make parsers loop forever or allocate without bound; a child process with an
address-space limit and a deadline contains both, and the caller keeps serving.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from signing.errors import Refused

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    seconds: float = 5.0
    memory_mb: int = 1024


def _child(conn: Any, memory_mb: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except Refused as exc:
        result = ("refused", (exc.code, exc.message, exc.details))
    except MemoryError:
        result = ("refused", ("malformed_pdf", "Ce PDF demande trop de mémoire pour être lu.", []))
    except BaseException as exc:  # every parser failure fails closed
        result = ("error", f"{type(exc).__name__}: {exc}"[:500])
    try:
        conn.send_bytes(pickle.dumps(result))
    finally:
        conn.close()
        os._exit(0)


def run_limited(fn: Callable[..., T], *args: Any, limits: Limits = Limits(), **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a forked child; `Refused` crosses back as itself."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child, args=(child, limits.memory_mb, fn, args, kwargs), daemon=True
    )
    process.start()
    child.close()
    try:
        if not parent.poll(limits.seconds):
            raise Refused(
                "malformed_pdf",
                "La lecture de ce PDF dépasse le temps autorisé : il est refusé par sécurité.",
            )
        try:
            status, payload = pickle.loads(parent.recv_bytes())
        except EOFError as exc:  # the child died (memory limit, crash)
            raise Refused("malformed_pdf", "Ce PDF n'a pas pu être lu sans risque.") from exc
    finally:
        parent.close()
        if process.is_alive():
            process.kill()
        process.join(1)
    if status == "ok":
        return payload
    if status == "refused":
        code, message, details = payload
        raise Refused(code, message, details=details)
    # any other failure on untrusted bytes fails closed, as a refusal; logged, since it may
    # as well be a bug of ours
    log.warning("verification failed unexpectedly: %s", payload)
    raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.", details=[str(payload)])
