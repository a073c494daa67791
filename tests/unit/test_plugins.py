"""The Jinja tests used by the preflights."""

import re
from pathlib import Path

import pytest
from ansible_collections.chatflow.db.plugins.test import network, secrets


@pytest.mark.parametrize(
    "value,ok",
    [
        ("10.0.0.0/24", True),
        ("fd00::/64", True),
        ("0.0.0.0/0", True),
        ("10.0.0.1/24", False),
        ("10.0.0.0", False),
        ("300.0.0.0/8", False),
        ("", False),
        (None, False),
        ("10.0.0.0/33", False),
    ],
)
def test_cidr(value, ok):
    assert network.cidr(value) is ok


@pytest.mark.parametrize("value,ok", [("127.0.0.1", True), ("::1", True), ("localhost", False), ("1.2.3", False)])
def test_ip_address(value, ok):
    assert network.ip_address(value) is ok


def test_strong_password_accepts_generated_ones():
    assert secrets.strong_password("Zq8yTn3LkP0wRb7sVd2m")


@pytest.mark.parametrize(
    "value,reason",
    [("", "empty"), ("Short1", "shorter"), ("aaaaaaaaaaaaaaaaaaaa", "kinds"), ("has space inside 123", "whitespace")],
)
def test_weak_passwords_are_refused_with_a_reason(value, reason):
    assert not secrets.strong_password(value)
    assert reason in secrets.password_problem(value)


def test_seed_file_example_passwords_are_in_the_forbidden_list():
    seed = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_915982d7d73b6dd6.txt"
    if not seed.exists():
        pytest.skip("../shared/seeds is not beside the project")
    text = seed.read_text(encoding="utf-8")
    examples = set(re.findall(r"PASSWORD '([^']+)'", text))
    assert examples
    for example in examples:
        assert not secrets.strong_password(example)
    # The long ones would pass every other rule: the hash list is what refuses them.
    long_ones = [e for e in examples if len(e) >= secrets.MIN_LENGTH]
    assert len(long_ones) == 2
    for example in long_ones:
        assert "published example" in secrets.password_problem(example)
