# Estimated marginal means of lmer fits with a transformed response (log, log10, log1p,
# sqrt on the left of ~), summarized by emmeans (Debian's r-cran-emmeans) on the link scale
# and with type = "response": emmeans reads the transformation from the formula, back-
# transforms the means and interval ends, gives delta-method SEs, tests on the transformed
# scale, and reports pairwise contrasts of log means as ratios.  For
# tests/inference/test_emmeans_transformed.py (the queries have the shape of
# make_emmeans_reference.R's, and the test runs them the same way).
#
# usage: Rscript make_emmeans_transformed.R DATADIR OUTFILE
#   DATADIR: the bundled data sets as CSV (gunzip src/mixedmodels/datasets/data/*.csv.gz)
#            with schema.json beside them
suppressMessages({library(lme4); library(emmeans); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
emm_options(pbkrtest.limit = 1e5, lmerTest.limit = 1e5)

q <- function(label, kind = "emmeans", specs, by = NULL, df = NULL, type = "link",
              method = NULL, adjust = NULL, level = 0.95) {
  list(label = label, kind = kind, specs = specs, by = by, at = NULL, weights = "equal",
       df = df, type = type, method = method, adjust = adjust, var = NULL, level = level)
}

columns <- function(s) {
  lapply(as.data.frame(s), function(col) if (is.factor(col)) as.character(col) else col)
}

run_query <- function(model, qq) {
  dfopt <- if (is.null(qq$df)) list() else list(lmer.df = qq$df)
  rg <- do.call(ref_grid, c(list(model), dfopt))
  e <- emmeans(rg, specs = qq$specs, by = qq$by, type = qq$type)
  if (qq$kind == "contrast") {
    cargs <- list(e, method = qq$method)
    if (!is.null(qq$adjust)) cargs$adjust <- qq$adjust
    e <- do.call(contrast, cargs)
  } else if (!is.null(qq$adjust)) {
    e <- update(e, adjust = qq$adjust)
  }
  full <- summary(e, infer = c(TRUE, TRUE), level = qq$level)
  qq$result <- columns(full)
  qq$default_columns <- names(summary(e))
  qq$adjust_used <- attr(full, "adjust")
  qq
}

cases <- list()
add_case <- function(name, dataset, formula, model, queries) {
  cases[[length(cases) + 1]] <<- list(
    name = name, dataset = dataset, formula = formula, family = NULL,
    reml = isREML(model), theta = unname(getME(model, "theta")),
    tran = emmeans::ref_grid(model)@misc$tran,
    queries = lapply(queries, function(qq) run_query(model, qq)))
}

cake <- load_csv("cake")
f_log <- "log(angle) ~ recipe * temp + (1 | recipe:replicate)"
m_log <- lmer(as.formula(f_log), cake)
add_case("cake_log_response", "cake", f_log, m_log, list(
  q("recipe_link_kr", specs = "recipe", df = "kenward-roger"),
  q("recipe_response_kr", specs = "recipe", df = "kenward-roger", type = "response"),
  q("recipe_response_satterthwaite", specs = "recipe", df = "satterthwaite", type = "response"),
  q("recipe_response_asymptotic", specs = "recipe", df = "asymptotic", type = "response"),
  q("pairwise_response_tukey", kind = "contrast", specs = "recipe", df = "kenward-roger",
    type = "response", method = "pairwise", adjust = "tukey"),
  q("trt_vs_ctrl_response", kind = "contrast", specs = "recipe", df = "kenward-roger",
    type = "response", method = "trt.vs.ctrl"),
  q("pairwise_link", kind = "contrast", specs = "recipe", df = "kenward-roger",
    method = "pairwise")
))

machines <- load_csv("Machines")
f_sqrt <- "sqrt(score) ~ Machine + (1 | Worker)"
m_sqrt <- lmer(as.formula(f_sqrt), machines)
add_case("machines_sqrt_response", "Machines", f_sqrt, m_sqrt, list(
  q("machine_response_kr", specs = "Machine", df = "kenward-roger", type = "response"),
  q("pairwise_response_holm", kind = "contrast", specs = "Machine", df = "kenward-roger",
    type = "response", method = "pairwise", adjust = "holm")
))

f_log10 <- "log10(score) ~ Machine + (1 | Worker)"
m_log10 <- lmer(as.formula(f_log10), machines)
add_case("machines_log10_response", "Machines", f_log10, m_log10, list(
  q("machine_response_satterthwaite", specs = "Machine", df = "satterthwaite",
    type = "response"),
  q("pairwise_response", kind = "contrast", specs = "Machine", df = "satterthwaite",
    type = "response", method = "pairwise")
))

sleep <- load_csv("sleepstudy")
f_log1p <- "log1p(Reaction) ~ Days + (Days | Subject)"
m_log1p <- lmer(as.formula(f_log1p), sleep)
add_case("sleepstudy_log1p_response", "sleepstudy", f_log1p, m_log1p, list(
  q("overall_response_kr", specs = "1", df = "kenward-roger", type = "response")
))

out <- list(emmeans_version = as.character(packageVersion("emmeans")),
            lme4_version = as.character(packageVersion("lme4")),
            cases = cases)
write_json(out, args[2], digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE)
