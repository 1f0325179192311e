"""Every name, address and literal checked by a pattern is matched whole: `$` also matches before
a final newline, so "bob\\n" was a valid user name, "hci0\\n" an adapter, "22:00\\n" a time of
between(), "example.com\\n:8080" a webhook host and ".1f\\n" a format spec. Each is refused now, and the
same text without the newline is still accepted."""

from __future__ import annotations

import pytest

from drivers.ble.config import RESIDENT_RE, BleDevice
from edge.api.accounts import AccountError, check_name
from rules.config import parse_allow_entry
from rules.expr import ExprError, compile_expr
from rules.templates import check_template


def test_a_user_name_with_a_final_newline_is_refused() -> None:
    assert check_name("bob") == "bob"
    with pytest.raises(AccountError):
        check_name("bob\n")


def test_rule_literals_with_a_final_newline_are_refused() -> None:
    compile_expr("between('22:00', '06:00')")
    with pytest.raises(ExprError, match="HH:MM"):
        compile_expr("between('22:00\\n', '06:00')")
    assert parse_allow_entry("example.com:8080") == ("example.com", 8080)
    with pytest.raises(ValueError):
        parse_allow_entry("example.com\n:8080")
    check_template("{value:.1f} kW")
    with pytest.raises(ExprError, match="format spec"):
        check_template("{value:.1f\n} kW")


def test_ble_names_with_a_final_newline_are_refused() -> None:
    device = {"id": "bt", "driver": "ble", "adapter": "hci0", "devices": []}
    try:
        BleDevice.model_validate(device)
    except Exception as exc:  # the fields this test does not set are not its subject
        assert "adapter" not in str(exc), exc
    with pytest.raises(ValueError, match="adapter"):
        BleDevice.model_validate({**device, "adapter": "hci0\n"})
    assert RESIDENT_RE.match("R-0042") and not RESIDENT_RE.match("R-0042\n")
