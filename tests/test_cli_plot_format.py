"""``--plot`` with an extension matplotlib cannot write is one error line and status 2, found
before the fit (it was an "unexpected ValueError" with status 1 after it)."""

from __future__ import annotations

import time

import pytest

from mixedmodels.cli import main
from tests.catalogue import case

pytest.importorskip("matplotlib")


def test_unknown_plot_extension_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "figure.foo"
    start = time.process_time()
    status = main(["fit", "Reaction ~ Days + (Days|Subject)", "--data", "sleepstudy",
                   "--plot", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1
    assert err[0].startswith("mixedmodels: error: --plot")
    assert "'.foo'" in err[0] and "png" in err[0]
    assert not target.exists()
    # refused before fitting: nothing printed on stdout
    assert capsys.readouterr().out == ""
    assert time.process_time() - start < 30.0


def test_known_extension_without_fit_problem_still_writes(tmp_path, capsys):
    target = tmp_path / "figure.PNG"  # the check is case-insensitive, as matplotlib's
    status = main(["fit", "Reaction ~ Days + (1|Subject)", "--data", "sleepstudy",
                   "--plot", str(target)])
    assert status == 0
    assert target.stat().st_size > 1000
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    objective = case("sleepstudy_intercepts_reml").reference["objective"]  # lme4's
    assert f"REML criterion at convergence: {objective:.1f}" in capsys.readouterr().out
