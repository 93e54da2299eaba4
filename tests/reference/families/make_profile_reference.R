# Profile (and Wald) intervals of the GLMM-family cases, for tests/test_glmer_family_profiles.py.
# usage (from the project root):
#   Rscript tests/reference/families/make_profile_reference.R /work/shared/data
# Writes tests/reference/families/profile/<case>.json:
#   glmer.nb cases: lme4's confint(profile(m)) of the glmer.nb fit (the size k held at its
#     estimate, as lme4 profiles), and the profile interval of k itself from lme4's
#     likelihood: -2 logLik of glmer(family = negative.binomial(k)) refitted at each k,
#     ends where it exceeds the optimum by qchisq(0.95, 1) (uniroot on log k, tol 1e-10).
#   glmmTMB cases: confint(m, method = "profile") and confint(m, method = "uniroot") (TMB's
#     root finding on the profile) for every parameter (fixed effects, log sd, the
#     dispersion on glmmTMB's internal log scale, zero-inflation coefficients), and
#     confint(m, method = "wald", full = TRUE).
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
own <- file.path(here, "data")
datadir <- shared
source(file.path(here, "..", "load_data.R"))
shared_schema <- schema
datadir <- own
source(file.path(here, "..", "load_data.R"))
own_schema <- schema
load_any <- function(name) {
  if (file.exists(file.path(own, paste0(name, ".csv")))) {
    schema <<- own_schema; datadir <<- own
  } else {
    schema <<- shared_schema; datadir <<- shared
  }
  d <- load_csv(name)
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  d
}
V <- function(x) I(unname(as.numeric(x)))
outdir <- file.path(here, "profile")
dir.create(outdir, showWarnings = FALSE)
source(file.path(here, "cases_families.R"))
wanted <- c("salamanders_glmer_nb", "salamanders_nbinom2", "owls_nbinom1", "beta_sim_logit",
            "salamanders_zip")
tight <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5))

nb_case <- function(case, d, f) {
  m <- glmer.nb(f, data = d, control = tight)
  m <- lme4:::optTheta(m, interval = log(getME(m, "glmer.nb.theta")) + c(-0.05, 0.05),
                       tol = 1e-10, control = tight)
  k_hat <- getME(m, "glmer.nb.theta")
  ci <- confint(profile(m, signames = FALSE), level = 0.95)
  ll_hat <- as.numeric(logLik(m))
  crit <- qchisq(0.95, 1)
  dev_k <- function(logk) {
    mk <- glmer(f, data = d, family = MASS::negative.binomial(exp(logk)), control = tight)
    2 * (ll_hat - as.numeric(logLik(mk))) - crit
  }
  lo <- uniroot(dev_k, log(k_hat) + c(-3, 0), tol = 1e-10)$root
  hi <- uniroot(dev_k, log(k_hat) + c(0, 3), tol = 1e-10)$root
  list(k = k_hat, logLik = ll_hat,
       profile_names = I(rownames(ci)), profile_lower = V(ci[, 1]), profile_upper = V(ci[, 2]),
       k_lower = exp(lo), k_upper = exp(hi))
}

tmb_case <- function(case, d, f) {
  zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
  m <- glmmTMB(f, data = d, family = case$family, ziformula = zi)
  np <- nrow(vcov(m, full = TRUE))
  pr <- confint(m, method = "profile", parm = seq_len(np))
  ur <- confint(m, method = "uniroot", parm = seq_len(np))
  wa <- confint(m, method = "wald", full = TRUE)
  list(logLik = as.numeric(logLik(m)), sigma = sigma(m),
       internal_names = I(colnames(vcov(m, full = TRUE))),
       profile_names = I(rownames(pr)), profile_lower = V(pr[, 1]), profile_upper = V(pr[, 2]),
       uniroot_names = I(rownames(ur)), uniroot_lower = V(ur[, 1]), uniroot_upper = V(ur[, 2]),
       wald_names = I(rownames(wa)), wald_lower = V(wa[, 1]), wald_upper = V(wa[, 2]))
}

for (case in cases) {
  if (!(case$name %in% wanted)) next
  d <- load_any(case$data)
  f <- as.formula(case$formula)
  t0 <- proc.time()[["elapsed"]]
  r <- tryCatch(
    if (case$engine == "glmer.nb") nb_case(case, d, f) else tmb_case(case, d, f),
    error = function(e) { message(case$name, ": ", conditionMessage(e)); NULL })
  if (is.null(r)) next
  r <- c(list(name = case$name, engine = case$engine, level = 0.95,
              lme4_version = as.character(packageVersion("lme4")),
              glmmTMB_version = as.character(packageVersion("glmmTMB"))), r)
  write_json(r, file.path(outdir, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE,
             pretty = FALSE, null = "null")
  message(case$name, " done in ", round(proc.time()[["elapsed"]] - t0), " s")
}
