"""Analyzer, audio decoding and the worker command against real files and processes."""

import os
import subprocess
import sys
import tempfile

import pytest

from tests.support import free_port
from worker.media.analyze import analyze_file
from worker.media.procs import wait_until
from worker.sts.audio import AudioError, check_audio, to_pcm_f32
from worker.sts.protocol import AudioIn

pytestmark = pytest.mark.integration


def test_analyzer_catches_a_file_made_out_of_sync(tmp_path):
    good, bad = tmp_path / "good.ts", tmp_path / "bad.ts"
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
            "-f", "lavfi", "-i", "sine=sample_rate=48000"]
    subprocess.run([*base, "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(good)], check=True)
    subprocess.run([*base[:9], "-itsoffset", "0.2", *base[9:], "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-map", "0:v", "-map", "1:a", str(bad)], check=True)
    assert analyze_file(good).check(4.0, 0.1, 25) == []
    problems = analyze_file(bad).check(4.0, 0.1, 25)
    assert any("offset at the start" in p for p in problems), problems
    assert analyze_file(tmp_path / "missing.ts").problems


def test_m4a_fragments_are_accepted_and_decoded(tmp_path):
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=sample_rate=44100",
                    "-t", "1", "-c:a", "aac", str(m4a)], check=True)
    audio = AudioIn(format="m4a", sample_rate_hz=44100, channels=1, duration_ms=1000, data=m4a.read_bytes())
    raw = check_audio(audio, 10_000_000)
    pcm = to_pcm_f32(audio, raw)
    assert abs(len(pcm) / 4 / 16000 - 1.0) < 0.05  # one second at 16 kHz float32
    garbage = AudioIn(format="m4a", sample_rate_hz=44100, channels=1, duration_ms=1000,
                      data=b"\0\0\0\x18ftypM4A garbage garbage")
    with pytest.raises(AudioError) as exc:
        to_pcm_f32(garbage, check_audio(garbage, 10_000_000))
    assert exc.value.code == "DECODE_ERROR"


def test_livedub_worker_serves_its_pool(redis_url):
    from celery import Celery

    from tasks.config import celery_config
    from worker.core.settings import load_settings

    env = {"LIVEDUB_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    name = f"t{free_port()}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read after the worker exits
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--pool", "remux", "-c", "1", "-n",
                             f"{name}@%h"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    client = Celery("t")
    client.conf.update(celery_config(load_settings(redis_url=redis_url)))
    try:
        def up():
            replies = client.control.ping(timeout=0.5) or []
            return [r for r in replies if any(k.startswith(name) for k in r)]

        wait_until(up, 30, 0.3, "livedub worker")
        queues = client.control.inspect(timeout=2).active_queues() or {}
        served = {q["name"] for k, qs in queues.items() if k.startswith(name) for q in qs}
        assert served == {"remux"}
    finally:
        proc.terminate()
        code = proc.wait(20)
        client.close()
    log.seek(0)
    text = log.read().decode(errors="replace")
    assert code == 0, text[-2000:]  # a warm shutdown on SIGTERM
    assert "celery@" in text or "Connected to" in text, text[-2000:]  # it logs at info, as compose runs it


def test_the_consumed_part_of_the_audio_track_leaves_the_disk_and_the_rest_stays_in_place(tmp_path):
    from worker.pipeline.prepare import release_before

    track = tmp_path / "audio.pcm"
    track.write_bytes(bytes(range(256)) * 16384)  # 4 MiB
    before = track.stat().st_blocks
    release_before(track, 3 * 2**20)
    assert track.stat().st_size == 4 * 2**20  # offsets stay valid
    assert track.stat().st_blocks <= before // 4 + 16  # three quarters freed
    data = track.read_bytes()
    assert data[: 3 * 2**20] == bytes(3 * 2**20) and data[3 * 2**20 :] == bytes(range(256)) * 4096


def test_a_media_command_run_nicely_runs_at_a_lower_cpu_priority():
    """The fallback piece's encode (``nice``) yields the CPU to work whose deadline is nearer."""
    from worker.media.run import run_media

    base = os.nice(0)
    # the child polls (with a deadline) for its priority, which is set just after it starts
    probe = ("import os, time\nend = time.monotonic() + 5\n"
             f"while os.nice(0) == {base} and time.monotonic() < end:\n    time.sleep(0.01)\nprint(os.nice(0))")
    assert int(run_media([sys.executable, "-c", probe], nice=10)) == min(base + 10, 19)
    assert int(run_media([sys.executable, "-c", "import os; print(os.nice(0))"])) == base


def _ffprobe_span(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split(",")[:2] for line in out.split() if line and not line.startswith("N/A")]
    return min(float(p) for p, _ in rows), max(float(p) + float(d) for p, d in rows)


def test_segment_video_span_is_read_in_process_as_ffprobe_reads_it(tmp_path):
    from worker.media.demux import video_span
    from worker.media.run import MediaError, NoVideo
    from worker.pipeline.prepare import probe_video_span

    # 6 s at 25 fps, a keyframe every 2 s, cut by the segment muxer as the reader cuts (copied, MPEG-TS)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac", "-f", "segment",
                    "-segment_time", "2", "-segment_format", "mpegts", "-reset_timestamps", "0",
                    str(tmp_path / "seg_%05d.ts")], check=True)
    segments = sorted(tmp_path.glob("seg_*.ts"))
    spans = [probe_video_span(s) for s in segments]
    assert len(spans) == 3
    assert spans == [_ffprobe_span(s) for s in segments]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert abs(end - start) < 1e-6  # pieces meet at the keyframe: no gap, no overlap
    assert abs((spans[-1][1] - spans[0][0]) - 6.0) < 1e-6

    audio_only = tmp_path / "a.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine", "-t", "1",
                    "-c:a", "aac", "-f", "mpegts", str(audio_only)], check=True)
    assert video_span(audio_only) is None
    with pytest.raises(NoVideo):
        probe_video_span(audio_only)
    junk = tmp_path / "junk.ts"
    junk.write_bytes(os.urandom(4096))
    for bad in (junk, tmp_path / "missing.ts"):
        with pytest.raises(MediaError):
            video_span(bad)


def _packets(path, stream: str) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return [float(line.strip(",")) for line in out.split() if line.strip(",")]


@pytest.mark.parametrize("which", ["system", "modern"])
def test_a_piece_puts_its_audio_on_the_stream_timeline_with_old_and_new_ffmpeg(tmp_path, which):
    import imageio_ffmpeg

    from worker.core.timing import AAC_FRAME, AUDIO_RATE, TS_OFFSET_S
    from worker.media.commands import piece_args

    # Debian's FFmpeg 5.1 and a current one (9.x), which ignores -itsoffset on a raw PCM input
    ffmpeg_bin = "ffmpeg" if which == "system" else imageio_ffmpeg.get_ffmpeg_exe()
    seg, pcm, piece = tmp_path / "seg.ts", tmp_path / "a.pcm", tmp_path / "piece.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-f", "mpegts", str(seg)],
                   check=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=sample_rate=48000",
                    "-t", "3", "-ac", "2", "-f", "s16le", str(pcm)], check=True)
    # the PCM starts 40 AAC frames into the stream, two frames before the piece's own 94
    lead, first, frames = 2 * AAC_FRAME, 40 * AAC_FRAME, 94
    subprocess.run(piece_args(ffmpeg_bin, seg, pcm, first, piece, ts_offset_s=30.0, samples=frames * AAC_FRAME,
                              lead=lead), check=True, timeout=60)
    audio = _packets(piece, "a:0")
    base = TS_OFFSET_S + 30.0
    assert len(audio) == frames
    assert abs(audio[0] - (base + (first + lead) / AUDIO_RATE)) < 1 / AUDIO_RATE, audio[:3]
    assert abs(audio[-1] - audio[0] - (frames - 1) * AAC_FRAME / AUDIO_RATE) < 1 / AUDIO_RATE
    assert abs(_ffprobe_span(piece)[0] - (base + _ffprobe_span(seg)[0])) < 1e-3
