"""The command line prints lme4's summary, JSON with the reference numbers, clear errors."""

from __future__ import annotations

import json

import pytest

from mixedmodels.cli import main
from tests.catalogue import case


def test_fit_prints_summary(capsys):
    assert main(["fit", "Reaction ~ Days + (Days|Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Number of obs: 180, groups:  Subject, 18" in out


def test_fit_json_matches_lme4(capsys):
    ref = case("sleepstudy_slopes_ml").reference
    assert main(["fit", ref["formula"], "--data", "sleepstudy", "--ml", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["objective"] == pytest.approx(ref["objective"], rel=1e-6)
    assert list(payload["fixef"].values()) == pytest.approx(ref["fixef"], rel=1e-4)
    assert payload["sigma"] == pytest.approx(ref["sigma"], rel=1e-3)
    assert payload["reml"] is False


def test_csv_path(tmp_path, capsys):
    import mixedmodels as mm

    path = tmp_path / "sleep.csv"
    mm.datasets.load("sleepstudy").to_csv(path, index=False)
    assert main(["fit", "Reaction ~ Days + (1|Subject)", "--data", str(path), "--json"]) == 0
    ref = case("sleepstudy_intercepts_reml").reference
    assert json.loads(capsys.readouterr().out)["objective"] == pytest.approx(
        ref["objective"], rel=1e-6
    )


def test_errors_go_to_stderr_with_exit_code(capsys):
    assert main(["fit", "Reaction ~ Days + (Days|Subjct)", "--data", "sleepstudy"]) == 2
    err = capsys.readouterr().err
    assert "'Subjct'" in err and "^" in err
    assert main(["fit", "y ~ (1|g)", "--data", "nosuchdata"]) == 2
    assert "no bundled data set" in capsys.readouterr().err


def test_parquet_path(tmp_path, capsys):
    import mixedmodels as mm

    path = tmp_path / "sleep.parquet"
    mm.datasets.load("sleepstudy").to_parquet(path)
    assert main(["fit", "Reaction ~ Days + (1|Subject)", "--data", str(path), "--json"]) == 0
    ref = case("sleepstudy_intercepts_reml").reference
    out = json.loads(capsys.readouterr().out)
    assert out["objective"] == pytest.approx(ref["objective"], rel=1e-6)


def test_plain_lme4_layout_on_request(capsys):
    assert (
        main(["fit", "Reaction ~ Days + (Days|Subject)", "--data", "sleepstudy", "--ddf", "none"])
        == 0
    )
    out = capsys.readouterr().out
    assert "['lmerMod']" in out and "Pr(>|t|)" not in out


def test_glmer_from_the_command_line_matches_lme4(capsys):
    """--family fits glmer; the JSON's logLik and fixef are lme4's (tight PIRLS) ones."""
    from tests.catalogue import glmm_cases

    ref = next(c for c in glmm_cases() if c.name == "cbpp_probit").reference
    argv = ["fit", ref["formula"], "--data", "cbpp", "--family", "binomial", "--link", "probit"]
    assert main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["loglik"] == pytest.approx(ref["tight"]["logLik"], rel=1e-6)
    assert list(payload["fixef"].values()) == pytest.approx(ref["tight"]["fixef"], rel=1e-4)
    assert payload["family"] == "binomial  ( probit )"
    assert main(argv) == 0
    assert "Family: binomial  ( probit )" in capsys.readouterr().out
