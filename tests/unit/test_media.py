from pathlib import Path

import pytest

from worker.media.commands import fit_args, piece_args, publisher_args, segmenter_args
from worker.media.parse import parse_segment_list, progress_out_time_s


def test_segment_list_ignores_the_line_being_written():
    text = "seg_00000.ts,0.000000,6.000000\nseg_00001.ts,6.000000,12.04\nseg_00002.ts,12.04"
    entries = parse_segment_list(text)
    assert [e.sequence for e in entries] == [0, 1]
    assert entries[1].start_s == 6.0 and entries[1].end_s == 12.04
    assert entries[0].file == "seg_00000.ts"


def test_segment_list_empty():
    assert parse_segment_list("") == []


def test_progress_takes_the_last_out_time():
    tail = "out_time_us=500000\nprogress=continue\nframe=10\nout_time_us=1500000\nprogress=continue\n"
    assert progress_out_time_s(tail) == 1.5
    assert progress_out_time_s("out_time_us=N/A\n") == 0.0
    assert progress_out_time_s("out_time_us=-4000\n") == 0.0
    assert progress_out_time_s("") == 0.0


def test_segmenter_is_an_argument_list_with_global_options_first(tmp_path: Path):
    args = segmenter_args("rtmp://h/live//a b/in", tmp_path, 6, 10, "ffmpeg")
    assert isinstance(args, list) and args[0] == "ffmpeg"
    # the URL stays one argument whatever it holds: no shell is involved
    assert "rtmp://h/live//a b/in" in args
    assert args.index("-hide_banner") < args.index("-i")
    assert args[args.index("-segment_time") + 1] == "6"
    assert args[args.index("-rw_timeout") + 1] == "10000000"
    assert args[args.index("-f") + 1] == "live_flv" and args.index("-f") < args.index("-i")  # jumps removed
    assert "nobuffer" not in " ".join(args)
    assert args[-1] == str(tmp_path / "seg_%05d.ts")
    assert ["-map", "0:v?"] == args[args.index("-map"):args.index("-map") + 2]


def _after(args, flag):
    """The values that follow each occurrence of ``flag``."""
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_the_reader_writes_the_continuous_audio_track_as_a_second_output(tmp_path: Path):
    args = segmenter_args("rtmp://h/live//a/in", tmp_path, 6, 10, "ffmpeg", audio_track=True, start_number=7)
    assert args[args.index("-segment_start_number") + 1] == "7"
    track = args[args.index(str(tmp_path / "seg_%05d.ts")) + 1:]
    assert track[:2] == ["-map", "0:a"]  # required: an input without audio fails with a reason
    assert "aresample=48000:async=1:first_pts=0" in track and track[-1] == str(tmp_path / "audio.pcm")
    assert args.index("-progress") < args.index("-i")


def test_a_piece_copies_the_video_and_puts_the_audio_on_its_aac_boundary():
    args = piece_args("ffmpeg", Path("s.ts"), Path("a.pcm"), 1024 * 282, Path("o.ts"), "96k", ts_offset_s=30.0)
    assert args[0] == "ffmpeg" and args[-1] == "o.ts" and "-copyts" in args
    # both inputs shifted by the same 10 s, the audio by its boundary too: 282 frames = 6.016 s, set
    # in whole samples by a filter (FFmpeg 9 ignores -itsoffset on a raw PCM input; 5.1 and 7.0 do not)
    assert _after(args, "-itsoffset") == ["40.000000"]
    assert _after(args, "-filter_complex") == [f"[1:a]asetpts=PTS+round({40 * 48000 + 282 * 1024}/SR/TB)[s0]"]
    assert _after(args, "-map") == ["0:v:0", "[s0]"]
    assert _after(args, "-c:v") == ["copy"] and _after(args, "-b:a") == ["96k"]
    assert _after(args, "-bsf:a") == ["noise=drop=eq(n\\,0)"]  # the AAC priming packet dropped


def test_a_piece_encoded_with_the_audio_around_it_keeps_only_its_own_packets():
    # two frames before the piece (the input starts there) and the piece's 47 frames kept: packets 0
    # (priming), 1 and 2 (the frames before) and those after 2 + 47 (the frame after) are dropped
    args = piece_args("ffmpeg", Path("s.ts"), Path("a.pcm"), 1024 * 45, Path("o.ts"), samples=1024 * 47, lead=2048)
    assert _after(args, "-filter_complex") == [f"[1:a]asetpts=PTS+round({10 * 48000 + 45 * 1024}/SR/TB)[s0]"]
    assert _after(args, "-bsf:a") == ["noise=drop=lte(n\\,2)+gt(n\\,49)"]
    assert _after(piece_args("ffmpeg", Path("s.ts"), Path("a.pcm"), 0, Path("o.ts")), "-bsf:a") == \
        ["noise=drop=eq(n\\,0)"]


def test_fitting_stretches_only_when_asked_and_ducks_the_original_under_the_dub():
    stretched = fit_args("ffmpeg", Path("d.wav"), "wav", 22050, 1, Path("o.pcm"), 144384, 1.25, "duck", 12,
                         Path("f.pcm"))
    graph = stretched[stretched.index("-filter_complex") + 1]
    assert "atempo=1.250000" in graph and "apad=whole_len=144384" in graph and "atrim=end_sample=144384" in graph
    assert "volume=-12dB" in graph and "amix=" in graph and "duration=first" in graph
    padded = fit_args("ffmpeg", Path("d.wav"), "wav", 22050, 1, Path("o.pcm"), 144384, 1.0, "replace", 12,
                      Path("f.pcm"))
    graph = padded[padded.index("-filter_complex") + 1]
    assert "atempo" not in graph and "amix" not in graph and "volume" not in graph
    raw = fit_args("ffmpeg", Path("d.pcm"), "pcm_s16le", 22050, 1, Path("o.pcm"), 10, 1.0, "duck", 12,
                   Path("f.pcm"))
    assert raw[raw.index("d.pcm") - 9:raw.index("d.pcm")] == ["-f", "s16le", "-ac", "1", "-ar", "22050",
                                                              "-protocol_whitelist", "file", "-i"]


def test_no_dub_leaves_the_original_untouched_but_exactly_the_slot_long():
    args = fit_args("ffmpeg", None, "wav", 48000, 2, Path("o.pcm"), 500, 1.0, "duck", 12, Path("f.pcm"))
    graph = args[args.index("-filter_complex") + 1]
    assert args.count("-i") == 1 and graph == "[0:a]apad=whole_len=500[s0];[s0]atrim=end_sample=500[s1]"


def test_the_publisher_reads_pieces_from_stdin_in_real_time():
    args = publisher_args("ffmpeg", "rtmp://h/live//a/out")
    assert "-nostdin" not in args and "-re" in args and args.index("-re") < args.index("-i")
    assert args[args.index("-i") + 1] == "pipe:0" and args[-1] == "rtmp://h/live//a/out"
    assert _after(args, "-progress") == ["pipe:1"]


def test_keys_in_the_urls_ffmpeg_prints_are_hidden():
    from worker.media.parse import redact_keys

    line = "[error] rtmp://127.0.0.1:1935/live//cam/in?key=VBVJafuvL-bk&x=1: Input/output error"
    assert redact_keys(line) == "[error] rtmp://127.0.0.1:1935/live//cam/in?key=…&x=1: Input/output error"
    assert redact_keys("from 'rtmp://h/live//c/out?key=abc':") == "from 'rtmp://h/live//c/out?key=…':"


def test_wall_at_finds_when_a_progress_log_first_reached_a_media_time():
    from worker.media.progress import wall_at

    points = [(100.0, 1.0), (101.0, 2.0), (102.0, 2.0), (104.0, 4.0)]
    assert wall_at(points, 2.0) == 101.0  # the first sample at that time, not a later repeat
    assert wall_at(points, 3.0) == 103.0  # between samples: linear
    assert wall_at(points, 0.5) == 99.5  # before the first sample: back from it
    assert wall_at(points, 4.5) is None and wall_at([], 1.0) is None
    long = [(1000.0 + i * 0.25, i * 0.25) for i in range(14_400)]
    assert wall_at(long, 1800.1) == pytest.approx(1000.0 + 1800.1, abs=1e-6)
