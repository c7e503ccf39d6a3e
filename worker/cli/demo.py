"""`livedub demo`: the local stack plus a sample stream through it, as a user would run them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.cli.dub import auth_headers, stream_key, wait_stream_over
from worker.core.naming import rtmp_url, with_key
from worker.devstack.samples import make_video
from worker.devstack.stack import LocalStack, StackConfig

DEMO_TEXT = ("Good morning everyone. Today we will talk about the weather and the news. "
             "The city council met this afternoon to discuss the new park and the library. "
             "Our team won the game last night after a very long match. "
             "Please remember to close the windows before you leave the house.")


def run_demo(run_dir: Path, seconds: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    sample = make_video(run_dir / "sample.flv", seconds, text=DEMO_TEXT)
    stack = LocalStack(StackConfig(run_dir=run_dir / "run", rtmp_port=0, api_port=0, http_port=0,
                                   redis_port=0, flower_port=0))
    try:
        stack.start()
        state = stack.state()
        url = rtmp_url(stack.rtmp_url, "demo", "in")
        echo(f"created stream demo; publishing {sample.name} ({seconds}s of English speech) to {url}?key=…")
        pub = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(sample),
                              "-c", "copy", "-f", "flv", with_key(url, stream_key(state, "demo", {}))],
                             timeout=seconds + 60)
        if pub.returncode != 0:
            echo(f"publisher failed with exit {pub.returncode}")

        record = wait_stream_over(stack.api_url, "demo", 60, lambda: None, auth_headers(state))
        echo(json.dumps(record, indent=2))
        return record
    finally:
        stack.stop()
