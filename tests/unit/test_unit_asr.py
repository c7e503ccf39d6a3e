"""The ASR window and loop rules (worker.sts.asr), pure."""

from worker.sts.asr import FULL_FRAMES, MAX_TOKENS, is_silence, looks_looped, text_before, token_limit, window_frames

SECOND = 16000


def test_a_short_unit_gets_the_minimum_window_not_thirty_seconds():
    assert window_frames(3 * SECOND) == 1500  # 15 s: 3 s of speech, and silence after it
    assert window_frames(0) == 1500


def test_a_longer_unit_gets_its_length_and_the_margin():
    assert window_frames(14 * SECOND) == 1700  # 14 s + 3 s
    assert window_frames(14 * SECOND + 80) == 1702  # 1701 frames rounded up to even (the encoder's stride)


def test_the_window_never_passes_whisper_s_thirty_seconds():
    assert window_frames(27 * SECOND) == FULL_FRAMES
    assert window_frames(60 * SECOND) == FULL_FRAMES
    assert all(window_frames(n) % 2 == 0 for n in range(0, 40 * SECOND, 1237))


def test_the_token_limit_follows_the_audio_and_stays_under_the_model_s_half_context():
    assert token_limit(SECOND) == 30
    assert token_limit(5 * SECOND + 1) == 80  # a started second counts
    assert token_limit(60 * SECOND) == MAX_TOKENS


def test_a_repeated_phrase_or_a_decode_at_its_limit_looks_looped():
    assert looks_looped("the city " * 30, 60, 100)
    assert looks_looped("The city council met.", 30, 30)
    assert not looks_looped("The city council met this afternoon to discuss the new budget.", 14, 70)
    assert not looks_looped("", 0, 30)


def test_silence_is_what_faster_whisper_calls_silence():
    assert is_silence(0.9, -1.5)
    assert not is_silence(0.9, -0.3)  # confident text despite the no-speech token
    assert not is_silence(0.2, -1.5)


def test_a_timestamped_decode_keeps_the_text_of_segments_that_start_before_the_speech_ends():
    ts, eot = 1000, 900  # timestamp tokens from 1000 (0.00 s, 0.02 s a token); text tokens below eot
    tokens = [1000, 1, 2, 3, 1280, 1280, 4, 5, 1400, 1400, 6, 6, 6, 1500, eot]  # 0-5.6 s, 5.6-8 s, 8-10 s
    assert text_before(tokens, ts, eot, end_s=6.0) == [1, 2, 3, 4, 5]  # the third segment starts at 8 s
    assert text_before(tokens, ts, eot, end_s=9.0) == [1, 2, 3, 4, 5, 6, 6, 6]
    assert text_before(tokens, ts, eot, end_s=5.6) == [1, 2, 3]  # a segment starting at the end is dropped
    assert text_before([7, 8], ts, eot, end_s=1.0) == [7, 8]  # no timestamps: all of it
