"""Whisper's beam per fragment: wide when the engine has the time for it, greedy when not."""

import threading

import pytest

from worker.sts.beam import HEADROOM, WIDE_COST, BeamChooser, Room, decode_beam

CHAINS = [400.0, 520.0, 450.0]  # ms, the last chains; the slowest (520) sets the expected one


def test_an_idle_engine_with_room_decodes_with_the_configured_beam():
    assert decode_beam(5, Room(remaining_ms=4000, waiting=0), CHAINS, running=1) == 5
    assert decode_beam(5, Room(remaining_ms=None), CHAINS, running=1) == 5  # a client that says no limit
    assert decode_beam(5, Room(remaining_ms=50), [], running=1) == 5  # nothing known yet: the configured one


def test_greedy_when_the_beam_is_one():
    assert decode_beam(1, Room(remaining_ms=60_000), CHAINS, running=1) == 1


def test_greedy_while_other_fragments_wait_or_run():
    assert decode_beam(5, Room(remaining_ms=60_000, waiting=1), CHAINS, running=1) == 1
    assert decode_beam(5, Room(remaining_ms=60_000, waiting=0), CHAINS, running=2) == 1


def test_greedy_when_the_room_left_does_not_hold_a_wide_chain():
    needed = HEADROOM * WIDE_COST * max(CHAINS)
    assert decode_beam(5, Room(remaining_ms=needed - 1), CHAINS, running=1) == 1
    assert decode_beam(5, Room(remaining_ms=needed + 1), CHAINS, running=1) == 5
    # fixed mode's 6 s fragment on a busy host: a 1.6 s chain, 2 s left -> greedy
    assert decode_beam(5, Room(remaining_ms=2000), [1600.0], running=1) == 1


def test_the_chooser_counts_what_runs_and_learns_from_the_chains():
    chooser = BeamChooser(5)
    roomy = Room(remaining_ms=10_000)
    inside, go = threading.Event(), threading.Event()
    beams: list[int] = []

    def long_chain() -> None:
        with chooser.chain(roomy) as beam:
            beams.append(beam)
            inside.set()
            go.wait(5)

    t = threading.Thread(target=long_chain)
    t.start()
    assert inside.wait(5)
    with chooser.chain(roomy) as beam:  # another fragment while the first runs
        assert beam == 1
    go.set()
    t.join(5)
    assert beams == [5]
    with chooser.chain(roomy) as beam:  # alone again
        assert beam == 5
    # the recorded chains were short: a little room is enough; none is not
    with chooser.chain(Room(remaining_ms=0)) as beam:
        assert beam == 1
    with pytest.raises(RuntimeError), chooser.chain(roomy):
        raise RuntimeError("decode failed")
    with chooser.chain(roomy) as beam:  # a failed chain does not leave it counted as running
        assert beam == 5
