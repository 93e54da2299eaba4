# lmerTest's Satterthwaite df (and pbkrtest's Kenward-Roger df) of nested random-intercept
# models that have the same marginal covariance as a random intercept plus
# compound-symmetric residuals within the inner groups (Rho >= 0):
#   lmer(y ~ x + (1 | outer) + (1 | outer:inner))  ==  lme(y ~ x, ~1 | outer,
#                                                          corCompSymm(form = ~1 | outer/inner))
# The df of the residual-structure fit must equal these (the df do not depend on the
# parametrization of the variance parameters).
# usage: Rscript make_satterthwaite_reference.R OUTFILE DATADIR
#   DATADIR: the bundled data sets as CSV (gunzip src/mixedmodels/datasets/data/*.csv.gz)
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outfile <- args[1]; datadir <- args[2]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
V <- function(x) I(unname(as.numeric(x)))
cases <- list(
  list(name = "machines", data = "Machines", formula = score ~ Machine + (1 | Worker) + (1 | Worker:Machine)),
  list(name = "cake", data = "cake", formula = angle ~ recipe + temp + (1 | replicate) + (1 | replicate:recipe))
)
out <- list()
for (case in cases) {
  d <- load_csv(case$data)
  m <- lmer(case$formula, data = d, REML = TRUE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-4, rhoend = 1e-12)))
  s <- summary(m, ddf = "Satterthwaite")$coefficients
  k <- summary(m, ddf = "Kenward-Roger")$coefficients
  a <- anova(m, type = 3, ddf = "Satterthwaite")
  vc <- as.data.frame(VarCorr(m))
  out[[case$name]] <- list(
    formula = paste(deparse(case$formula), collapse = ""), data = case$data,
    logLik = as.numeric(logLik(m)), fixef_names = I(rownames(s)),
    estimate = V(s[, "Estimate"]), se = V(s[, "Std. Error"]),
    df_satterthwaite = V(s[, "df"]), df_kenward_roger = V(k[, "df"]), se_kenward_roger = V(k[, "Std. Error"]),
    anova_terms = I(rownames(a)), anova_dendf = V(a[, "DenDF"]), anova_F = V(a[, "F value"]),
    vcov_components = V(vc$vcov), component_names = I(vc$grp),
    lmerTest_version = as.character(packageVersion("lmerTest")),
    pbkrtest_version = as.character(packageVersion("pbkrtest")),
    lme4_version = as.character(packageVersion("lme4")), R_version = R.version.string)
}
write_json(out, outfile, digits = NA, auto_unbox = TRUE, pretty = TRUE)
