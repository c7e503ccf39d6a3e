"""`livedub dub`'s recorder: records the dubbed output as a player would, and, like a player that
reconnects, records on when the output's publisher changes (a publisher handed over by a redeploy, or
started again): each connection is a part; the parts are joined into one file at the end."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from worker.media.procs import ProcessRunner, stop_process, wait_until
from worker.media.progress import ProgressLog


class Recorder:
    def __init__(self, url: str, output: Path, runner: ProcessRunner) -> None:
        self.url, self.output, self.runner = url, output, runner
        self.parts: list[tuple[Path, subprocess.Popen[bytes], ProgressLog]] = []
        self.reconnects = 0
        self._start()

    def _start(self) -> None:
        part = self.output.with_name(f"{self.output.stem}.part{len(self.parts)}.ts")
        proc = self.runner.start(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-progress", "pipe:1",
                                  "-i", self.url, "-c", "copy", "-f", "mpegts", str(part)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        self.parts.append((part, proc, ProgressLog(proc.stdout)))

    @property
    def current(self) -> subprocess.Popen[bytes]:
        return self.parts[-1][1]

    def tick(self) -> None:
        """The output dropped (its publisher left): connect again and record the next part."""
        if self.current.poll() is not None:
            self.reconnects += 1
            self._start()

    @property
    def points(self) -> list[tuple[float, float]]:
        """(wall, media) of the joined recording: each part's media time follows the parts before it."""
        out: list[tuple[float, float]] = []
        offset = 0.0
        for _, _, log in self.parts:
            out += [(w, m + offset) for w, m in log.points]
            offset += log.media_s
        return out

    def finish(self, wait_s: float = 60) -> None:
        """The stream is over: wait for the last part to end (or, for a part that connected after the
        output left, to stay idle for 3 s), then join the parts into the output."""
        log, started = self.parts[-1][2], time.time()

        def ended() -> bool:
            last = log.points[-1][0] if log.points else started
            return self.current.poll() is not None or time.time() - last > 3.0

        try:
            wait_until(ended, wait_s, 0.2, "the recording to end")
        except TimeoutError:
            pass
        for _, proc, log in self.parts:
            if proc.poll() is None:
                stop_process(proc, grace_s=5)
            log.thread.join(2)
        parts = [p for p, _, _ in self.parts if p.exists() and p.stat().st_size > 0]
        if not parts:
            return
        listing = self.output.with_name(f"{self.output.stem}.parts.txt")
        listing.write_text("".join(f"file '{p.resolve()}'\n" for p in parts))
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                        "-i", str(listing), "-c", "copy", str(self.output)], check=True, timeout=120)
        for p in [*parts, listing]:
            p.unlink(missing_ok=True)

    def stop(self) -> None:
        for _, proc, _ in self.parts:
            if proc.poll() is None:
                stop_process(proc, grace_s=5)
