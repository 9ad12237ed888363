"""The nftables rules each cut makes (the rules themselves are exercised by the partition tests
and the campaign, inside real namespaces)."""

from __future__ import annotations

import pytest

from benchmarks.chaos.network import Cut

HOST = "10.200.0.1"


def test_a_partition_drops_both_directions_of_its_ports_only() -> None:
    assert Cut("partition", (5432, 6379)).rules(HOST) == [
        "add rule inet chaos out ip daddr 10.200.0.1 tcp dport { 5432, 6379 } drop",
        "add rule inet chaos in ip saddr 10.200.0.1 tcp sport { 5432, 6379 } drop",
    ]


def test_dropped_replies_leave_what_the_worker_sends_alone() -> None:
    assert Cut("drop_replies", (5432,)).rules(HOST) == [
        "add rule inet chaos in ip saddr 10.200.0.1 tcp sport { 5432 } drop"
    ]


def test_isolation_resets_and_a_flaky_link() -> None:
    assert all(" drop" in rule and "dport" not in rule for rule in Cut("isolate").rules(HOST))
    assert Cut("reset", (6379,)).rules(HOST) == [
        "add rule inet chaos out ip daddr 10.200.0.1 tcp dport { 6379 } reject with tcp reset"
    ]
    flaky = Cut("flaky", (), 40).rules(HOST)
    assert len(flaky) == 2 and all("numgen random mod 100 < 40 drop" in rule for rule in flaky)


def test_an_unknown_cut_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from partition"):
        Cut("netem")
