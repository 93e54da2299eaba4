"""One exception and warning hierarchy for the whole package.

Every error the package raises on purpose derives from :class:`MixedModelsError`, so a caller
can catch them all with one ``except`` clause; the subclasses also derive from the matching
built-in (``ValueError``, ``KeyError``) so generic handlers keep working.
"""

from __future__ import annotations


class MixedModelsError(Exception):
    """Base class of every error raised by mixedmodels."""


def located_message(message: str, formula: str | None, position: int | None) -> str:
    """``message`` followed by the formula and a caret under ``position`` when known."""
    if formula is not None and position is not None:
        return f"{message} (at position {position})\n  {formula}\n  {' ' * position}^"
    if formula is not None:
        return f"{message}\n  in formula: {formula}"
    return message


class FormulaError(MixedModelsError, ValueError):
    """A model formula that cannot be parsed or does not fit the data.

    Parameters
    ----------
    message : str
        What is wrong.
    formula : str, optional
        The formula text; when given together with ``position`` the message shows a caret
        under the fault.
    position : int, optional
        0-based character offset of the fault in ``formula``.
    """

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.formula = formula
        self.position = position
        super().__init__(located_message(message, formula, position))


class DataError(MixedModelsError, ValueError):
    """Data that cannot be used as given (empty, wrong type, degenerate grouping factor)."""


class ColumnNotFoundError(DataError, KeyError):
    """A column named in the formula is not in the data."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.formula = formula
        self.position = position
        super().__init__(located_message(message, formula, position))

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class NewLevelError(DataError):
    """New data holds grouping levels the model has not seen."""


class ArgumentError(MixedModelsError, ValueError):
    """An argument the function cannot use (an unknown option, a start of the wrong length)."""


class SimulationError(MixedModelsError, ValueError):
    """Impossible parameters for a simulation."""


class ConvergenceError(MixedModelsError, RuntimeError):
    """The optimizer failed outright."""


class MixedModelsWarning(UserWarning):
    """Base class of every warning issued by mixedmodels."""


class RankDeficiencyWarning(MixedModelsWarning):
    """Fixed-effect columns were dropped because the model matrix is rank deficient."""


class SingularFitWarning(MixedModelsWarning):
    """The fit lies on the boundary: a random-effect variance is (near) zero."""


class ConvergenceWarning(MixedModelsWarning):
    """The optimizer stopped without meeting its convergence criteria."""


class DegenerateFitWarning(MixedModelsWarning):
    """The fit is degenerate (e.g. a residual standard deviation of essentially zero), so
    some quantities cannot be computed reliably."""


class RowsDroppedWarning(MixedModelsWarning):
    """Rows with missing values were dropped."""


class NonIntegerResponseWarning(MixedModelsWarning):
    """Counts (poisson) or numbers of successes (binomial) that are not whole numbers, as
    R's "non-integer x" and "non-integer #successes in a binomial glm!" warnings."""
