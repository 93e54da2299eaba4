# Estimated marginal means, contrasts and trends from emmeans (Debian's r-cran-emmeans,
# with pbkrtest and lmerTest for the lmer df), for tests/inference/test_emmeans.py.
#
# lmer cases are fitted by lme4 and their theta exported: the tests refit ours at that
# theta (start=theta, optimize=False), so both programs work on the same model.  glmer
# cases are evaluated at OUR estimates: make_emmeans_glmer_inputs.py writes our beta and
# vcov to emmeans_glmer_inputs.json, and the reference grid of lme4's fit gets them
# (rg@bhat, rg@V) before emmeans runs; everything else (grid, link, adjustments) is R's.
#
# usage: Rscript make_emmeans_reference.R DATADIR OUTFILE GLMER_INPUTS
suppressMessages({library(lme4); library(emmeans); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
glmer_inputs <- fromJSON(args[3], simplifyVector = TRUE)
emm_options(pbkrtest.limit = 1e5, lmerTest.limit = 1e5)

q <- function(label, kind = "emmeans", specs, by = NULL, at = NULL, weights = "equal",
              df = NULL, type = "link", method = NULL, adjust = NULL, var = NULL,
              level = 0.95) {
  list(label = label, kind = kind, specs = specs, by = by, at = at, weights = weights,
       df = df, type = type, method = method, adjust = adjust, var = var, level = level)
}

columns <- function(s) {
  out <- lapply(as.data.frame(s), function(col) if (is.factor(col)) as.character(col) else col)
  out
}

run_query <- function(model, qq, inputs) {
  dfopt <- if (is.null(qq$df)) list() else list(lmer.df = qq$df)
  if (qq$kind %in% c("emtrends", "emtrends_contrast")) {
    e <- do.call(emtrends, c(list(model, specs = qq$specs, var = qq$var, by = qq$by,
                                  weights = qq$weights), if (!is.null(qq$at)) list(at = qq$at), dfopt))
  } else {
    rg <- do.call(ref_grid, c(list(model), if (!is.null(qq$at)) list(at = qq$at), dfopt))
    if (!is.null(inputs)) {
      rg@bhat <- inputs$beta
      rg@V <- inputs$vcov
    }
    e <- emmeans(rg, specs = qq$specs, by = qq$by, weights = qq$weights, type = qq$type)
  }
  if (qq$kind %in% c("contrast", "emtrends_contrast")) {
    method <- if (is.list(qq$method)) qq$method else qq$method
    cargs <- list(e, method = method)
    if (!is.null(qq$adjust)) cargs$adjust <- qq$adjust
    e <- do.call(contrast, cargs)
  } else if (!is.null(qq$adjust)) {
    e <- update(e, adjust = qq$adjust)
  }
  full <- summary(e, infer = c(TRUE, TRUE), level = qq$level)
  default <- summary(e)
  qq$result <- columns(full)
  qq$default_columns <- names(default)
  qq$adjust_used <- attr(full, "adjust")
  qq
}

cases <- list()
add_case <- function(name, dataset, formula, model, queries, family = NULL) {
  inputs <- if (!is.null(family)) glmer_inputs[[name]] else NULL
  if (!is.null(inputs)) inputs$vcov <- matrix(unlist(inputs$vcov), nrow = length(inputs$beta), byrow = TRUE)
  theta <- unname(getME(model, "theta"))
  cases[[length(cases) + 1]] <<- list(
    name = name, dataset = dataset, formula = formula, family = family,
    reml = if (is.null(family)) isREML(model) else NULL, theta = theta,
    queries = lapply(queries, function(qq) run_query(model, qq, inputs)))
}

# factor * factor (one of them coerced by factor()), one grouping term: KR's per-level route
cake <- load_csv("cake")
f_cake <- "angle ~ recipe * factor(temp) + (1 | recipe:replicate)"
m_cake <- lmer(as.formula(f_cake), cake)
add_case("cake_factor_by_factor", "cake", f_cake, m_cake, list(
  q("recipe_kr", specs = "recipe", df = "kenward-roger"),
  q("recipe_satterthwaite", specs = "recipe", df = "satterthwaite"),
  q("temp_by_recipe_satterthwaite", specs = "temp", by = "recipe", df = "satterthwaite"),
  q("cells_kr", specs = c("recipe", "temp"), df = "kenward-roger"),
  q("overall_kr", specs = "1", df = "kenward-roger"),
  q("pairwise_recipe_tukey_kr", kind = "contrast", specs = "recipe", df = "kenward-roger",
    method = "pairwise", adjust = "tukey"),
  q("pairwise_recipe_holm_kr", kind = "contrast", specs = "recipe", df = "kenward-roger",
    method = "pairwise", adjust = "holm"),
  q("pairwise_temp_tukey_satterthwaite", kind = "contrast", specs = "temp", df = "satterthwaite",
    method = "pairwise", adjust = "tukey"),
  q("revpairwise_temp_by_recipe_sidak", kind = "contrast", specs = "temp", by = "recipe",
    df = "kenward-roger", method = "revpairwise", adjust = "sidak"),
  q("poly_temp_kr", kind = "contrast", specs = "temp", df = "kenward-roger", method = "poly"),
  q("trt_vs_ctrl_temp_by_recipe_dunnettx", kind = "contrast", specs = "temp", by = "recipe",
    df = "satterthwaite", method = "trt.vs.ctrl"),
  q("consec_temp_bonferroni", kind = "contrast", specs = "temp", df = "kenward-roger",
    method = "consec", adjust = "bonferroni"),
  q("eff_recipe_asymptotic", kind = "contrast", specs = "recipe", df = "asymptotic", method = "eff")
))

# factor * covariate with at=, proportional weights
Orthodont <- load_csv("Orthodont")
f_orth <- "distance ~ age * Sex + (1 | Subject)"
m_orth <- lmer(as.formula(f_orth), Orthodont)
add_case("orthodont_factor_by_covariate", "Orthodont", f_orth, m_orth, list(
  q("sex_at_mean_age_kr", specs = "Sex", df = "kenward-roger"),
  q("sex_by_age_at_kr", specs = "Sex", by = "age", at = list(age = c(8, 14)), df = "kenward-roger"),
  q("age_at_proportional_satterthwaite", specs = "age", at = list(age = c(8, 10, 12, 14)),
    weights = "proportional", df = "satterthwaite"),
  q("overall_proportional_kr", specs = "1", weights = "proportional", df = "kenward-roger"),
  q("pairwise_sex_by_age_bonferroni", kind = "contrast", specs = "Sex", by = "age",
    at = list(age = c(8, 11, 14)), df = "kenward-roger", method = "pairwise", adjust = "bonferroni"),
  q("trends_age_by_sex_kr", kind = "emtrends", specs = "Sex", var = "age", df = "kenward-roger"),
  q("trends_age_pairwise_satterthwaite", kind = "emtrends_contrast", specs = "Sex", var = "age",
    df = "satterthwaite", method = "pairwise")
))

# nested random effects (Machine within Worker): two terms, KR's general route
Machines <- load_csv("Machines")
f_mach <- "score ~ Machine + (1 | Worker/Machine)"
m_mach <- lmer(as.formula(f_mach), Machines)
add_case("machines_nested", "Machines", f_mach, m_mach, list(
  q("machine_kr", specs = "Machine", df = "kenward-roger"),
  q("machine_satterthwaite", specs = "Machine", df = "satterthwaite"),
  q("pairwise_tukey_kr", kind = "contrast", specs = "Machine", df = "kenward-roger",
    method = "pairwise", adjust = "tukey"),
  q("pairwise_holm_satterthwaite", kind = "contrast", specs = "Machine", df = "satterthwaite",
    method = "pairwise", adjust = "holm"),
  q("custom_sidak_kr", kind = "contrast", specs = "Machine", df = "kenward-roger",
    method = list("A - avg(B,C)" = c(1, -0.5, -0.5), "B - C" = c(0, 1, -1)), adjust = "sidak"),
  q("custom_none_asymptotic", kind = "contrast", specs = "Machine", df = "asymptotic",
    method = list("A + B" = c(1, 1, 0)), adjust = "none")
))

# slopes with a random slope: emtrends by factor
BodyWeight <- load_csv("BodyWeight")
f_bw <- "weight ~ Time * Diet + (Time | Rat)"
m_bw <- lmer(as.formula(f_bw), BodyWeight)
add_case("bodyweight_trends", "BodyWeight", f_bw, m_bw, list(
  q("time_trend_by_diet_kr", kind = "emtrends", specs = "Diet", var = "Time", df = "kenward-roger"),
  q("time_trend_by_diet_satterthwaite", kind = "emtrends", specs = "Diet", var = "Time",
    df = "satterthwaite"),
  q("time_trend_pairwise_tukey_kr", kind = "emtrends_contrast", specs = "Diet", var = "Time",
    df = "kenward-roger", method = "pairwise", adjust = "tukey"),
  q("diet_at_time_kr", specs = "Diet", by = "Time", at = list(Time = c(1, 64)), df = "kenward-roger")
))

# a quadratic covariate: emtrends' forward difference is not the derivative
Oxboys <- load_csv("Oxboys")
f_ox <- "height ~ age + I(age^2) + (age | Subject)"
m_ox <- lmer(as.formula(f_ox), Oxboys)
add_case("oxboys_quadratic_trend", "Oxboys", f_ox, m_ox, list(
  q("age_trend_at_kr", kind = "emtrends", specs = "age", var = "age",
    at = list(age = c(-0.5, 0, 0.5)), df = "kenward-roger")
))

# a two-valued covariate kept at its values (cov.keep = "2"), proportional weights
Arabidopsis <- load_csv("Arabidopsis")
f_ara <- "log(1 + total.fruits) ~ nutrient * amd + status + (1 | popu)"
m_ara <- lmer(as.formula(f_ara), Arabidopsis)
add_case("arabidopsis_two_valued_covariate", "Arabidopsis", f_ara, m_ara, list(
  q("amd_equal_kr", specs = "amd", df = "kenward-roger"),
  q("amd_proportional_kr", specs = "amd", weights = "proportional", df = "kenward-roger"),
  q("status_by_nutrient_satterthwaite", specs = "status", by = "nutrient", df = "satterthwaite"),
  q("pairwise_status_tukey_kr", kind = "contrast", specs = "status", df = "kenward-roger",
    method = "pairwise", adjust = "tukey")
))

# glmer binomial, link and response scale (at our estimates, see the header)
cbpp <- load_csv("cbpp")
f_cbpp <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
m_cbpp <- glmer(as.formula(f_cbpp), cbpp, family = binomial)
add_case("cbpp_binomial", "cbpp", f_cbpp, m_cbpp, family = "binomial", list(
  q("period_link", specs = "period"),
  q("period_response", specs = "period", type = "response"),
  q("pairwise_response_tukey", kind = "contrast", specs = "period", type = "response",
    method = "pairwise", adjust = "tukey"),
  q("pairwise_link_holm", kind = "contrast", specs = "period", method = "pairwise", adjust = "holm"),
  q("trt_vs_ctrl_response", kind = "contrast", specs = "period", type = "response",
    method = "trt.vs.ctrl"),
  q("custom_not_contrast_response", kind = "contrast", specs = "period", type = "response",
    method = list("1 vs 2" = c(1, -1, 0, 0), "first" = c(1, 0, 0, 0))),
  q("overall_response", specs = "1", type = "response")
))

# glmer poisson with a covariate at given values, response scale (rates and ratios)
grouseticks <- load_csv("grouseticks")
f_gt <- "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"
m_gt <- glmer(as.formula(f_gt), grouseticks, family = poisson)
add_case("grouseticks_poisson", "grouseticks", f_gt, m_gt, family = "poisson", list(
  q("year_response", specs = "YEAR", type = "response"),
  q("year_by_height_response", specs = "YEAR", by = "cHEIGHT", at = list(cHEIGHT = c(-50, 0, 50)),
    type = "response"),
  q("pairwise_response_bonferroni", kind = "contrast", specs = "YEAR", type = "response",
    method = "pairwise", adjust = "bonferroni"),
  q("poly_link", kind = "contrast", specs = "YEAR", method = "poly")
))

# an offset in the formula: the grid holds the offset's variable at its mean
f_off <- "incidence ~ period + offset(log(size)) + (1 | herd)"
m_off <- glmer(as.formula(f_off), cbpp, family = poisson)
add_case("cbpp_poisson_offset", "cbpp", f_off, m_off, family = "poisson", list(
  q("period_response", specs = "period", type = "response"),
  q("period_at_size_link", specs = "period", at = list(size = 10)),
  q("pairwise_response_tukey", kind = "contrast", specs = "period", type = "response",
    method = "pairwise", adjust = "tukey")
))

out <- list(emmeans_version = as.character(packageVersion("emmeans")),
            pbkrtest_version = as.character(packageVersion("pbkrtest")),
            lmerTest_version = as.character(packageVersion("lmerTest")),
            lme4_version = as.character(packageVersion("lme4")),
            cases = cases)
write_json(out, args[2], digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE)
