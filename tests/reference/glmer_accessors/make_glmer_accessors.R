# References for GlmerFit's accessors shared with LmerFit (tests/results/test_glmer_accessors.py):
# broom.mixed's tidy (with Wald intervals), performance's icc / r2_nakagawa and insight's
# get_variance (Nakagawa's decomposition with the distribution-specific variance, whose
# mu comes from insight's null model: the same random terms, intercept only), lme4's VarCorr
# matrices, getME(m, "b"), condVar covariances and scaled Pearson residuals.
# usage (from the project root):
#   Rscript tests/reference/glmer_accessors/make_glmer_accessors.R DATADIR
# DATADIR holds the shared CSVs (cbpp, grouseticks, sleepstudy; schema.json); Salamanders and
# gamma_sim come from tests/reference/families/data. Writes one JSON per case next to this script.
suppressMessages({library(lme4); library(glmmTMB); library(performance); library(insight)
                  library(broom.mixed); library(jsonlite); library(numDeriv)})
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
datadir <- args[1]
source(file.path(here, "..", "load_data.R"))
shared_load <- load_csv
family_data <- file.path(here, "..", "families", "data")
load_any <- function(name) {
  path <- file.path(family_data, paste0(name, ".csv"))
  if (!file.exists(path)) return(shared_load(name))
  own <- fromJSON(file.path(family_data, "schema.json"), simplifyVector = TRUE)
  d <- read.csv(path, stringsAsFactors = FALSE)
  for (v in names(own[[name]]$factors)) {
    f <- own[[name]]$factors[[v]]
    d[[v]] <- factor(as.character(d[[v]]), levels = f$levels, ordered = isTRUE(f$ordered))
  }
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  d
}

cases <- list(
  list(name = "cbpp_binomial", engine = "glmer", data = "cbpp", family = "binomial", link = "logit",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(name = "cbpp_probit", engine = "glmer", data = "cbpp", family = "binomial", link = "probit",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(name = "grouseticks_poisson", engine = "glmer", data = "grouseticks", family = "poisson",
       link = "log", formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"),
  list(name = "grouseticks_observation_level", engine = "glmer", data = "grouseticks",
       family = "poisson", link = "log",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX)"),
  list(name = "salamanders_glmer_nb", engine = "glmer.nb", data = "Salamanders",
       formula = "count ~ spp + mined + (1 | site)"),
  list(name = "gamma_sim_log", engine = "glmer", data = "gamma_sim", family = "Gamma", link = "log",
       formula = "y ~ x + (1 | g)"),
  list(name = "sleepstudy_gamma_log_slopes", engine = "glmer", data = "sleepstudy", family = "Gamma",
       link = "log", formula = "Reaction ~ Days + (Days | Subject)"),
  # glmmTMB's families: the variance decomposition only (broom.mixed's glmmTMB layout adds a
  # component column)
  list(name = "salamanders_nbinom2", engine = "glmmTMB", data = "Salamanders", family = "nbinom2",
       link = "log", formula = "count ~ spp + mined + (1 | site)"),
  list(name = "beta_sim_logit", engine = "glmmTMB", data = "beta_sim", family = "beta_family",
       link = "logit", formula = "y ~ x + (1 | g)"),
  list(name = "sleepstudy_binary_slopes", engine = "glmer", data = "sleepstudy", family = "binomial",
       link = "logit", formula = "I(Reaction > 300) ~ Days + (Days | Subject)")
)

# PIRLS converged tightly and BOBYQA to a small trust radius: the optimum, not lme4's
# default stopping point, is what the Python fit is compared with
tight <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
V <- function(x) I(unname(as.numeric(x)))

tmb_case <- function(case, d) {
  m <- glmmTMB(as.formula(case$formula), data = d, family = get(case$family)())
  gv <- get_variance(m); ic <- icc(m); r2 <- r2_nakagawa(m)
  nm <- null_model(m, verbose = FALSE)
  list(name = case$name, engine = case$engine, data = case$data, formula = case$formula,
       family = case$family, link = case$link,
       versions = list(glmmTMB = as.character(packageVersion("glmmTMB")),
                       performance = as.character(packageVersion("performance")),
                       insight = as.character(packageVersion("insight"))),
       fixef = V(fixef(m)$cond), sigma = sigma(m),
       variance = list(fixed = gv$var.fixed, random = gv$var.random,
                       residual = gv$var.residual, distribution = gv$var.distribution,
                       dispersion = gv$var.dispersion),
       icc_adjusted = ic$ICC_adjusted, icc_conditional = ic$ICC_conditional,
       r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional),
       null_fixef = V(fixef(nm)$cond), null_sigma = sigma(nm))
}

# For the Gamma fits, the fixed rows of tidy from standard errors of the Hessian of lme4's
# own Laplace deviance function at its optimum by numDeriv's Richardson extrapolation
# (relative steps): lme4's vcov, which broom.mixed reports, differences that function with
# absolute steps of 1e-4, off by 9% for gamma_sim's log-link intercept (as in
# families/make_families_reference.R)
richardson_fixed <- function(m) {
  dd <- update(m, devFunOnly = TRUE)
  th <- getME(m, "theta"); beta <- fixef(m)
  H <- numDeriv::hessian(dd, c(th, beta))
  se <- sqrt(diag(2 * solve(H)))[-seq_along(th)]
  z <- beta / se; q <- qnorm(0.975)
  list(std_error = V(se), statistic = V(z), p_value = V(2 * pnorm(-abs(z))),
       conf_low = V(beta - q * se), conf_high = V(beta + q * se))
}

# lme4's Laplace deviance function at the optimum and at a point away from it (theta
# times 1.1, beta plus a tenth of its standard errors): loglik_at's differences
deviance_function <- function(m) {
  dd <- update(m, devFunOnly = TRUE)
  th <- getME(m, "theta"); beta <- fixef(m)
  th2 <- th * 1.1; beta2 <- beta + 0.1 * sqrt(diag(as.matrix(vcov(m))))
  list(at_fit = dd(c(th, beta)), theta = V(th2), beta = V(beta2), at_point = dd(c(th2, beta2)),
       logLik = as.numeric(logLik(m)))
}

fit_case <- function(case) {
  d <<- load_any(case$data)  # global: insight's null_model re-evaluates the call
  if (case$engine == "glmmTMB") return(tmb_case(case, d))
  f <- as.formula(case$formula)
  if (case$engine == "glmer.nb") {
    m0 <- glmer.nb(f, data = d, control = tight)
    m <- lme4:::optTheta(m0, interval = log(getME(m0, "glmer.nb.theta")) + c(-0.05, 0.05),
                         tol = 1e-10, control = tight)
  } else {
    fam <- do.call(case$family, list(link = case$link))
    m <- glmer(f, data = d, family = fam, control = tight)
  }
  td <- as.data.frame(tidy(m, conf.int = TRUE, conf.method = "Wald"))
  gv <- get_variance(m)
  ic <- icc(m)
  r2 <- r2_nakagawa(m)
  # the null model only enters through mu = exp(intercept) (count and beta families); for
  # a response such as I(Reaction > 300) insight cannot refit it, and binomial needs none
  nm <- tryCatch(null_model(m, verbose = FALSE), error = function(e) NULL)
  vc <- VarCorr(m)
  re <- ranef(m, condVar = TRUE)
  postvar <- lapply(names(re), function(g) V(attr(re[[g]], "postVar")))
  names(postvar) <- names(re)
  num <- function(x) if (is.null(x)) NA else unname(as.numeric(x))
  list(
    name = case$name, engine = case$engine, data = case$data, formula = case$formula,
    family = if (is.null(case$family)) "negative_binomial" else case$family,
    link = if (is.null(case$link)) "log" else case$link,
    versions = list(lme4 = as.character(packageVersion("lme4")),
                    performance = as.character(packageVersion("performance")),
                    insight = as.character(packageVersion("insight")),
                    broom.mixed = as.character(packageVersion("broom.mixed"))),
    fixef = V(fixef(m)), theta = V(getME(m, "theta")), sigma = sigma(m),
    nb_theta = if (case$engine == "glmer.nb") getME(m, "glmer.nb.theta") else NA,
    tidy = list(effect = I(td$effect), group = I(td$group), term = I(td$term),
                estimate = V(td$estimate), std_error = V(td$std.error),
                statistic = V(td$statistic), p_value = V(td$p.value),
                conf_low = V(td$conf.low), conf_high = V(td$conf.high)),
    variance = list(fixed = num(gv$var.fixed), random = num(gv$var.random),
                    residual = num(gv$var.residual), distribution = num(gv$var.distribution),
                    dispersion = num(gv$var.dispersion)),
    icc_adjusted = num(ic$ICC_adjusted), icc_conditional = num(ic$ICC_conditional),
    r2_marginal = num(r2$R2_marginal), r2_conditional = num(r2$R2_conditional),
    null_fixef = if (is.null(nm)) NA else num(fixef(nm)),
    null_theta = if (is.null(nm)) NA else V(getME(nm, "theta")),
    ranef_cov = lapply(vc, function(s) list(names = I(rownames(s)), cov = V(s))),
    b = V(getME(m, "b")),
    postvar = postvar,
    scaled_pearson = V(residuals(m, type = "pearson", scaled = TRUE)),
    penalized_deviance = sum(residuals(m, type = "deviance")^2) + sum(getME(m, "u")^2),
    deviance_function = deviance_function(m),
    tidy_fixed_richardson = if (identical(case$family, "Gamma")) richardson_fixed(m) else NA
  )
}

for (case in cases) {
  res <- fit_case(case)
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
             file.path(here, paste0(case$name, ".json")))
  cat(case$name, "\n")
}
