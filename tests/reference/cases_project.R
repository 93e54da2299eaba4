# The project's own reference cases (beyond ../shared's catalogue), fitted by
# make_project_reference.R.  Optional fields: weights (an R expression on the data),
# na (list of c(row, column) cells set to NA before fitting).
cases <- list(
  list(name = "pastes_nested_reml", data = "Pastes", formula = "strength ~ 1 + (1|batch/cask)", REML = TRUE),
  list(name = "machines_interaction_reml", data = "Machines", formula = "score ~ Machine + (1|Worker) + (1|Worker:Machine)", REML = TRUE),
  list(name = "oxboys_crossed_slopes_reml", data = "Oxboys", formula = "height ~ age + (age|Subject) + (1|Occasion)", REML = TRUE),
  list(name = "orthodont_factor_interaction_ml", data = "Orthodont", formula = "distance ~ age * Sex + (age|Subject)", REML = FALSE),
  list(name = "mathachieve_cluster_predictors_reml", data = "MathAchieve", formula = "MathAch ~ SES + MEANSES + Sector + (SES|School)", REML = TRUE),
  list(name = "ergostool_factor_reml", data = "ergoStool", formula = "effort ~ Type + (1|Subject)", REML = TRUE),
  list(name = "rail_intercept_ml", data = "Rail", formula = "travel ~ 1 + (1|Rail)", REML = FALSE),
  list(name = "cake_interaction_grouping_reml", data = "cake", formula = "angle ~ recipe + temp + (1|recipe:replicate)", REML = TRUE),
  list(name = "sleepstudy_quadratic_reml", data = "sleepstudy", formula = "Reaction ~ Days + I(Days^2) + (Days|Subject)", REML = TRUE),
  list(name = "sleepstudy_log_response_ml", data = "sleepstudy", formula = "log(Reaction) ~ Days + (1|Subject)", REML = FALSE),
  list(name = "sleepstudy_weighted_reml", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)", REML = TRUE, weights = "1 + Days / 10"),
  list(name = "sleepstudy_weighted_ml", data = "sleepstudy", formula = "Reaction ~ Days + (1|Subject)", REML = FALSE, weights = "1 + Days / 10"),
  list(name = "sleepstudy_missing_reml", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)", REML = TRUE,
       na = list(c(5, "Reaction"), c(50, "Reaction"), c(100, "Days"))),
  list(name = "penicillin_crossed_ml", data = "Penicillin", formula = "diameter ~ 1 + (1|plate) + (1|sample)", REML = FALSE),
  list(name = "sleepstudy_poly_reml", data = "sleepstudy", formula = "Reaction ~ poly(Days, 2) + (1|Subject)", REML = TRUE),
  list(name = "sleepstudy_scale_ml", data = "sleepstudy", formula = "Reaction ~ scale(Days) + (Days|Subject)", REML = FALSE),
  list(name = "oxboys_ordered_factor_reml", data = "Oxboys", formula = "height ~ Occasion + (1|Subject)", REML = TRUE),
  list(name = "bodyweight_three_terms_reml", data = "BodyWeight", formula = "weight ~ Time * Diet + (Time|Rat)", REML = TRUE)
)
