from worker.models import Segment
from worker.publisher import choose


def seg(**kw):
    base = {"sequence": 3, "start_s": 18.0, "end_s": 24.0, "file": "f", "deadline_at": 100.0}
    base.update(kw)
    return Segment(**base)


def test_a_ready_dub_goes_out_even_before_its_deadline():
    c = choose(seg(dub="ready", piece="p.ts", fallback_piece="fb.ts"), now=90.0)
    assert (c.key, c.status, c.reason) == ("p.ts", "processed", None)


def test_waits_until_the_deadline_for_the_dub():
    assert choose(seg(fallback_piece="fb.ts"), now=99.9) is None


def test_at_the_deadline_the_fallback_goes_out_as_late():
    c = choose(seg(fallback_piece="fb.ts"), now=100.0)
    assert (c.key, c.status) == ("fb.ts", "fallback") and c.reason.startswith("late")


def test_a_failed_chain_falls_back_at_once_with_its_reason():
    c = choose(seg(dub="fallback", dub_reason="sts_failed: DECODE_ERROR", fallback_piece="fb.ts"), now=50.0)
    assert (c.status, c.reason) == ("fallback", "sts_failed: DECODE_ERROR")


def test_nothing_to_feed_without_a_fallback_piece_even_late():
    assert choose(seg(dub="fallback", dub_reason="x"), now=200.0) is None
