"""Loopback by default; any other address needs a token."""

from __future__ import annotations

import pytest

from service.errors import InputError
from service.ui.access import check_exposure, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_exposure(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_other_hosts_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(InputError, match="EXPQ_UI_TOKEN"):
        check_exposure(host, None)
    check_exposure(host, "s3cret")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(InputError, match="empty"):
        check_exposure("0.0.0.0", "  ")
