"""From formula text and a DataFrame to numeric design: y, X, random-effect terms."""

from mixedmodels.design.model import ModelDesign, build_design

__all__ = ["ModelDesign", "build_design"]
