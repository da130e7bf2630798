"""Run a parser over untrusted bytes in a forked child with CPU, memory and wall-clock limits.

Hostile PDFs make parsers loop forever or allocate without bound. The child is bounded by its
CPU time (`RLIMIT_CPU`: SIGXCPU at the budget, SIGKILL a second later) and by an address-space
limit (`memory_mb` on top of what the fork inherits); a file that exhausts either is refused.
A generous wall-clock deadline protects the caller too, but running out of it while the CPU
budget is not spent only means the machine is busy: that raises `VerificationBusy`, never a
verdict on the file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from signing.errors import Refused, VerificationBusy

T = TypeVar("T")
log = logging.getLogger(__name__)

_TOO_LONG = "La lecture de ce PDF dépasse le temps de calcul autorisé : il est refusé par sécurité."
_POLL = 0.1
_TICKS = os.sysconf("SC_CLK_TCK")
_UNREADABLE = "Ce PDF n'a pas pu être lu sans risque."


@dataclass(frozen=True)
class Limits:
    #: CPU seconds the child may use: the file's cost, whatever the load (the kernel enforces it
    #: in whole seconds, rounded up)
    seconds: float = 5.0
    #: wall-clock seconds before giving up (machine busy) when the CPU budget is not spent
    wall_seconds: float = 30.0
    memory_mb: int = 1024


def _address_space() -> int:
    """This process's address space in bytes (0 when /proc cannot tell)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(
    write_fd: int, limits: Limits, fn: Callable[..., Any], args: tuple, kwargs: dict
) -> None:
    try:
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        cpu = max(1, math.ceil(limits.seconds))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        # on top of what the child inherits (the caller's libraries, caches, threads' arenas):
        # the parser's own allocations are what is bounded, whatever the caller's size
        memory = _address_space() + limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        result: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except Refused as exc:
        result = ("refused", (exc.code, exc.message, exc.details))
    except MemoryError:
        result = ("refused", ("malformed_pdf", "Ce PDF demande trop de mémoire pour être lu.", []))
    except BaseException as exc:  # every parser failure fails closed
        result = ("error", f"{type(exc).__name__}: {exc}"[:500])
    try:
        payload = pickle.dumps(result)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time a live child has used so far (Linux `/proc`); None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def _read_until(read_fd: int, pid: int, limits: Limits) -> bytes | None:
    """Everything the child writes until it closes the pipe; None when it runs out of wall-clock
    time or of CPU budget (checked every tenth of a second: RLIMIT_CPU counts whole seconds)."""
    deadline = time.monotonic() + limits.wall_seconds
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([read_fd], [], [], min(remaining, _POLL))
        if not ready:
            used = _cpu_seconds(pid)
            if used is not None and used >= limits.seconds:
                return None
            continue
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int, *, kill: bool) -> tuple[int, float]:
    """Wait for the child (killed first if asked): its wait status and the CPU seconds it used."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _spent(cpu_used: float, limits: Limits) -> bool:
    """The CPU budget is spent (the kernel's accounting is a tick coarse)."""
    return cpu_used >= min(0.9 * limits.seconds, limits.seconds - 0.05)


def run_limited(fn: Callable[..., T], *args: Any, limits: Limits = Limits(), **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a forked child; `Refused` crosses back as itself.

    Raises `VerificationBusy` when the wall clock runs out before the CPU budget does.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(write_fd, limits, fn, args, kwargs)
    os.close(write_fd)
    try:
        data = _read_until(read_fd, pid, limits)
    except BaseException:  # never leave the child running or unreaped
        _reap(pid, kill=True)
        raise
    finally:
        os.close(read_fd)
    status, cpu_used = _reap(pid, kill=data is None)
    if data is None:
        if _spent(cpu_used, limits):
            raise Refused("malformed_pdf", _TOO_LONG)
        log.warning(
            "verification out of wall-clock time (%.1f s) with %.2f s of CPU used: machine busy",
            limits.wall_seconds,
            cpu_used,
        )
        raise VerificationBusy(
            f"verification took more than {limits.wall_seconds} s of wall-clock time"
        )
    if not data:  # the child died before answering
        killer = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if killer == signal.SIGXCPU or (killer == signal.SIGKILL and _spent(cpu_used, limits)):
            raise Refused("malformed_pdf", _TOO_LONG)
        raise Refused("malformed_pdf", _UNREADABLE)
    try:
        outcome, payload = pickle.loads(data)
    except Exception as exc:  # a truncated answer: the child was killed while writing
        raise Refused("malformed_pdf", _UNREADABLE) from exc
    if outcome == "ok":
        return payload
    if outcome == "refused":
        code, message, details = payload
        raise Refused(code, message, details=details)
    # any other failure on untrusted bytes fails closed, as a refusal; logged, since it may
    # as well be a bug of ours
    log.warning("verification failed unexpectedly: %s", payload)
    raise Refused("malformed_pdf", "Ce PDF est endommagé ou illisible.", details=[str(payload)])
