"""Reconciling stale jobs on a schedule: a loop in the API process, never on a read.

A stream whose job stopped heartbeating turns ``failed`` with the reason (see
:meth:`StreamRegistry.reconcile`). Every API process runs the loop; the registry's writes are
conditional, so two processes reconciling at once fail a stream once.
"""

from __future__ import annotations

import logging
import threading

import redis

from worker.state.registry import StreamRegistry

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, registry: StreamRegistry, start_timeout_s: float, interval_s: float) -> None:
        self.registry = registry
        self.start_timeout_s = start_timeout_s
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="livedub-reconciler", daemon=True)

    def start(self) -> Reconciler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(self.interval_s + 5)

    def run_once(self) -> list[str]:
        failed = self.registry.reconcile(self.start_timeout_s)
        for sid in failed:
            log.warning("stream %s: its job stopped heartbeating; marked failed", sid)
        return failed

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.run_once()
            except redis.RedisError as exc:  # Redis restarting: try again next round
                log.info("reconcile skipped: %s", type(exc).__name__)
