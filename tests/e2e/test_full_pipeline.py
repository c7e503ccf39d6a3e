"""The seed's full-pipeline test, stricter, with livedub's own parts, all real: nginx-rtmp, Redis,
the API, a worker on every pool, the STS service, a Socket.IO monitor, a recorded output."""

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
import requests
import socketio

from tests.support import local_stack
from worker.devstack.samples import make_video
from worker.media.analyze import analyze_file
from worker.media.procs import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def speech_30s(media_dir):
    return make_video(media_dir / "count30.flv", 30, gop_s=2, speech=True)


def metric(api, name, **labels):
    text = requests.get(f"{api}/metrics", timeout=5).text
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{sel}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def on_media_server(stat_url, name):
    root = ET.fromstring(requests.get(stat_url, timeout=5).text)
    return any(s.findtext("name") == name for s in root.iter("stream"))


def run_full_pipeline(tmp_path, video, engine, extra_env=None):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with local_stack(run_dir, "--engine", engine, env=extra_env) as stack:
        state, api = stack.state, stack.api
        token = stack.sts_token()
        events = []
        mon = socketio.Client()
        mon.on("fragment:processed", lambda d: events.append(d))
        mon.connect(state["sts_url"], auth={"token": token}, transports=["websocket"])
        mon.emit("monitor:subscribe", {})
        out = tmp_path / "out.mp4"
        dub = subprocess.Popen([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(out),
                                "--state-file", str(run_dir / "state.json"), "--stream-id", "e2e"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        wait_until(lambda: on_media_server(state["stat_url"], "e2e/in"), 2.5, 0.1, "e2e/in on nginx-rtmp")
        appeared = time.monotonic() - t0
        wait_until(lambda: metric(api, "livedub_segments_total", status="processed") >= 1, 12, 0.2,
                   "segment metrics to count")
        counted = time.monotonic() - t0 - appeared  # from the input on the media server, not the client's start
        stdout, stderr = dub.communicate(timeout=180)
        mon.disconnect()
        assert dub.returncode == 0, stderr + stdout
        report = json.loads(stdout)
        processed = metric(api, "livedub_segments_total", status="processed")
        seed = metric(api, "media_service_worker_segments_processed_total", type="audio")
        fallback = metric(api, "livedub_segments_total", status="fallback")
        record = stack.stream("e2e")
    return {"appeared": appeared, "counted": counted, "events": events, "report": report, "out": out,
            "processed": processed, "seed": seed, "fallback": fallback, "record": record}


def check(res):
    assert res["appeared"] <= 2.0
    assert res["counted"] <= 10.0
    events = [e for e in res["events"] if e["stream_id"] == "e2e"]
    assert len(events) == 5, [e["sequence_number"] for e in events]
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3, 4]
    for e in events:
        assert e["status"] == "success"
        audio = e["dubbed_audio"]
        assert audio.get("data") or audio.get("data_base64")
        assert e["transcript"] and e["translated_text"]
    rep = analyze_file(res["out"])
    assert rep.video.codec == "h264" and rep.audio.codec == "aac"
    assert rep.check(duration_s=30.0, duration_tol_s=0.1, av_tol_ms=25) == []
    assert res["processed"] == 5 and res["seed"] == 5 and res["fallback"] == 0
    segs = res["record"]["segments"]
    assert [s["status"] for s in segs] == ["processed"] * 5
    assert all(s["transcript"] and s["translated_text"] for s in segs)
    assert res["report"]["segments"] == {"processed": 5, "fallback": 0, "failed": 0}


@pytest.mark.solo  # failed beside another stream in 3 of 3 runs
def test_full_pipeline_media_to_sts_to_output_echo(tmp_path, speech_30s):
    res = run_full_pipeline(tmp_path, speech_30s, "echo")
    check(res)
    assert all(e["transcript"].startswith("[echo]") for e in res["events"])


@pytest.mark.solo
def test_full_pipeline_media_to_sts_to_output_offline(tmp_path, speech_30s):
    # Whisper's greedy decode loops on this counting speech in some runs (6-12 s: "11, 12, 12, 12, ..."); the
    # retry on the same window with timestamps then put that segment's ASR at 1.7 s on a loaded slow 2-core
    # host, 0.2 s inside the 3 s chain budget: the chain gets 3.5 s here.
    res = run_full_pipeline(tmp_path, speech_30s, "offline", {"LIVEDUB_LATENCY_BUDGET_S": "3.5"})
    check(res)
    heard = " ".join(s["transcript"] for s in res["record"]["segments"]).lower()
    # Whisper writes the counting as digits ("1, 2, 3") or words; either way most numbers are heard.
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
    numbers = {int(n) for n in re.findall(r"\d+", heard)} | {v for w, v in words.items() if w in heard}
    assert len(numbers & set(range(1, 21))) >= 10, heard

