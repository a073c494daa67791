"""The scale benchmark's verdicts (tools/bench/scale.py): growth and missed targets from its results."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench import scale


def result(messages: int, tps: dict, p95: dict, client_share: float = 0.05) -> dict:
    def run(side: str) -> dict:
        ops = {op: {"p50": v / 2, "p95": v, "p99": v * 2} for op, v in p95[side].items()}
        cpu = {"client_share": client_share, "server_bound": client_share < 0.25, "server_ms_per_tx": 1.0}
        return {"tps": tps[side], "ops": ops, "cpu": cpu}

    sides = {"ours": run("ours"), "seed": run("seed")}
    return {"messages": messages, "throughput": sides, "latency": sides}


FLAT = {
    "ours": {"channel_history": 0.5, "search_fulltext": 5.0},
    "seed": {"channel_history": 1.0, "search_fulltext": 9.0},
}


def test_targets_met_when_flat_fast_and_twice_the_seed():
    results = [
        result(1_000_000, {"ours": 2000, "seed": 900}, FLAT),
        result(10_000_000, {"ours": 2000, "seed": 800}, FLAT),
    ]
    assert scale.growth(results, "ours") == {"channel_history": 1.0, "search_fulltext": 1.0}
    assert scale.misses(results) == []


def test_each_missed_target_is_named():
    slow = {"ours": {"channel_history": 1.6, "search_fulltext": 12.0}, "seed": FLAT["seed"]}
    results = [
        result(1_000_000, {"ours": 2000, "seed": 1500}, FLAT),
        result(10_000_000, {"ours": 1800, "seed": 1500}, slow, client_share=0.4),
    ]
    missed = scale.misses(results)
    assert [op for op, _why in missed] == [
        "mix",
        "mix",
        "channel_history",
        "search_fulltext",
        "channel_history",
        "search_fulltext",
    ]
    assert "1.20x" in missed[0][1] and "40%" in missed[1][1]
    assert scale.growth(results, "ours") == {"channel_history": 3.2, "search_fulltext": 2.4}
