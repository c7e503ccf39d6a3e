"""How long speech units may be follows how long their dubs take: a speech tracker on a real Redis, its
units settled the way the STS-dispatch and collect stages settle them."""

import time

import pytest
import redis

from worker.core.placement import UnitSpan
from worker.core.segments import Reason, ReasonCode, SegmentStatus
from worker.core.settings import load_settings
from worker.core.speech import CutKind
from worker.core.units import Unit
from worker.pipeline.speech import SpeechTracker
from worker.state.registry import StreamRegistry
from worker.state.store import make_store
from worker.state.units import UnitBook

pytestmark = pytest.mark.integration
SID = "budget"


@pytest.fixture
def setup(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    reg = StreamRegistry(client)
    job = reg.start(SID, "test").job_id
    settings = load_settings(redis_url=redis_url, hook_insecure=True, store_dir=tmp_path / "store")
    return reg, UnitBook(reg), make_store(settings), settings, job


def tracker(setup, tmp_path, **overrides) -> SpeechTracker:
    reg, _, store, settings, job = setup
    t = SpeechTracker(SID, job, tmp_path, registry=reg, store=store, settings=settings.model_copy(update=overrides),
                      languages=("en", "es", "default"), latency_s=6.0, start_unit=lambda w: None,
                      start_remux=lambda w: None, detector=object())  # type: ignore[arg-type]
    t.start(origin_at=time.time(), delay_s=6.0, offset_s=0.0, piece_s=2.0)
    return t


def closed(book: UnitBook, first: int, n: int, now: float) -> None:
    for i in range(first, first + n):
        book.add(SID, Unit(sequence=i, start_s=2.0 * i, end_s=2.0 * i + 1.5, cut=CutKind.PAUSE, closed_at=now,
                           deadline_at=now + 3.0))


def settle(t: SpeechTracker, book: UnitBook, first: int, n: int, took_s: float) -> None:
    for i in range(first, first + n):
        u = book.get(SID, i)
        assert u is not None and u.closed_at is not None
        book.place(SID, i, u.start_s, dub_start_s=u.start_s, placed_at=u.closed_at + took_s)
        t.pending.setdefault(i, UnitSpan(0, 1, False))  # dispatched by this run (as _dispatch notes it)
    t.refresh()


def test_fast_dubs_make_units_longer_and_slow_ones_bring_them_back_never_shorter(setup, tmp_path):
    reg, book, *_ = setup
    now = time.time()
    closed(book, 0, 6, now)
    t = tracker(setup, tmp_path)  # the six units are pending in it
    first = t.longest(0)  # at the configured estimate, 1.2 s
    assert t.sts_s == 1.2 and reg.get(SID, with_segments=False).sts_estimate_s == 1.2
    settle(t, book, 0, 6, took_s=0.4)  # idle STS workers: every dub took 0.4 s
    assert t.sts_s == pytest.approx(0.6)
    assert reg.get(SID, with_segments=False).sts_estimate_s == pytest.approx(0.6)  # the dashboard says why
    fast = t.longest(0)
    assert (fast - first) * t.cutter.params.frame_s == pytest.approx(1.2 - 0.6, abs=0.04)
    # A run that goes on (a takeover, a redeploy) starts from what the stream's units took.
    assert tracker(setup, tmp_path).sts_s == pytest.approx(0.6)
    closed(book, 6, 20, now)
    settle(t, book, 6, 20, took_s=2.5)  # busy: back to the configured length, not below it
    assert t.sts_s == 1.2 and t.longest(0) == first


def test_a_dub_that_comes_too_late_takes_the_estimate_back_up(setup, tmp_path):
    _, book, *_ = setup
    now = time.time()
    closed(book, 0, 4, now)
    t = tracker(setup, tmp_path)
    settle(t, book, 0, 3, took_s=0.3)
    assert t.sts_s == pytest.approx(0.5)
    book.settle(SID, 3, SegmentStatus.FALLBACK, Reason(ReasonCode.STS_TIMEOUT, "no answer by its deadline"))
    t.refresh()
    assert t.sts_s == pytest.approx(0.5 + 0.5 + 0.2)  # counted as the estimate it had and a step more


def test_a_fixed_estimate_stays_when_asked(setup, tmp_path):
    _, book, *_ = setup
    closed(book, 0, 6, time.time())
    t = tracker(setup, tmp_path, sts_estimate_adaptive=False)
    settle(t, book, 0, 6, took_s=0.4)
    assert t.sts_s == 1.2


def test_a_unit_opened_before_the_first_piece_is_added_has_the_budget_of_its_keyframes(setup, tmp_path):
    """The reader's first segment (its start and length) is known when the tracker starts; a unit that opens
    before the preparer hands that piece over is not cut as if no keyframe were known."""
    from worker.core.speech import unit_budget_s
    from worker.core.timing import AUDIO_RATE
    from worker.pipeline.speech_seal import REMUX_RESERVE_S, TRACK_FRAME

    *_, settings, _ = setup
    t = tracker(setup, tmp_path)  # started with the first segment at 0 s, 2 s long; no piece added yet
    assert not t.pieces
    s = settings
    frame = round(1.0 * AUDIO_RATE / TRACK_FRAME)  # a unit opening 1 s in

    def budget(keyframes: list[float], piece_s: float) -> float:
        return unit_budget_s(1.0, keyframes, piece_s, 6.0, s.max_lag_s, s.publish_margin_s, REMUX_RESERVE_S,
                             t.hear_s, t.sts_s)

    assert budget([0.0], 2.0) > budget([], 0.0)  # the keyframe at 2 s is within its lag
    assert t.longest(frame) == t.cutter.params.frames(budget([0.0], 2.0))


def test_units_allow_for_how_late_the_detector_hears_the_input(setup, tmp_path):
    """The real detector reads a track the way the reader writes it, 32 ms at a time, on a clock the test
    sets: a detector that hears the input on time gives units the 0.2 s allowed before any read; one that
    hears it half a second late takes that off every unit, so that dubs still come in time."""
    from worker.media.commands import AUDIO_TRACK
    from worker.media.vad import CHUNK_BYTES, SpeechDetector
    from worker.pipeline.speech import HEAR_START_S

    reg, _, store, settings, job = setup
    origin, now = 1000.0, [1000.0]
    t = SpeechTracker(SID, job, tmp_path, registry=reg, store=store, settings=settings,
                      languages=("en", "es", "default"), latency_s=6.0, start_unit=lambda w: None,
                      start_remux=lambda w: None, detector=SpeechDetector(), clock=lambda: now[0])
    t.start(origin_at=origin, delay_s=6.0, offset_s=0.0, piece_s=2.0)
    assert t.hear_s == HEAR_START_S
    first = t.longest(0)
    frame = t.cutter.params.frame_s

    def read(k: int, late_s: float, frames: int = 1) -> None:  # the k-th 32 ms on, heard late_s after
        with open(tmp_path / AUDIO_TRACK, "ab") as f:
            f.write(bytes(CHUNK_BYTES * frames))
        now[0] = origin + (k + frames) * frame + late_s
        t.hear()

    read(0, 0.0, frames=62)  # the first piece, 2 s written before the run started: caught up, not timed
    assert t.hear_s == HEAR_START_S
    for k in range(62, 92):  # heard as the input has it (this host's reads come 0.05-0.15 s before the origin's clock)
        read(k, -0.1)
    assert t.hear_s == 0.0
    assert reg.get(SID, with_segments=False).hear_estimate_s == 0.0  # the dashboard says why
    assert (t.longest(0) - first) * frame == pytest.approx(HEAR_START_S, abs=frame)
    for k in range(92, 122):  # the reader falls half a second behind
        read(k, 0.5)
    assert t.hear_s == pytest.approx(frame + 0.5 + 0.05)  # the read's first frame, half a second late, and a margin
    assert (first - t.longest(0)) * frame == pytest.approx(t.hear_s - HEAR_START_S, abs=frame)
