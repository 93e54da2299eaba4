# The project's GLMM cases (lme4::glmer, Laplace), fitted by make_project_reference.R.
cases <- list(
  list(name = "cbpp_probit", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1|herd)", family = "binomial", link = "probit"),
  list(name = "grouseticks_poisson_crossed", data = "grouseticks", formula = "TICKS ~ YEAR + cHEIGHT + (1|BROOD) + (1|LOCATION)", family = "poisson"),
  list(name = "verbagg_binary_crossed", data = "VerbAgg", formula = "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)", family = "binomial"),
  list(name = "arabidopsis_poisson_crossed", data = "Arabidopsis", formula = "total.fruits ~ nutrient + amd + (1|popu) + (1|gen)", family = "poisson"),
  list(name = "sleepstudy_binary_slopes", data = "sleepstudy", formula = "I(Reaction > 300) ~ Days + (Days|Subject)", family = "binomial"),
  list(name = "cbpp_agq9", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1|herd)", family = "binomial", nAGQ = 9),
  list(name = "grouseticks_agq5_poisson", data = "grouseticks", formula = "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", family = "poisson", nAGQ = 5),
  list(name = "grouseticks_observation_level", data = "grouseticks", formula = "TICKS ~ YEAR + cHEIGHT + (1|BROOD) + (1|INDEX)", family = "poisson"),
  list(name = "cbpp_poisson_offset", data = "cbpp", formula = "incidence ~ period + offset(log(size)) + (1|herd)", family = "poisson")
)
