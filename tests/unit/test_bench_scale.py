"""The scale benchmark's verdicts (tools/bench/scale.py): growth and missed targets from its results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench import scale


def result(messages: int, tps: dict, p95: dict, client_share: float = 0.05) -> dict:
    def run(side: str) -> dict:
        ops = {op: {"p50": v / 2, "p95": v, "p99": v * 2} for op, v in p95[side].items()}
        cpu = {"client_share": client_share, "server_bound": client_share < 0.25, "server_ms_per_tx": 1.0}
        return {"tps": tps[side], "ops": ops, "cpu": cpu}

    sides = {"ours": run("ours"), "seed": run("seed")}
    loaded = {"load_s": {"ours": 60.0, "seed": 61.0}, "db_mb": {"ours": 600, "seed": 560}}
    return {"messages": messages, "throughput": sides, "latency": sides, **loaded}


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


def test_passes_combine_into_medians_with_the_spread_kept():
    def one(tps: float, p95: float) -> dict:
        ops = {"channel_history": {"p50": p95 / 2, "p95": p95, "p99": p95 * 3, "statement_mean": 0.1}}
        return {"tps": tps, "ops": ops, "cpu": {"client_share": tps / 10_000}}

    combined = scale.combine([one(1000, 0.9), one(1200, 2.5), one(900, 1.1)])
    history = combined["ops"]["channel_history"]
    assert (history["p50"], history["p95"], history["p99"]) == (0.55, 1.1, 3.3)
    assert history["p95_passes"] == [0.9, 2.5, 1.1]
    # The rest is the pass of median throughput's.
    assert combined["tps"] == 1000 and combined["cpu"] == {"client_share": 0.1}
    assert combined["passes"] == [1000, 1200, 900]
    assert scale.combine([one(1000, 0.9)]) == one(1000, 0.9)


def test_the_report_shows_each_missed_operation_once_with_its_plan_and_next_step(monkeypatch):
    slow = {"ours": {"channel_history": 0.5, "search_fulltext": 30.0}, "seed": FLAT["seed"]}
    results = [
        result(1_000_000, {"ours": 2000, "seed": 900}, FLAT),
        result(10_000_000, {"ours": 2000, "seed": 800}, slow),
    ]
    monkeypatch.setattr(scale, "NEXT_STEP", {"search_fulltext": "index the terms per channel"})
    text = scale.report(results, plans={"search_fulltext": "Limit\n  ->  Bitmap Heap Scan on messages"})
    assert "Targets: 2 missed" in text
    assert "MISSED search_fulltext: p95 30.00 ms" in text and "MISSED search_fulltext: p95 grew 6.0x" in text
    section = text.split("\n  search_fulltext:\n", 1)[1]
    assert section.splitlines() == [
        "    Limit",
        "      ->  Bitmap Heap Scan on messages",
        "    Next step: index the terms per channel",
    ]


def test_a_saved_run_is_published_again_from_its_json(tmp_path, monkeypatch, capsys):
    results = [
        result(1_000_000, {"ours": 2000, "seed": 900}, FLAT),
        result(3_000_000, {"ours": 1900, "seed": 900}, FLAT),
    ]
    saved = tmp_path / "scale.json"
    saved.write_text(json.dumps({"stamp": "2026-12-03, commit abc1234", "sizes": results, "variants": {}, "plans": {}}))
    monkeypatch.setattr(scale, "chart", lambda _results, path: path.write_bytes(b"png"))
    monkeypatch.setattr(scale.run, "STATE", tmp_path / "state")
    (tmp_path / "state").mkdir()
    monkeypatch.setattr(scale, "DOCS", tmp_path)
    assert scale.main(["--from-json", str(saved), "--docs"]) == 0
    written = (tmp_path / "scale-latest.txt").read_text()
    assert written.startswith("Run of 2026-12-03, commit abc1234\n(printed again from its saved results on ")
    assert "Targets: all met" in written
    assert written.strip() in capsys.readouterr().out
    assert (tmp_path / "scale.png").read_bytes() == b"png"


def test_passes_take_turns_and_their_number_is_checked():
    sides = ["ours", "seed"]
    assert [scale.in_turn(sides, n) for n in range(3)] == [sides, ["seed", "ours"], sides]
    assert scale.parse_args(["--latency-passes", "5"]).latency_passes == 5
    with pytest.raises(SystemExit):
        scale.parse_args(["--latency-passes", "0"])
