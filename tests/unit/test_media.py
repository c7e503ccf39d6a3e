from pathlib import Path

from worker.media.segmenter import parse_segment_list, progress_out_time_s, segmenter_args


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
