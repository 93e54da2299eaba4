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


# ---------------------------------------------------------------------- failures (issue 9)
def _one_error_line(err: str) -> str:
    """The single ``mixedmodels: error:`` line of ``err``; asserts there is no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("mixedmodels: error: ")]
    assert len(lines) == 1, err
    assert err.startswith(lines[0])  # nothing printed before it
    return lines[0]


def _bad_files(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    broken = tmp_path / "broken.csv"
    broken.write_text('a,b\n1,2\n"unterminated\n')
    latin = tmp_path / "latin.csv"
    latin.write_bytes("y,g\n1,caf\xe9\n".encode("latin-1"))
    fake_parquet = tmp_path / "fake.parquet"
    fake_parquet.write_text("not parquet")
    return {
        "folder": (str(folder), "is a folder"),
        "empty": (str(empty), "is empty"),
        "parser_error": (str(broken), "could not be read"),
        "not_utf8": (str(latin), "could not be read"),
        "fake_parquet": (str(fake_parquet), "could not be read"),
        "missing_file": (str(tmp_path / "missing.csv"), "no such file"),
        "missing_folder": (str(tmp_path / "nope" / "x.csv"), "no such file"),
        "unknown_dataset": ("sleepstudyy", "no bundled data set named 'sleepstudyy'"),
    }


@pytest.mark.parametrize(
    "which",
    [
        "folder",
        "empty",
        "parser_error",
        "not_utf8",
        "fake_parquet",
        "missing_file",
        "missing_folder",
        "unknown_dataset",
    ],
)
def test_unreadable_data_is_one_line_and_exit_2(which, tmp_path, capsys):
    source, says = _bad_files(tmp_path)[which]
    assert main(["fit", "y ~ 1 + (1|g)", "--data", source]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_error_line(captured.err)
    assert says in line and source in line


SLEEP = ["fit", "Reaction ~ Days + (1|Subject)", "--data", "sleepstudy"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--link", "log"], "--link log: the gaussian family"),
        (["--family", "gaussian", "--link", "logit"], "--link logit"),
        (["--plot", "{tmp}/no/such/folder/fig.png"], "does not exist"),
        (["--plot-kind", "caterpillar"], "--plot-kind needs --plot"),
        (["--family", "poisson", "--ddf", "kenward-roger"], "--ddf kenward-roger"),
        (["--family", "poisson", "--plot", "{tmp}/fig.png"], "gaussian (lmer) fits only"),
    ],
    ids=[
        "link_log",
        "link_logit",
        "plot_missing_folder",
        "plot_kind_alone",
        "ddf_glmer",
        "plot_glmer",
    ],
)
def test_options_that_would_be_ignored_or_fail_late_are_errors(extra, says, tmp_path, capsys):
    argv = [*SLEEP, *(a.replace("{tmp}", str(tmp_path)) for a in extra)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert says in _one_error_line(captured.err)
    assert not list(tmp_path.iterdir())  # nothing written


def test_identity_link_is_the_gaussian_fit(capsys):
    """--link identity with the gaussian family is what lmer fits: accepted, same numbers."""
    assert main([*SLEEP, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*SLEEP, "--json", "--link", "identity"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


def _error_classes():
    import inspect

    from mixedmodels import errors

    found = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MixedModelsError)
    ]
    assert len(found) >= 8  # the hierarchy as it stands; new classes join automatically
    return found


@pytest.mark.parametrize("error_class", _error_classes(), ids=lambda c: c.__name__)
def test_every_mixedmodels_error_is_one_line_exit_2(error_class, monkeypatch, capsys):
    from mixedmodels import cli

    def failing(*args, **kwargs):
        raise error_class("the fault: column 'zz'")

    monkeypatch.setattr(cli, "lmer", failing)
    assert main(SLEEP) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _one_error_line(captured.err) == "mixedmodels: error: the fault: column 'zz'"
    with pytest.raises(error_class, match="the fault"):
        main([*SLEEP, "--debug"])
    with pytest.raises(error_class, match="the fault"):
        main(["--debug", *SLEEP])


def test_formula_error_keeps_its_caret_below_the_one_error_line(capsys):
    assert main(["fit", "Reaction ~ Days + (1|Subjct)", "--data", "sleepstudy"]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "'Subjct'" in line and "position 21" in line
    caret_line = err.splitlines()[-1]
    assert caret_line.index("^") - 2 == 21  # two spaces of indent, then the caret


def test_unexpected_exception_is_one_line_exit_1(monkeypatch, capsys):
    from mixedmodels import cli

    def failing(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "lmer", failing)
    assert main(SLEEP) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "unexpected RuntimeError: boom second line" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="boom"):
        main([*SLEEP, "--debug"])


def test_keyboard_interrupt_exit_130(monkeypatch, capsys):
    from mixedmodels import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "lmer", interrupted)
    assert main(SLEEP) == 130
    assert _one_error_line(capsys.readouterr().err) == "mixedmodels: error: interrupted"


def test_closed_stdout_in_process_is_quiet(monkeypatch, capsys):
    import sys

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    broken = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", broken)
    assert main([*SLEEP, "--json"]) == 1
    assert sys.stdout is not broken  # replaced by devnull: the flush at exit cannot fail
    sys.stdout.close()
    assert capsys.readouterr().err == ""


def test_json_has_no_nan_or_infinity():
    from mixedmodels.cli import _finite_or_none

    value = {"a": [1.0, float("nan"), {"b": float("-inf")}], "c": "x", "d": 2, "e": True}
    assert _finite_or_none(value) == {"a": [1.0, None, {"b": None}], "c": "x", "d": 2, "e": True}
    import numpy as np

    assert _finite_or_none((np.float64(np.inf), np.float64(1.5))) == [None, 1.5]


def test_warnings_go_to_stderr_as_lines(capsys):
    assert main(["fit", "Yield ~ 1 + (1|Batch)", "--data", "Dyestuff2"]) == 0
    captured = capsys.readouterr()
    assert "boundary (singular) fit" in captured.out  # the summary's own note
    lines = captured.err.splitlines()
    assert lines == ["warning: boundary (singular) fit: a random-effect variance is (near) zero"]


def test_datasets_command_lists_the_bundled_sets(capsys):
    import mixedmodels as mm

    assert main(["datasets"]) == 0
    assert capsys.readouterr().out.split() == mm.datasets.list_datasets()


# ---------------------------------------------------------------------- as a process
# (each process pays ~2 s of imports: four of them, one per behaviour only a process shows)
def _env() -> dict:
    import os
    from pathlib import Path

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _command(*args) -> list[str]:
    import sys

    return [sys.executable, "-m", "mixedmodels", *args]


def test_process_error_is_one_line_and_exit_2(tmp_path):
    import subprocess

    done = subprocess.run(
        _command("fit", "y ~ 1 + (1|g)", "--data", str(tmp_path)),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert _one_error_line(done.stderr) == (
        f"mixedmodels: error: --data {str(tmp_path)!r} is a folder, not a CSV or Parquet file"
    )
    assert done.stderr.count("\n") == 1  # exactly one line


def test_process_debug_shows_the_traceback(tmp_path):
    import subprocess

    shown = subprocess.run(
        _command("--debug", "fit", "y ~ 1 + (1|g)", "--data", str(tmp_path)),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert shown.returncode == 1  # an uncaught exception
    assert "Traceback (most recent call last)" in shown.stderr
    assert "mixedmodels.errors.DataError" in shown.stderr and "is a folder" in shown.stderr


def _wide_csv(tmp_path):
    """Data whose fit's JSON (a 120 x 120 vcov) is far larger than a pipe's 64 KiB buffer."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(9)
    n = 720
    frame = pd.DataFrame(
        {"f": [f"f{i % 120:03d}" for i in range(n)], "g": [f"g{i % 24:02d}" for i in range(n)]}
    )
    frame["y"] = rng.normal(size=n) + frame["g"].str[1:].astype(int) / 10
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    return path


def test_process_closed_pipe_exits_quietly(tmp_path, capsys):
    """``mixedmodels fit ... --json | head -c 10``: head leaves after 10 bytes and the rest
    of a 300 KB JSON meets a closed pipe; the command must end without a word on stderr."""
    import shlex
    import shutil
    import subprocess

    if shutil.which("sh") is None or shutil.which("head") is None:
        pytest.skip("needs a POSIX shell and head")
    path = _wide_csv(tmp_path)
    args = ["fit", "y ~ f + (1|g)", "--data", str(path), "--json"]
    assert main(args) == 0
    full = capsys.readouterr().out
    assert len(full) > 4 * 65536  # more than the pipe holds: the writer must meet EPIPE
    # the pipeline's status is head's: the command's own status goes to a file
    rc, err = tmp_path / "rc", tmp_path / "err.txt"
    script = (
        f"( {shlex.join(_command(*args))}; echo $? > {shlex.quote(str(rc))} ) "
        f"2> {shlex.quote(str(err))} | head -c 10"
    )
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.stdout == full[:10]
    assert err.read_text() == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert int(rc.read_text()) == 1  # Python's documented recipe for EPIPE


def test_process_stdout_closed_before_any_output():
    import subprocess

    proc = subprocess.Popen(
        _command(*SLEEP, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    proc.stdout.close()  # the reader is gone before the fit finishes
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert err == b""
