# Independent agreement review of the GLMM families (issue 14) on cases that are NOT in the
# tests of reference/families: vector-valued random terms for every family, crossed and
# nested grouping factors, prior weights, offsets, zero inflation with covariates, a factor
# fixed effect, missing values in a used column, a near-boundary variance.
# usage (from the project root):
#   Rscript tests/reference/famcheck/make_famcheck.R ../shared/data
# Writes tests/reference/famcheck/<case>.json and data/famcheck_sim.csv (simulated here with
# set.seed, so reproducible).  Each JSON holds R's default fit and a tightly converged one
# ("tight"); "best" names the one with the higher log-likelihood, which the tests compare
# against.  cpu_per_fit is R's CPU (user + system) per default fit, the median-free mean of
# system.time over 5 fits in this script.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite); library(numDeriv)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
own <- file.path(here, "data")
dir.create(own, showWarnings = FALSE)
datadir <- shared
source(file.path(here, "..", "load_data.R"))
load_shared <- function(name) {
  d <- load_csv(name)
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  d
}
V <- function(x) I(unname(as.numeric(x)))

# ------------------------------------------------------------------ simulated data
set.seed(20261128)
ng <- 25; m <- 12; n <- ng * m
g <- factor(rep(sprintf("g%02d", 1:ng), each = m))
h <- factor(sprintf("h%02d", sample(rep(1:10, length.out = n))))   # crossed with g
s <- factor(rep(rep(c("s1", "s2", "s3"), each = 4), ng))         # nested in g (g:s)
f <- factor(sample(c("a", "b", "c"), n, replace = TRUE))
x <- round(runif(n, -1, 1), 4)
w <- sample(1:3, n, replace = TRUE)
expo <- round(runif(n, 0.5, 3), 3)
gi <- as.integer(g); hi <- as.integer(h); si <- (gi - 1) * 3 + as.integer(s)
fe <- c(a = 0, b = 0.3, c = -0.25)[as.character(f)]
slopes <- function(sd0, sd1, rho) {
  z0 <- rnorm(ng); z1 <- rho * z0 + sqrt(1 - rho^2) * rnorm(ng)
  cbind(sd0 * z0, sd1 * z1)
}
# Gamma, log link, (x|g), factor f
b <- slopes(0.35, 0.25, 0.3)
mu <- exp(1.2 + 0.5 * x + fe + b[gi, 1] + b[gi, 2] * x)
y_gamma <- round(rgamma(n, shape = 4, scale = mu / 4), 6)
# Gamma, log link, (1|g) + (1|h) crossed, prior weights w (shape 3 w)
bg <- rnorm(ng, 0, 0.3); bh <- rnorm(10, 0, 0.2)
mu <- exp(0.8 - 0.4 * x + bg[gi] + bh[hi])
y_gamma_w <- round(rgamma(n, shape = 3 * w, scale = mu / (3 * w)), 6)
# inverse Gaussian, log link, (x|g)
b <- slopes(0.3, 0.2, -0.4)
mu <- exp(0.5 + 0.4 * x + b[gi, 1] + b[gi, 2] * x)
lambda <- 8  # inverse Gaussian by Michael, Schucany & Haas
nu <- rnorm(n)^2
x1 <- mu + mu^2 * nu / (2 * lambda) - mu / (2 * lambda) * sqrt(4 * mu * lambda * nu + mu^2 * nu^2)
y_ig <- round(ifelse(runif(n) <= mu / (mu + x1), x1, mu^2 / x1), 6)
# gaussian, log link, offset log(expo), (x|g)
b <- slopes(0.25, 0.15, 0.2)
mu <- exp(2 + log(expo) + 0.3 * x + b[gi, 1] + b[gi, 2] * x)
y_gauss <- round(pmax(mu + rnorm(n, 0, 1.5), 0.05), 6)
# Gamma, log link, nested (1|g/s), a covariate with missing values
bg <- rnorm(ng, 0, 0.3); bs <- rnorm(3 * ng, 0, 0.2)
mu <- exp(1 + 0.6 * x + bg[gi] + bs[si])
y_gamma_nest <- round(rgamma(n, shape = 5, scale = mu / 5), 6)
x_na <- x; x_na[sample(n, 17)] <- NA
# Gamma, log link, (1|g) with a group sd far below the residual noise (near the boundary)
bg <- rnorm(ng, 0, 0.03)
mu <- exp(1 + 0.5 * x + bg[gi])
y_gamma_small <- round(rgamma(n, shape = 2, scale = mu / 2), 6)
# NB2 counts, (x|g), offset log(expo), size 3
b <- slopes(0.4, 0.3, 0.25)
mu <- exp(0.3 + log(expo) + 0.5 * x + b[gi, 1] + b[gi, 2] * x)
y_nb <- rnbinom(n, size = 3, mu = mu)
# NB1 counts, (x|g) + (1|h), factor f: Var = mu (1 + phi), phi = 1.5
b <- slopes(0.35, 0.25, -0.2); bh <- rnorm(10, 0, 0.25)
mu <- exp(1 + 0.4 * x + fe + b[gi, 1] + b[gi, 2] * x + bh[hi])
y_nb1 <- rnbinom(n, size = mu / 1.5, mu = mu)
# beta, logit, (x|g), precision 10
b <- slopes(0.4, 0.3, 0.3)
mu <- plogis(-0.2 + 0.7 * x + b[gi, 1] + b[gi, 2] * x)
y_beta <- round(rbeta(n, mu * 10, (1 - mu) * 10), 6)
y_beta <- pmin(pmax(y_beta, 1e-6), 1 - 1e-6)
# zero-inflated Poisson: (x|g), offset log(expo), logit(pi) = -0.8 + 1.2 x
b <- slopes(0.35, 0.25, 0.1)
mu <- exp(0.5 + log(expo) + 0.4 * x + b[gi, 1] + b[gi, 2] * x)
pz <- plogis(-0.8 + 1.2 * x)
y_zip <- ifelse(runif(n) < pz, 0L, rpois(n, mu))
# zero-inflated NB2: (1|g), factor f, logit(pi) = -1 + x, size 2
bg <- rnorm(ng, 0, 0.4)
mu <- exp(1.2 + 0.3 * x + fe + bg[gi])
pz <- plogis(-1 + x)
y_zinb <- ifelse(runif(n) < pz, 0L, rnbinom(n, size = 2, mu = mu))
# tweedie, (x|g), power 1.5, phi 1
b <- slopes(0.35, 0.2, 0.3)
mu <- exp(0.6 + 0.5 * x + b[gi, 1] + b[gi, 2] * x)
p <- 1.5; phi <- 1
N <- rpois(n, mu^(2 - p) / (phi * (2 - p)))
y_tw <- round(ifelse(N > 0, rgamma(n, shape = pmax(N, 1) * (2 - p) / (p - 1),
                                   scale = phi * (p - 1) * mu^(p - 1)), 0), 6)
# NB2 with prior weights (integer, glmmTMB: each row's log-likelihood times w)
bg <- rnorm(ng, 0, 0.4)
y_nbw <- rnbinom(n, size = 2, mu = exp(1 + 0.5 * x + bg[gi]))
# y_nb and y_zip above give singular (x|g) fits (correlation -1); kept for glmer.nb (a fit at
# the boundary), and these two, with larger slope variances, for nbinom2 and ZIP
b <- slopes(0.4, 0.5, 0.3)
y_nbs <- rnbinom(n, size = 4, mu = exp(0.3 + log(expo) + 0.5 * x + b[gi, 1] + b[gi, 2] * x))
b <- slopes(0.35, 0.5, 0.2)
mu <- exp(0.5 + log(expo) + 0.4 * x + b[gi, 1] + b[gi, 2] * x)
y_zips <- ifelse(runif(n) < plogis(-0.8 + 1.2 * x), 0L, rpois(n, mu))
# near the boundary: no group variance simulated (y_gamma_small's 0.03 still gives lme4's
# theta 0.136, the Laplace approximation's upward bias for Gamma); of seeds 1..30 for this
# draw, 30 gives the smallest positive theta (0.056; seed 25 gives 0, most ~0.15)
set.seed(30)
x_near <- round(runif(n, -1, 1), 4)
y_near <- round(rgamma(n, shape = 5, scale = exp(1 + 0.5 * x_near) / 5), 6)

sim <- data.frame(g = g, h = h, s = s, f = f, x = x, x_na = x_na, w = w, expo = expo,
  y_gamma = y_gamma, y_gamma_w = y_gamma_w, y_ig = y_ig, y_gauss = y_gauss,
  y_gamma_nest = y_gamma_nest, y_gamma_small = y_gamma_small, y_nb = y_nb, y_nb1 = y_nb1,
  y_beta = y_beta, y_zip = y_zip, y_zinb = y_zinb, y_tw = y_tw, y_nbw = y_nbw,
  y_nbs = y_nbs, y_zips = y_zips, x_near = x_near, y_near = y_near)
write.csv(sim, file.path(own, "famcheck_sim.csv"), row.names = FALSE)
sim <- read.csv(file.path(own, "famcheck_sim.csv"), stringsAsFactors = TRUE)
sim_factors <- list(g = levels(sim$g), h = levels(sim$h), s = levels(sim$s), f = levels(sim$f))
write_json(sim_factors, file.path(own, "famcheck_sim_factors.json"))
load_any <- function(name) if (name == "famcheck_sim") sim else load_shared(name)

# ------------------------------------------------------------------ the cases
cases <- list(
  list(name = "gamma_log_slopes_factor", engine = "glmer", data = "famcheck_sim",
       formula = "y_gamma ~ x + f + (x|g)", family = "Gamma", link = "log"),
  list(name = "gamma_log_crossed_weights", engine = "glmer", data = "famcheck_sim",
       formula = "y_gamma_w ~ x + (1|g) + (1|h)", family = "Gamma", link = "log", weights = "w"),
  list(name = "invgauss_log_slopes", engine = "glmer", data = "famcheck_sim",
       formula = "y_ig ~ x + (x|g)", family = "inverse.gaussian", link = "log"),
  list(name = "gaussian_log_slopes_offset", engine = "glmer", data = "famcheck_sim",
       formula = "y_gauss ~ x + offset(log(expo)) + (x|g)", family = "gaussian", link = "log"),
  list(name = "gamma_log_nested_missing", engine = "glmer", data = "famcheck_sim",
       formula = "y_gamma_nest ~ x_na + (1|g/s)", family = "Gamma", link = "log"),
  list(name = "gamma_log_near_boundary", engine = "glmer", data = "famcheck_sim",
       formula = "y_near ~ x_near + (1|g)", family = "Gamma", link = "log"),
  list(name = "sleepstudy_gamma_log_uncorrelated", engine = "glmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days||Subject)", family = "Gamma", link = "log"),
  list(name = "glmer_nb_slopes_offset", engine = "glmer.nb", data = "famcheck_sim",
       formula = "y_nb ~ x + offset(log(expo)) + (x|g)"),
  list(name = "nbinom2_slopes_offset", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_nbs ~ x + offset(log(expo)) + (x|g)", family = "nbinom2"),
  list(name = "nbinom1_slopes_crossed_factor", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_nb1 ~ x + f + (x|g) + (1|h)", family = "nbinom1"),
  list(name = "beta_slopes", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_beta ~ x + (x|g)", family = "beta_family"),
  list(name = "zip_slopes_offset_zi_x", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_zips ~ x + offset(log(expo)) + (x|g)", family = "poisson", zi = "~x"),
  list(name = "zinb2_factor_zi_x", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_zinb ~ x + f + (1|g)", family = "nbinom2", zi = "~x"),
  list(name = "salamanders_zinb2_zi_spp_mined", engine = "glmmTMB", data = "Salamanders",
       formula = "count ~ spp + mined + (1|site)", family = "nbinom2", zi = "~spp + mined",
       # glmmTMB's default start stops 2.39 log-likelihood units lower; from a zero-inflation
       # coefficient of mined = "no" at -20 it finds the optimum where no unmined site has
       # structural zeros (the coefficient then flat towards -infinity)
       starts = list(list(betazi = c(rep(0, 7), -20)))),
  list(name = "tweedie_slopes", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_tw ~ x + (x|g)", family = "tweedie"),
  list(name = "nbinom2_weights", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_nbw ~ x + (1|g)", family = "nbinom2", weights = "w"),
  list(name = "zip_missing_zi_x", engine = "glmmTMB", data = "famcheck_sim",
       formula = "y_zip ~ x_na + (1|g)", family = "poisson", zi = "~x_na")
)

cpu_per_fit <- function(expr_fun, reps = 5) {
  t <- system.time(for (i in seq_len(reps)) expr_fun())
  unname((t[["user.self"]] + t[["sys.self"]]) / reps)
}

# theta in lme4's order (each term's lower Cholesky factor by columns) from a covariance
chol_theta <- function(S) { L <- t(chol(S)); L[lower.tri(L, diag = TRUE)] }

newrows <- function(d, formula, zi) {
  used <- all.vars(as.formula(formula))
  if (!is.null(zi)) used <- c(used, all.vars(as.formula(zi)))
  ok <- complete.cases(d[, intersect(used, names(d)), drop = FALSE])
  d[which(ok)[c(1, 2, 3, 25, 60, 150)], , drop = FALSE]
}

# the rows of newrows() with the first grouping factor at a level the fit has not seen
# (predict's allow.new.levels: that term's random effects 0, the others' kept)
new_level_rows <- function(nd, fm) {
  gv <- all.vars(lme4::findbars(fm)[[1]][[3]])[1]
  nd[[gv]] <- factor(rep("new_level", nrow(nd)))
  attr(nd, "variable") <- gv
  nd
}

# Standard errors from the Hessian of lme4's own Laplace deviance at its optimum by
# numDeriv's Richardson extrapolation (as make_families_reference.R)
richardson_se <- function(m) {
  dd <- tryCatch(update(m, devFunOnly = TRUE), error = function(e) NULL)
  if (is.null(dd)) return(NULL)
  th <- getME(m, "theta"); x <- c(th, fixef(m))
  if (any(th == 0)) return(NULL)
  H <- tryCatch(numDeriv::hessian(dd, x), error = function(e) NULL)
  if (is.null(H)) return(NULL)
  V(sqrt(diag(2 * solve(H)))[-seq_along(th)])
}

# conditional modes and their conditional sds (as.data.frame(ranef(m, condVar = TRUE)))
ranef_part <- function(re) list(ranef_grpvar = I(as.character(re$grpvar)),
  ranef_term = I(as.character(re$term)), ranef_grp = I(as.character(re$grp)),
  condval = V(re$condval), condsd = V(re$condsd))

lme4_part <- function(m, nd) {
  vc <- as.data.frame(VarCorr(m))
  ci <- confint(m, method = "Wald")
  list(nobs = nobs(m), ngrps = as.list(ngrps(m)),
    fixef = V(fixef(m)), fixef_names = I(names(fixef(m))),
    se = V(sqrt(diag(as.matrix(vcov(m))))),
    theta = V(getME(m, "theta")), theta_names = I(names(getME(m, "theta"))),
    sigma = sigma(m), varcorr_sdcor = V(vc$sdcor),
    deviance = deviance(m), logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    AIC = AIC(m), BIC = BIC(m),
    fitted = V(fitted(m)),
    # the quantiles summary() prints as "Scaled residuals" (Pearson residuals / sigma)
    scaled_resid_quantiles = V(quantile(residuals(m, "pearson", scaled = TRUE))),
    predict_new_response = V(predict(m, newdata = nd, type = "response")),
    predict_new_population = V(predict(m, newdata = nd, type = "response", re.form = NA)),
    predict_new_level = V(predict(m, newdata = new_level_rows(nd, formula(m)), type = "response",
                                  allow.new.levels = TRUE)),
    confint_names = I(rownames(ci)), confint_lower = V(ci[, 1]), confint_upper = V(ci[, 2]),
    lme4_converged = length(m@optinfo$conv$lme4$messages) == 0) |>
    c(ranef_part(as.data.frame(ranef(m, condVar = TRUE))))
}

maybe <- function(expr) tryCatch(V(expr), error = function(e) {
  message("  predict: ", conditionMessage(e)); NULL })

tmb_part <- function(m, nd, zi) {
  vc <- VarCorr(m)$cond
  ci <- confint(m, method = "wald", full = TRUE)
  res <- list(nobs = nobs(m), ngrps = lapply(m$modelInfo$reTrms$cond$flist, nlevels),
    fixef = V(fixef(m)$cond), fixef_names = I(names(fixef(m)$cond)),
    se = V(sqrt(diag(vcov(m)$cond))),
    sd = V(unlist(lapply(vc, function(v) attr(v, "stddev")))),
    corr = V(unlist(lapply(vc, function(v) { r <- attr(v, "correlation"); r[lower.tri(r)] }))),
    theta = V(unlist(lapply(vc, function(v) chol_theta(unclass(v)[, , drop = FALSE])))),
    # per term: the sds, then the correlations below the diagonal by columns (lme4's order)
    sdcor = V(unlist(lapply(vc, function(v) {
      r <- attr(v, "correlation"); c(attr(v, "stddev"), r[lower.tri(r)]) }))),
    sigma = sigma(m),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
    fitted = V(fitted(m)), fitted_link = V(predict(m, type = "link")),
    # glmmTMB 1.1.5 cannot predict on new rows of an ordered grouping factor (Salamanders'
    # site: "contrasts mismatch"); null there
    predict_new_response = maybe(predict(m, newdata = nd, type = "response")),
    predict_new_population = maybe(predict(m, newdata = nd, type = "response", re.form = NA)),
    predict_new_level = maybe(predict(m, newdata = new_level_rows(nd, formula(m)),
                                      type = "response", allow.new.levels = TRUE)),
    confint_names = I(rownames(ci)), confint_lower = V(ci[, 1]), confint_upper = V(ci[, 2]),
    converged = m$fit$convergence == 0, pdHess = isTRUE(m$sdr$pdHess),
    optimizer_message = m$fit$message)
  if (!is.null(zi)) {
    res$zi_fixef <- V(fixef(m)$zi); res$zi_fixef_names <- I(names(fixef(m)$zi))
    res$zi_se <- V(sqrt(diag(vcov(m)$zi)))
    # the zero-inflation probability and the count model's mean on the new rows
    res$predict_new_zprob <- maybe(predict(m, newdata = nd, type = "zprob"))
    res$predict_new_conditional <- maybe(predict(m, newdata = nd, type = "conditional"))
  }
  if ("psi" %in% names(m$fit$par)) res$power <- 1 + plogis(m$fit$par[["psi"]])
  re <- as.data.frame(ranef(m, condVar = TRUE))
  c(res, ranef_part(re[re$component == "cond", ]))
}

fit_case <- function(case) {
  d <- load_any(case$data)
  fm <- as.formula(case$formula)
  wts <- if (is.null(case$weights)) NULL else d[[case$weights]]
  d$.w <- if (is.null(wts)) rep(1, nrow(d)) else wts  # glmmTMB's weights (also in newdata)
  nd <- newrows(d, case$formula, case$zi)
  res <- list(name = case$name, engine = case$engine, data = case$data, formula = case$formula,
              weights = case$weights, zi = case$zi,
              n_rows = nrow(d), newdata_rows = V(as.integer(rownames(nd))),
              new_level_variable = attr(new_level_rows(nd, fm), "variable"))
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    fit_default <- function() glmer(fm, data = d, family = fam, weights = wts)
    tight_control <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                  optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
    m <- fit_default()
    mt <- tryCatch(glmer(fm, data = d, family = fam, weights = wts, control = tight_control),
                   error = function(e) { message("  tight failed: ", conditionMessage(e)); NULL })
    res$family <- case$family; res$link <- fam$link
    res$lme4_version <- as.character(packageVersion("lme4"))
    res$default <- lme4_part(m, nd)
    if (!is.null(mt)) {
      res$tight <- lme4_part(mt, nd)
      res$tight$se_richardson <- richardson_se(mt)
    }
    # which is better: both fits' (theta, beta) through one Laplace deviance with PIRLS
    # converged to 1e-12 (lme4's default PIRLS tolerance alone moves its logLik by ~1e-6)
    res$best <- "default"
    if (!is.null(mt)) {
      dd <- update(mt, devFunOnly = TRUE)
      res$default$laplace_at_tight_pirls <- dd(c(res$default$theta, res$default$fixef))
      res$tight$laplace_at_tight_pirls <- dd(c(res$tight$theta, res$tight$fixef))
      if (res$tight$laplace_at_tight_pirls <= res$default$laplace_at_tight_pirls) res$best <- "tight"
    }
    best <- if (res$best == "tight") mt else m
    if (is.null(res[[res$best]]$se_richardson)) res[[res$best]]$se_richardson <- richardson_se(best)
    res$summary <- paste(capture.output(print(summary(best))), collapse = "\n")
    res$r_cpu_per_fit <- cpu_per_fit(fit_default)
  } else if (case$engine == "glmer.nb") {
    fit_default <- function() glmer.nb(fm, data = d)
    m <- fit_default()
    nb_tight <- function(tol_pwrss) {
      tight <- glmerControl(tolPwrss = tol_pwrss, optimizer = "bobyqa",
                            optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
      m0 <- glmer.nb(fm, data = d, control = tight)
      lme4:::optTheta(m0, interval = log(getME(m0, "glmer.nb.theta")) + c(-0.05, 0.05),
                      tol = 1e-10, control = tight)
    }
    res$tight_tolPwrss <- 1e-12
    mt <- tryCatch(nb_tight(1e-12), error = function(e) NULL)
    if (is.null(mt)) { res$tight_tolPwrss <- 1e-7; mt <- nb_tight(1e-7) }
    res$family <- "negative_binomial"; res$link <- "log"
    res$lme4_version <- as.character(packageVersion("lme4"))
    res$default <- c(lme4_part(m, nd), list(nb_theta = getME(m, "glmer.nb.theta")))
    res$tight <- c(lme4_part(mt, nd), list(nb_theta = getME(mt, "glmer.nb.theta")))
    res$best <- if (res$tight$logLik >= res$default$logLik) "tight" else "default"
    res$summary <- paste(capture.output(print(summary(mt))), collapse = "\n")
    res$r_cpu_per_fit <- cpu_per_fit(fit_default)
  } else {
    fam <- case$family
    zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
    fit_default <- function() glmmTMB(fm, data = d, family = fam, ziformula = zi, weights = .w)
    m <- fit_default()
    tight <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14,
                                           x.tol = 1e-12))
    mt <- tryCatch(glmmTMB(fm, data = d, family = fam, ziformula = zi, weights = .w,
                           control = tight),
                   error = function(e) { message("  tight failed: ", conditionMessage(e)); NULL })
    res$family <- fam
    res$glmmTMB_version <- as.character(packageVersion("glmmTMB"))
    res$default <- tmb_part(m, nd, case$zi)
    fits <- list(default = m)
    if (!is.null(mt)) { res$tight <- tmb_part(mt, nd, case$zi); fits$tight <- mt }
    # further starts (case$starts), each with the tight settings: glmmTMB's default start
    # can stop at a local optimum (salamanders_zinb2_zi_spp_mined)
    for (i in seq_along(case$starts)) {
      key <- paste0("start", i)
      ms <- tryCatch(glmmTMB(fm, data = d, family = fam, ziformula = zi, weights = .w,
                             control = tight, start = case$starts[[i]]),
                     error = function(e) { message("  ", key, " failed: ", conditionMessage(e)); NULL })
      if (!is.null(ms)) {
        res[[key]] <- c(tmb_part(ms, nd, case$zi), list(start = case$starts[[i]]))
        fits[[key]] <- ms
      }
    }
    ll <- sapply(names(fits), function(k) { v <- res[[k]]$logLik; if (is.na(v)) -Inf else v })
    res$best <- names(fits)[which.max(ll)]
    best <- fits[[res$best]]
    res$summary <- paste(capture.output(print(summary(best))), collapse = "\n")
    res$r_cpu_per_fit <- cpu_per_fit(fit_default)
  }
  res$load_average <- tryCatch(readLines("/proc/loadavg"), error = function(e) NA)
  res
}

only <- if (length(args) > 1) args[-1] else NULL
for (case in cases) {
  if (!is.null(only) && !(case$name %in% only)) next
  r <- withCallingHandlers(
    tryCatch(fit_case(case), error = function(e) { message(case$name, ": ", conditionMessage(e)); NULL }),
    warning = function(w) { message("  ", case$name, " warning: ", conditionMessage(w)); invokeRestart("muffleWarning") })
  if (!is.null(r)) write_json(r, file.path(here, paste0(case$name, ".json")), digits = NA,
                              auto_unbox = TRUE, pretty = FALSE, null = "null")
  message(case$name, " done")
}
