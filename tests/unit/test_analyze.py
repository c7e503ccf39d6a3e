"""The output analyzer on probe data made to be wrong."""

from worker.media.analyze import analyze_packets


def probe(video=None, audio=None, extra=()):
    streams, packets = [], []
    for index, (kind, codec, pkts) in enumerate(s for s in (video, audio, *extra) if s is not None):
        streams.append({"index": index, "codec_type": kind, "codec_name": codec})
        for pts, dts, dur in pkts:
            packets.append({"stream_index": index, "pts_time": str(pts), "dts_time": str(dts),
                            "duration_time": str(dur)})
    return {"streams": streams, "packets": packets}


def frames(start, n, step):
    return [(start + i * step, start + i * step, step) for i in range(n)]


V = ("video", "h264", frames(0.0, 750, 0.04))  # 30 s at 25 fps
A = ("audio", "aac", frames(0.0, 1406, 1024 / 48000))  # 29.99 s


def test_a_good_output_passes():
    rep = analyze_packets(probe(V, A))
    assert rep.video.codec == "h264" and rep.audio.codec == "aac"
    assert abs(rep.duration_s - 30.0) < 0.01
    assert rep.check(30.0, 0.1, 25) == []


def test_audio_starting_late_is_caught():
    late = ("audio", "aac", frames(0.040, 1406, 1024 / 48000))
    rep = analyze_packets(probe(V, late))
    assert round(rep.av_offset_start_ms) == 40
    assert any("offset at the start" in p for p in rep.check(30.0, 0.1, 25))


def test_audio_ending_early_is_caught():
    short = ("audio", "aac", frames(0.0, 1350, 1024 / 48000))
    problems = analyze_packets(probe(V, short)).check(30.0, 0.1, 25)
    assert any("offset at the end" in p for p in problems)


def test_wrong_duration_is_caught():
    short_v, short_a = ("video", "h264", frames(0, 700, 0.04)), ("audio", "aac", frames(0, 1312, 1024 / 48000))
    problems = analyze_packets(probe(short_v, short_a)).check(30.0, 0.1, 25)
    assert any("duration" in p for p in problems)


def test_non_monotonic_dts_is_caught():
    pkts = frames(0.0, 750, 0.04)
    pkts[100] = (pkts[100][0], pkts[98][1], 0.04)  # DTS goes back
    rep = analyze_packets(probe(("video", "h264", pkts), A))
    assert rep.video.non_monotonic_dts == 1
    assert any("non-monotonic DTS" in p for p in rep.check(30.0, 0.1, 25))


def test_missing_stream_and_extra_stream():
    assert "output lacks a video or an audio stream" in analyze_packets(probe(V)).check(30.0, 0.1, 25)
    rep = analyze_packets(probe(V, A, extra=[("audio", "mp3", frames(0, 10, 0.02))]))
    assert rep.problems == ["extra audio stream 2 (mp3)"]


def test_summary_shape():
    s = analyze_packets(probe(V, A)).summary()
    assert s["video_codec"] == "h264" and s["audio_codec"] == "aac"
    assert s["av_offset_start_ms"] == 0.0 and isinstance(s["duration_s"], float)
