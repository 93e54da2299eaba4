"""Inference for fitted mixed models: degrees of freedom, tests, intervals, bootstrap.

Importing this package registers its functions as the methods fits call
(:mod:`mixedmodels.results.services`).
"""

from mixedmodels.inference.bootstrap import bootstrap
from mixedmodels.inference.kenward_roger import kenward_roger_table
from mixedmodels.inference.profile import profile_confint, profile_traces
from mixedmodels.inference.residual_profile import residual_profiles
from mixedmodels.inference.satterthwaite import contrast_df, variance_parameter_info
from mixedmodels.results.services import InferenceMethods, register_inference

register_inference(
    InferenceMethods(
        variance_parameter_info=variance_parameter_info,
        contrast_df=contrast_df,
        kenward_roger_table=kenward_roger_table,
        profile_confint=profile_confint,
        profile_traces=profile_traces,
        bootstrap=bootstrap,
    )
)

__all__ = [
    "bootstrap",
    "contrast_df",
    "kenward_roger_table",
    "profile_confint",
    "profile_traces",
    "residual_profiles",
    "variance_parameter_info",
]
