"""Text and media from outside reach no option parser and no network (issue 14's hardening)."""

import io
import wave

import pytest

from worker.sts.engines import speak

pytestmark = pytest.mark.integration


def seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as w:
        return w.getnframes() / w.getframerate()


def test_a_translation_that_starts_with_an_option_is_spoken_not_parsed(tmp_path):
    secret = tmp_path / "environ"
    secret.write_text("LIVEDUB_HOOK_SECRET=" + " ".join(["palabra"] * 200))  # minutes, if it were read
    spoken = seconds(speak(f"-f {secret}", "es", "default"))
    assert 0 < spoken < 15, spoken  # the words "-f /tmp/..." were spoken; the file was not read
    assert seconds(speak("- Hola", "es", "default")) > 0.3  # ordinary dialogue dashes work


@pytest.mark.parametrize("fmt", ["m4a", "wav"])
def test_a_dub_that_is_a_playlist_cannot_pull_in_another_file(tmp_path, fmt):
    """An STS service answers with an HLS playlist naming a file on this host (another stream's
    segment). Whatever the dub file is called (here .m3u8, which ffmpeg would open as HLS), the collect
    stage's ffmpeg opens it with the demuxer its format names and the file protocol only: the playlist is
    not followed, the fit fails (the segment falls back), and the other stream's audio never leaks in."""
    import subprocess

    from worker.media.commands import fit_args
    from worker.media.run import MediaError, run_media

    other = tmp_path / "other_stream_seg.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=500:duration=2", "-c:a", "aac", "-f", "mpegts", str(other)], check=True, timeout=30)
    playlist = tmp_path / "dub.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{other}\n#EXT-X-ENDLIST\n")
    orig = tmp_path / "orig.pcm"
    orig.write_bytes(bytes(48000 * 4))
    with pytest.raises(MediaError):
        run_media(fit_args("ffmpeg", playlist, fmt, 22050, 1, orig, 48000, 1.0, "duck", 12.0, tmp_path / "o.pcm"))
