"""The live harness's own rules: a missing component skips, saying why, except under CI."""

from __future__ import annotations

import pytest

from .postgres import unavailable


def test_a_missing_component_skips_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside CI: a skip, and the reason printed."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        unavailable("PostgreSQL is not installed")
    assert "SKIPPED: PostgreSQL is not installed" in capsys.readouterr().out


def test_under_ci_a_missing_component_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=true: the same situation is a failure."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("PostgreSQL is not installed")
