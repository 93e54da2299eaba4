# The GLMM-family cases, fitted by make_families_reference.R.
# engine: "glmer" (lme4::glmer), "glmer.nb" (lme4::glmer.nb) or "glmmTMB" (glmmTMB::glmmTMB).
cases <- list(
  # lme4 glmer, families with a dispersion parameter
  list(name = "sleepstudy_gamma_log", engine = "glmer", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)", family = "Gamma", link = "log"),
  list(name = "sleepstudy_gamma_inverse", engine = "glmer", data = "sleepstudy", formula = "Reaction ~ Days + (1|Subject)", family = "Gamma", link = "inverse"),
  list(name = "dyestuff_gamma_identity", engine = "glmer", data = "Dyestuff", formula = "Yield ~ 1 + (1|Batch)", family = "Gamma", link = "identity"),
  list(name = "gamma_sim_log", engine = "glmer", data = "gamma_sim", formula = "y ~ x + (1|g)", family = "Gamma", link = "log"),
  list(name = "sleepstudy_invgauss", engine = "glmer", data = "sleepstudy", formula = "I(Reaction/100) ~ Days + (1|Subject)", family = "inverse.gaussian", link = "1/mu^2"),
  list(name = "sleepstudy_invgauss_log", engine = "glmer", data = "sleepstudy", formula = "Reaction ~ Days + (1|Subject)", family = "inverse.gaussian", link = "log"),
  list(name = "dyestuff_invgauss_identity", engine = "glmer", data = "Dyestuff", formula = "Yield ~ 1 + (1|Batch)", family = "inverse.gaussian", link = "identity"),
  list(name = "orthodont_gaussian_log", engine = "glmer", data = "Orthodont", formula = "distance ~ age + Sex + (1|Subject)", family = "gaussian", link = "log"),
  list(name = "orthodont_gaussian_inverse", engine = "glmer", data = "Orthodont", formula = "distance ~ age + (1|Subject)", family = "gaussian", link = "inverse"),
  # lme4 glmer.nb
  list(name = "grouseticks_glmer_nb", engine = "glmer.nb", data = "grouseticks", formula = "TICKS ~ YEAR + cHEIGHT + (1|BROOD) + (1|LOCATION)"),
  list(name = "salamanders_glmer_nb", engine = "glmer.nb", data = "Salamanders", formula = "count ~ spp + mined + (1|site)"),
  # glmmTMB
  list(name = "salamanders_nbinom2", engine = "glmmTMB", data = "Salamanders", formula = "count ~ spp + mined + (1|site)", family = "nbinom2"),
  list(name = "grouseticks_nbinom2", engine = "glmmTMB", data = "grouseticks", formula = "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", family = "nbinom2"),
  list(name = "salamanders_nbinom1", engine = "glmmTMB", data = "Salamanders", formula = "count ~ spp + mined + (1|site)", family = "nbinom1"),
  list(name = "owls_nbinom1", engine = "glmmTMB", data = "Owls", formula = "SiblingNegotiation ~ FoodTreatment * SexParent + offset(logBroodSize) + (1|Nest)", family = "nbinom1"),
  list(name = "beta_sim_logit", engine = "glmmTMB", data = "beta_sim", formula = "y ~ x + (1|g)", family = "beta_family"),
  list(name = "salamanders_zip", engine = "glmmTMB", data = "Salamanders", formula = "count ~ spp + mined + (1|site)", family = "poisson", zi = "~mined"),
  list(name = "salamanders_zinb2", engine = "glmmTMB", data = "Salamanders", formula = "count ~ spp + mined + (1|site)", family = "nbinom2", zi = "~1"),
  list(name = "owls_zinb1", engine = "glmmTMB", data = "Owls", formula = "SiblingNegotiation ~ FoodTreatment * SexParent + offset(logBroodSize) + (1|Nest)", family = "nbinom1", zi = "~1")
)
