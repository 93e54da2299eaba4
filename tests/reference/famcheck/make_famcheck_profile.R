# Profile intervals of the glmmTMB famcheck cases (vector-valued terms, crossed factors,
# weights, offsets, zero inflation with a covariate, missing values), for
# tests/test_family_agreement_more.py.
# usage (from the project root, after make_famcheck.R):
#   Rscript tests/reference/famcheck/make_famcheck_profile.R
# Writes tests/reference/famcheck/profile/<case>.json: glmmTMB 1.1.5's
# confint(method = "uniroot") (TMB's root finding on the profile of the Laplace likelihood)
# for the fixed effects, the dispersion (internal log scale, "d~(Intercept)"), tweedie's
# power parameter and the zero-inflation coefficients; the random-effect parameters are left
# out (their internal scale for a vector term is glmmTMB's own correlation parametrisation).
# Salamanders' ZINB2 is left out (glmmTMB's default start stops at a local optimum there).
suppressMessages({library(glmmTMB); library(jsonlite)})
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
V <- function(x) I(unname(as.numeric(x)))
d <- read.csv(file.path(here, "data", "famcheck_sim.csv"), stringsAsFactors = TRUE)
only <- commandArgs(trailingOnly = TRUE)
for (path in sort(Sys.glob(file.path(here, "*.json")))) {
  ref <- fromJSON(path)
  if (ref$engine != "glmmTMB" || ref$data != "famcheck_sim") next
  if (length(only) && !(ref$name %in% only)) next
  d$.w <- if (is.null(ref$weights)) rep(1, nrow(d)) else d[[ref$weights]]
  zi <- if (is.null(ref$zi)) ~0 else as.formula(ref$zi)
  t0 <- proc.time()
  m <- glmmTMB(as.formula(ref$formula), data = d, family = ref$family, ziformula = zi,
               weights = .w)
  names_all <- colnames(vcov(m, full = TRUE))
  parm <- which(!startsWith(names_all, "theta_"))
  ur <- confint(m, method = "uniroot", parm = parm)
  cpu <- proc.time() - t0
  res <- list(name = ref$name, glmmTMB_version = as.character(packageVersion("glmmTMB")),
    logLik = as.numeric(logLik(m)), internal_names = I(names_all),
    uniroot_names = I(rownames(ur)), uniroot_lower = V(ur[, 1]), uniroot_upper = V(ur[, 2]),
    r_cpu = unname(cpu[["user.self"]] + cpu[["sys.self"]]))
  write_json(res, file.path(here, "profile", paste0(ref$name, ".json")), digits = NA,
             auto_unbox = TRUE)
  message(ref$name, " done: ", round(res$r_cpu, 1), " s")
}
