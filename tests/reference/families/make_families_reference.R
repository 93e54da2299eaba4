# Reference fits for the GLMM families (lme4 glmer / glmer.nb, glmmTMB), one JSON per case.
# usage (from the project root):
#   Rscript tests/reference/families/make_families_reference.R ../shared/data
# Writes tests/reference/families/*.json and the simulated data sets data/gamma_sim.csv and
# data/beta_sim.csv (made here with set.seed, so they are reproducible).
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite); library(numDeriv)})
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

# simulated data sets
set.seed(20261127)
ng <- 30; m <- 12
g <- factor(rep(sprintf("g%02d", 1:ng), each = m))
x <- round(runif(ng * m, -1, 1), 4)
b <- rnorm(ng, 0, 0.4)
mu <- exp(1 + 0.5 * x + b[as.integer(g)])
y <- round(rgamma(ng * m, shape = 3, scale = mu / 3), 6)
write.csv(data.frame(y = y, x = x, g = g), file.path(own, "gamma_sim.csv"), row.names = FALSE)
b <- rnorm(ng, 0, 0.5)
mu <- plogis(-0.3 + 0.8 * x + b[as.integer(g)])
phi <- 8
y <- round(rbeta(ng * m, mu * phi, (1 - mu) * phi), 6)
y <- pmin(pmax(y, 1e-6), 1 - 1e-6)
write.csv(data.frame(y = y, x = x, g = g), file.path(own, "beta_sim.csv"), row.names = FALSE)

V <- function(x) I(unname(as.numeric(x)))

# Standard errors from the Hessian of lme4's own Laplace deviance function at its optimum,
# by numDeriv's Richardson extrapolation (relative steps): lme4's vcov differences the same
# function with absolute steps of 1e-4, which are many standard errors wide for the small
# coefficients of inverse links and too narrow for an identity-link intercept of 1500
richardson_se <- function(m) {
  dd <- tryCatch(update(m, devFunOnly = TRUE), error = function(e) NULL)
  if (is.null(dd)) return(NULL)
  th <- getME(m, "theta"); x <- c(th, fixef(m))
  if (any(th == 0)) return(NULL)
  H <- numDeriv::hessian(dd, x)
  V(sqrt(diag(2 * solve(H)))[-seq_along(th)])
}

lme4_part <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  re <- as.data.frame(ranef(m, condVar = TRUE))
  list(nobs = nobs(m), ngrps = as.list(ngrps(m)),
    fixef = V(fixef(m)), fixef_names = I(names(fixef(m))),
    se = V(sqrt(diag(as.matrix(vcov(m))))),
    theta = V(getME(m, "theta")), theta_names = I(names(getME(m, "theta"))),
    sigma = sigma(m), varcorr_sdcor = V(vc$sdcor),
    deviance = deviance(m), logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    AIC = AIC(m), BIC = BIC(m),
    fitted = V(fitted(m)), fitted_link = V(predict(m)), resid_pearson = V(residuals(m, type = "pearson")),
    condval = V(re$condval), condsd = V(re$condsd),
    lme4_converged = length(m@optinfo$conv$lme4$messages) == 0)
}

fit_case <- function(case) {
  d <- load_any(case$data)
  f <- as.formula(case$formula)
  res <- list(name = case$name, engine = case$engine, data = case$data, formula = case$formula)
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    m <- glmer(f, data = d, family = fam)
    # PIRLS converged tightly, BOBYQA in both stages with a small final trust radius
    mt <- glmer(f, data = d, family = fam,
                control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                       optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
    res$family <- case$family; res$link <- fam$link
    res$lme4_version <- as.character(packageVersion("lme4"))
    res$default <- lme4_part(m); res$tight <- lme4_part(mt)
    res$tight$se_richardson <- richardson_se(mt)
    res$summary <- paste(capture.output(print(summary(mt))), collapse = "\n")
  } else if (case$engine == "glmer.nb") {
    m <- glmer.nb(f, data = d)
    # tight: PIRLS and BOBYQA converged tightly, then lme4's own outer loop (optTheta) on
    # log(theta) to 1e-10 (glmer.nb(tol = ) is passed on to its first glmer call and fails);
    # where PIRLS does not converge to 1e-12 (grouseticks), lme4's default tolPwrss
    nb_tight <- function(tol_pwrss) {
      tight <- glmerControl(tolPwrss = tol_pwrss, optimizer = "bobyqa",
                            optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
      m0 <- glmer.nb(f, data = d, control = tight)
      lme4:::optTheta(m0, interval = log(getME(m0, "glmer.nb.theta")) + c(-0.05, 0.05),
                      tol = 1e-10, control = tight)
    }
    res$tight_tolPwrss <- 1e-12
    mt <- tryCatch(nb_tight(1e-12), error = function(e) NULL)
    if (is.null(mt)) { res$tight_tolPwrss <- 1e-7; mt <- nb_tight(1e-7) }
    res$family <- "negative_binomial"; res$link <- "log"
    res$lme4_version <- as.character(packageVersion("lme4"))
    res$default <- c(lme4_part(m), list(nb_theta = getME(m, "glmer.nb.theta")))
    res$tight <- c(lme4_part(mt), list(nb_theta = getME(mt, "glmer.nb.theta")))
    res$summary <- paste(capture.output(print(summary(mt))), collapse = "\n")
  } else {
    fam <- case$family
    zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
    m <- glmmTMB(f, data = d, family = fam, ziformula = zi)
    vc <- VarCorr(m)$cond
    ci <- confint(m, method = "wald", full = TRUE)
    res$family <- fam; res$zi <- case[["zi", exact = TRUE]]
    res$glmmTMB_version <- as.character(packageVersion("glmmTMB"))
    res$nobs <- nobs(m); res$ngrps <- lapply(m$modelInfo$reTrms$cond$flist, nlevels)
    res$fixef <- V(fixef(m)$cond); res$fixef_names <- I(names(fixef(m)$cond))
    res$se <- V(sqrt(diag(vcov(m)$cond)))
    res$sd <- V(unlist(lapply(vc, function(v) attr(v, "stddev"))))
    res$sigma <- sigma(m)
    res$logLik <- as.numeric(logLik(m)); res$df <- attr(logLik(m), "df")
    res$AIC <- AIC(m); res$BIC <- BIC(m)
    res$fitted <- V(fitted(m)); res$fitted_link <- V(predict(m, type = "link"))
    if (!is.null(case$zi)) {
      res$zi_fixef <- V(fixef(m)$zi); res$zi_fixef_names <- I(names(fixef(m)$zi))
      res$zi_se <- V(sqrt(diag(vcov(m)$zi)))
    }
    res$confint_names <- I(rownames(ci)); res$confint_lower <- V(ci[, 1]); res$confint_upper <- V(ci[, 2])
    res$summary <- paste(capture.output(print(summary(m))), collapse = "\n")
    res$converged <- m$fit$convergence == 0
  }
  res
}

source(file.path(here, "cases_families.R"))
for (case in cases) {
  r <- tryCatch(fit_case(case), error = function(e) { message(case$name, ": ", conditionMessage(e)); NULL })
  if (!is.null(r)) write_json(r, file.path(here, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE, pretty = FALSE, null = "null")
  message(case$name, " done")
}
