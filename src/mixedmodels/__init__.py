"""mixedmodels: linear mixed-effects models in lme4's formula language, for Python.

>>> import mixedmodels as mm
>>> df = mm.datasets.load("sleepstudy")
>>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", df)
"""

from mixedmodels import (
    cor,  # mm.cor.AR1(), ...: nlme's corStruct classes
    datasets,
    errors,
    var,  # mm.var.Ident(), ...: nlme's varFunc classes
)
from mixedmodels import priors as priors
from mixedmodels.api import (
    anova,
    gamm,
    glmer,
    glmer_nb,
    lm,
    lmer,
    lmer_problem,
    nlme,
    refit,
    refit_ml,
)
from mixedmodels.design.sources import DaskSource, FrameSource, ParquetSource, RowSource
from mixedmodels.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    MixedModelsError,
    MixedModelsWarning,
)
from mixedmodels.inference.emmeans import emmeans, emtrends
from mixedmodels.results.chunked_fit import ChunkedLmerFit
from mixedmodels.results.fit import LmerFit
from mixedmodels.results.glmer_fit import GlmerFit
from mixedmodels.results.lm_fit import LmFit
from mixedmodels.results.lmlist import lmlist
from mixedmodels.results.nlme_fit import NestedNlmeFit, NlmeFit, anova_nlme
from mixedmodels.results.residual_fit import ResidualLmerFit
from mixedmodels.simulate import SimulationParts, simulate_mixed

__version__ = "0.1.0"

__all__ = [
    "ChunkedLmerFit",
    "DaskSource",
    "FrameSource",
    "ParquetSource",
    "RowSource",
    "ArgumentError",
    "ColumnNotFoundError",
    "DataError",
    "FormulaError",
    "LmFit",
    "LmerFit",
    "GlmerFit",
    "glmer",
    "MixedModelsError",
    "MixedModelsWarning",
    "datasets",
    "errors",
    "anova",
    "emmeans",
    "emtrends",
    "lm",
    "lmer",
    "lmer_problem",
    "lmlist",
    "simulate_mixed",
    "SimulationParts",
    "refit",
    "refit_ml",
    "cor",
    "var",
    "ResidualLmerFit",
    "nlme",
    "NlmeFit",
    "anova_nlme",
    "gamm",
    "glmer_nb",
    "NestedNlmeFit",
]
