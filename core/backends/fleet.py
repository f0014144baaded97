"""Several servers of one model as one backend: the way an operator's Ollama fleet or vLLM replicas are asked.

Each server gets ``parallel`` worker threads (its slots), all taking conversations from one queue: a slot that
finishes takes the next, so work goes to whichever server has a free slot (the least busy) and a fast server
answers more. A server whose request fails (refused, reset, timed out, an error status) leaves the fleet for
the rest of the run; the conversation it held goes back to the front of the queue for the others, so nothing
is dropped. Only when every server has failed does the fleet raise, naming each one and why.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import LingoforgeError
from .base import DEFAULT_MAX_NEW_TOKENS, Backend, Conversation, Generation


@dataclass
class ServerStats:
    """One server's share of a run, for the summary and the per-server progress bars."""

    host: str
    parallel: int
    answered: int = 0
    busy_s: float = 0.0
    failed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "parallel": self.parallel, "answered": self.answered,
                "busy_s": round(self.busy_s, 3), "failed": self.failed}


class Fleet(Backend):
    """``members[i]`` (one backend per server, each answering one conversation per call, thread-safe) with
    ``parallel[i]`` requests in flight at a time."""

    def __init__(self, members: Sequence[Backend], parallel: Sequence[int],
                 failed: Mapping[str, str] | None = None) -> None:
        """``failed``: servers that could not even be opened (host → why), reported with the others."""
        if not members or len(members) != len(parallel):
            raise ValueError("a fleet needs at least one member and one parallel count per member")
        super().__init__(members[0].model)
        self.name = members[0].name
        self.members = list(members)
        self.stats = [ServerStats(_host(m), max(1, p)) for m, p in zip(members, parallel, strict=True)]
        self.unopened = [ServerStats(host, 0, failed=why) for host, why in (failed or {}).items()]

    @property
    def supports_constrained(self) -> bool:  # type: ignore[override]
        return all(m.supports_constrained for m, s in zip(self.members, self.stats, strict=True) if s.failed is None)

    @property
    def hosts(self) -> list[str]:
        return [s.host for s in self.stats + self.unopened]

    def describe(self) -> dict[str, Any]:
        """The first member's description (backend, model, what it detected), ``hosts`` and each server's share
        with what its own backend detected (an OpenAI-compatible server's structured-output mode)."""
        own = [{k: v for k, v in m.describe().items() if k not in ("backend", "model", "host")} for m in self.members]
        servers = [{**s.as_dict(), **extra} for s, extra in zip(self.stats, own, strict=True)]
        described: dict[str, Any] = {**self.members[0].describe(), "hosts": self.hosts,
                                     "servers": servers + [s.as_dict() for s in self.unopened]}
        described.pop("host", None)
        return described

    def failures(self) -> dict[str, str]:
        """The servers that could not be opened or left the fleet, and why."""
        return {s.host: s.failed for s in self.stats + self.unopened if s.failed is not None}

    def generate(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> list[Generation]:
        answers = dict(self.stream(batch, schema, max_new_tokens))
        return [answers[i] for i in range(len(batch))]

    def stream(
        self,
        batch: Sequence[Conversation],
        schema: Mapping[str, Any] | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        chunk: int = 8,
    ) -> Iterator[tuple[int, Generation]]:
        """Yield ``(position, answer)`` in completion order; ``chunk`` is ignored (the slots set the pace)."""
        todo: deque[int] = deque(range(len(batch)))
        results: queue.Queue[tuple[int, Generation] | None] = queue.Queue()
        changed = threading.Condition()  # guards todo, in_flight and the stats; notified when either changes
        in_flight = 0
        stop = threading.Event()

        def work(member: Backend, stats: ServerStats) -> None:
            nonlocal in_flight
            while True:
                with changed:
                    # An empty queue is not the end while requests are out: a failing server puts its one back.
                    while not (todo or not in_flight or stats.failed is not None or stop.is_set()):
                        changed.wait()
                    if not todo or stats.failed is not None or stop.is_set():
                        break
                    position = todo.popleft()
                    in_flight += 1
                started = time.perf_counter()
                try:
                    [answer] = member.generate([batch[position]], schema, max_new_tokens)
                except Exception as exc:  # any failure of one server is the fleet's to route around
                    with changed:
                        todo.appendleft(position)
                        in_flight -= 1
                        stats.failed = stats.failed or _reason(exc)
                        changed.notify_all()
                    break
                with changed:
                    in_flight -= 1
                    stats.answered += 1
                    stats.busy_s += time.perf_counter() - started
                    changed.notify_all()
                results.put((position, replace(answer, server=stats.host)))
            results.put(None)  # this slot is done

        live = [(m, s) for m, s in zip(self.members, self.stats, strict=True) if s.failed is None]
        threads = [threading.Thread(target=work, args=(m, s), daemon=True) for m, s in live for _ in range(s.parallel)]
        for thread in threads:
            thread.start()
        running, delivered = len(threads), 0
        try:
            while running:
                item = results.get()
                if item is None:
                    running -= 1
                    continue
                delivered += 1
                yield item
        finally:
            with changed:  # a caller that stops early (an error while saving) lets the slots finish their request
                stop.set()
                changed.notify_all()
        if delivered < len(batch):
            raise LingoforgeError(
                f"no server could answer the remaining {len(batch) - delivered} of {len(batch)} requests: "
                + "; ".join(f"{host}: {why}" for host, why in self.failures().items())
            )

    def close(self) -> None:
        for member in self.members:
            member.close()


def _host(member: Backend) -> str:
    return str(member.describe().get("host") or member.model)


def _reason(exc: BaseException) -> str:
    """A failure in one line: our own errors already say what to do; others get their type for the operator."""
    if isinstance(exc, LingoforgeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
