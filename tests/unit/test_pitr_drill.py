"""tools/pitr_drill.py: how the RPO drill counts what the restore lost.

The drill itself runs against real containers in the reliability scenario."""

from __future__ import annotations

from tools import pitr_drill

# One acknowledged row every 0.5 s: seq 1..10 at t = 100.0 .. 104.5.
ACKED = [(seq, 100.0 + (seq - 1) * 0.5) for seq in range(1, 11)]


def test_nothing_lost():
    report = pitr_drill.measure(ACKED, set(range(1, 11)))
    assert report["lost_acknowledged"] == 0
    assert report["rpo_seconds"] == 0.0
    assert report["lost_span_seconds"] == 0.0


def test_the_tail_lost():
    report = pitr_drill.measure(ACKED, set(range(1, 7)))
    assert report["restored"] == 6
    assert report["lost_acknowledged"] == 4
    assert report["holes_before_newest_restored"] == 0
    # Lost: seq 7..10 (t 103.0 .. 104.5); the newest restored is seq 6 at t 102.5.
    assert report["lost_span_seconds"] == 1.5
    assert report["rpo_seconds"] == 2.0


def test_a_hole_before_the_newest_restored_row_is_counted():
    report = pitr_drill.measure(ACKED, {1, 2, 4, 5})
    assert report["holes_before_newest_restored"] == 1


def test_a_restored_row_never_acknowledged_does_not_move_the_point():
    # seq 11 committed but its acknowledgement never reached the client before the kill.
    report = pitr_drill.measure(ACKED, {1, 2, 3, 11})
    assert report["rpo_seconds"] == 3.5
    assert report["restored"] == 4


def test_nothing_restored_loses_every_write():
    report = pitr_drill.measure(ACKED, set())
    assert report["lost_acknowledged"] == 10
    assert report["rpo_seconds"] == 4.5
