"""Argument checks: each accepts what it documents, in its canonical type, and names the
argument and the value it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.arguments import (
    check_bool,
    check_choice,
    check_int,
    check_level,
    check_n_jobs,
    random_generator,
    seed_sequence,
)
from mixedmodels.errors import ArgumentError


@pytest.mark.parametrize("value", [True, False, np.True_, np.False_])
def test_bool_accepts_true_and_false(value):
    assert check_bool(value, "reml") is bool(value)


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, 1.0])
def test_bool_refuses_everything_else(value):
    with pytest.raises(ArgumentError, match=f"reml must be True or False, got {value!r}"):
        check_bool(value, "reml")


@pytest.mark.parametrize("value, expected", [(5, 5), (np.int32(7), 7), (1e3, 1000), (3.0, 3)])
def test_int_accepts_whole_numbers(value, expected):
    got = check_int(value, "nsim", minimum=1)
    assert got == expected and type(got) is int


@pytest.mark.parametrize(
    "value, match",
    [
        (2.5, "nsim must be an integer, got 2.5"),
        (True, "nsim must be an integer, got True"),
        ("10", "nsim must be an integer, got '10'"),
        (np.nan, "nsim must be an integer"),
        (-5, "nsim must be at least 1, got -5"),
        (0, "nsim must be at least 1, got 0"),
    ],
)
def test_int_refuses_fractions_flags_text_and_small_values(value, match):
    with pytest.raises(ArgumentError, match=match):
        check_int(value, "nsim", minimum=1)


@pytest.mark.parametrize("value, expected", [(1, 1), (4, 4), (-1, -1), (0, -1)])
def test_n_jobs(value, expected):
    assert check_n_jobs(value) == expected


@pytest.mark.parametrize("value", [-2, 1.5, "all"])
def test_n_jobs_refused(value):
    with pytest.raises(ArgumentError, match="n_jobs"):
        check_n_jobs(value)


@pytest.mark.parametrize("value", [0.0, 1.0, 95, -0.5, np.nan, "0.95", True])
def test_level_outside_the_open_unit_interval(value):
    with pytest.raises(ArgumentError, match="level must"):
        check_level(value)


def test_level_and_choice_accept():
    assert check_level(0.9) == 0.9
    assert check_choice("Wald", "method", ("profile", "wald")) == "wald"
    with pytest.raises(ArgumentError, match="method must be one of 'profile', 'wald', got 'x'"):
        check_choice("x", "method", ("profile", "wald"))
    with pytest.raises(ArgumentError, match="method must be one of .* got 3"):
        check_choice(3, "method", ("profile", "wald"))


def test_seeds():
    a = random_generator(42).standard_normal(3)
    np.testing.assert_array_equal(a, np.random.default_rng(42).standard_normal(3))
    assert seed_sequence(7).entropy == 7
    for bad in (-1, "abc", 1.5, True):
        with pytest.raises(ArgumentError, match="seed must be None"):
            random_generator(bad)
        with pytest.raises(ArgumentError, match="seed must be None"):
            seed_sequence(bad)
