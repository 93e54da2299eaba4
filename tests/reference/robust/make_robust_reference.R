# Reference fits for the robustness review: bundled data sets rearranged (rows shuffled,
# factors recoded, response and predictors rescaled, weights) and fresh simulated sets,
# fitted by lme4 1.1-31 / glmmTMB 1.1.5.  One JSON per case next to the data it used.
# usage (from the project root):
#   Rscript tests/reference/robust/make_robust_reference.R
# Reads the package's bundled CSVs, writes tests/reference/robust/data/<case>.csv and
# tests/reference/robust/<case>.json (data made here with set.seed, so reproducible).
suppressMessages({library(lme4); library(glmmTMB); library(nlme); library(jsonlite)
                  library(lmerTest); library(pbkrtest)})
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
bundled <- file.path(here, "..", "..", "..", "src", "mixedmodels", "datasets", "data")
load_bundled <- function(name) read.csv(gzfile(file.path(bundled, paste0(name, ".csv.gz"))))

write_case <- function(name, data, fit, formula, family = "gaussian", link = NULL,
                       reml = FALSE, weights = NULL, offset = NULL, engine = "lme4",
                       extra = list()) {
  factors <- list()
  for (v in names(data)) if (is.factor(data[[v]])) factors[[v]] <- levels(data[[v]])
  write.csv(data, file.path(here, "data", paste0(name, ".csv")), row.names = FALSE)
  if (engine == "lme4") {
    fe <- fixef(fit)
    se <- sqrt(diag(as.matrix(vcov(fit))))
    theta <- unname(getME(fit, "theta"))
    sigma <- sigma(fit)
    if (family == "gaussian") {  # lmerTest's Satterthwaite df; pbkrtest's KR df (REML, unweighted)
      lt <- as_lmerModLmerTest(fit)
      extra$df_satterthwaite <- unname(summary(lt)$coefficients[, "df"])
      if (reml && is.null(weights))
        extra$df_kenward_roger <- unname(summary(lt, ddf = "Kenward-Roger")$coefficients[, "df"])
    }
  } else if (engine == "nlme") {
    fe <- nlme::fixef(fit)
    se <- sqrt(diag(vcov(fit)))
    theta <- NULL
    sigma <- fit$sigma
  } else {
    fe <- fixef(fit)$cond
    se <- sqrt(diag(vcov(fit)$cond))
    theta <- NULL
    sigma <- sigma(fit)
  }
  out <- c(list(
    case = name, engine = engine, formula = formula, family = family, link = link,
    REML = reml, weights = weights, offset = offset, factors = factors,
    logLik = as.numeric(logLik(fit)), fixef = as.list(fe), se = as.list(unname(se)),
    theta = theta, sigma = sigma,
    versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                    glmmTMB = as.character(packageVersion("glmmTMB")),
                    nlme = as.character(packageVersion("nlme")))
  ), extra)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             file.path(here, paste0(name, ".json")))
}
# run to convergence (rhoend 1e-10 in place of 2e-7): lme4 stops early on some row orders
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10),
                      tolPwrss = 1e-10)

sleep <- load_bundled("sleepstudy"); sleep$Subject <- factor(sleep$Subject)

# constant small weights: the same model as unweighted (theta scales by 1/sqrt(w))
# (lme4's default optimizer, nloptwrap, finds it: logLik -871.8141 as unweighted; minqa's
# bobyqa from lme4's start stops on the boundary at -883.26, as ours does today)
d <- sleep; d$w <- 1e-3
f <- "Reaction ~ Days + (Days | Subject)"
cw <- lmer(as.formula(f), d, weights = w, REML = TRUE)
stopifnot(abs(logLik(cw) - logLik(lmer(as.formula(f), sleep, REML = TRUE))) < 1e-6)
write_case("sleep_const_weights", d, cw, f, reml = TRUE, weights = "w")

# varied small weights
set.seed(11)
d <- sleep; d$w <- round(runif(nrow(d), 0.001, 0.01), 5)
write_case("sleep_varied_weights", d, lmer(as.formula(f), d, weights = w, REML = TRUE, control = ctrl),
           f, reml = TRUE, weights = "w")

# shuffled rows, rescaled response and predictor, subjects renamed, ML
set.seed(12)
d <- sleep[sample(nrow(sleep)), ]
d$rt <- d$Reaction / 100; d$weeks <- d$Days / 7
d$Subject <- factor(paste0("s", as.integer(d$Subject)))
d <- d[, c("rt", "weeks", "Subject")]
f <- "rt ~ weeks + (weeks | Subject)"
write_case("sleep_shuffled_rescaled", d, lmer(as.formula(f), d, REML = FALSE, control = ctrl), f)

# rank deficient: a duplicated (scaled) predictor; lme4 drops it
d <- sleep; d$Days2 <- 2 * d$Days + 0
f <- "Reaction ~ Days + Days2 + (1 | Subject)"
write_case("sleep_rank_deficient", d, lmer(as.formula(f), d, REML = TRUE, control = ctrl), f, reml = TRUE)

# cbpp: period levels reversed, rows shuffled
cbpp_d <- load_bundled("cbpp")
set.seed(13)
d <- cbpp_d[sample(nrow(cbpp_d)), ]
d$herd <- factor(d$herd)
d$period <- factor(d$period, levels = c("4", "3", "2", "1"))
f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
write_case("cbpp_recoded", d, glmer(as.formula(f), d, binomial, control = gctrl), f, family = "binomial")

# cbpp: proportions with weights, probit link, herds renamed
d <- cbpp_d; d$prop <- d$incidence / d$size
d$herd <- factor(paste0("h", sprintf("%02d", d$herd)))
d$period <- factor(d$period)
f <- "prop ~ period + (1 | herd)"
write_case("cbpp_probit_weights", d,
           glmer(as.formula(f), d, binomial(link = "probit"), weights = size, control = gctrl),
           f, family = "binomial", link = "probit", weights = "size")

# Orthodont: Sex with Female as reference, ML, random slopes
orth <- load_bundled("Orthodont")
d <- orth; d$Subject <- factor(d$Subject); d$Sex <- factor(d$Sex, levels = c("Female", "Male"))
f <- "distance ~ age * Sex + (age | Subject)"
write_case("orthodont_female_ref", d, lmer(as.formula(f), d, REML = FALSE, control = ctrl), f)

# Machines nested, rows shuffled
mach <- load_bundled("Machines")
set.seed(14)
d <- mach[sample(nrow(mach)), ]; d$Worker <- factor(d$Worker); d$Machine <- factor(d$Machine)
f <- "score ~ Machine + (1 | Worker/Machine)"
write_case("machines_nested_shuffled", d, lmer(as.formula(f), d, REML = TRUE, control = ctrl), f, reml = TRUE)

# Penicillin crossed, response in other units
pen <- load_bundled("Penicillin")
d <- pen; d$plate <- factor(d$plate); d$sample <- factor(d$sample); d$dmm <- d$diameter * 1000
d <- d[, c("dmm", "plate", "sample")]
f <- "dmm ~ 1 + (1 | plate) + (1 | sample)"
write_case("penicillin_rescaled", d, lmer(as.formula(f), d, REML = TRUE, control = ctrl), f, reml = TRUE)

# simulated Poisson with an offset and random slopes
set.seed(15)
ng <- 25; m <- 8
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x <- round(rnorm(ng * m), 4)
expo <- round(runif(ng * m, 0.5, 3), 3)
b0 <- rnorm(ng, 0, 0.5); b1 <- rnorm(ng, 0, 0.3)
y <- rpois(ng * m, expo * exp(0.2 + 0.4 * x + b0[g] + b1[g] * x))
d <- data.frame(y = y, x = x, expo = expo, g = g)
f <- "y ~ x + offset(log(expo)) + (x | g)"
write_case("sim_poisson_offset_slopes", d, glmer(as.formula(f), d, poisson, control = gctrl),
           f, family = "poisson")

# simulated Gamma with small means, inverse (canonical) link
set.seed(16)
ng <- 20; m <- 10
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x <- round(rnorm(ng * m), 4)
b <- rnorm(ng, 0, 0.5)
mu <- exp(0.3 + 0.5 * x + b[g])
y <- round(rgamma(ng * m, shape = 2, scale = mu / 2), 6)
d <- data.frame(y = y, x = x, g = g)
f <- "y ~ x + (1 | g)"
write_case("sim_gamma_inverse", d, glmer(as.formula(f), d, Gamma, control = gctrl),
           f, family = "gamma", link = "inverse")

# binomial factor response whose first level is unused (model.frame drops it: 'no' fails)
set.seed(17)
x <- round(rnorm(ng * m), 4)
b <- rnorm(ng, 0, 0.7)
yes <- runif(ng * m) < plogis(0.2 + 0.8 * x + b[g])
d <- data.frame(x = x, g = g, outcome = factor(ifelse(yes, "yes", "no"), levels = c("zz", "no", "yes")))
f <- "outcome ~ x + (1 | g)"
write_case("sim_factor_response_unused_level", d, glmer(as.formula(f), d, binomial, control = gctrl),
           f, family = "binomial")

# simulated overdispersed counts with a factor, glmmTMB nbinom2
set.seed(18)
ng <- 30; m <- 8
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
trt <- factor(sample(c("ctl", "a", "b"), ng * m, replace = TRUE), levels = c("ctl", "a", "b"))
b <- rnorm(ng, 0, 0.4)
mu <- exp(1 + c(0, 0.4, -0.3)[trt] + b[g])
y <- rnbinom(ng * m, size = 2, mu = mu)
d <- data.frame(y = y, trt = trt, g = g)
f <- "y ~ trt + (1 | g)"
write_case("sim_nbinom2_factor", d, glmmTMB(as.formula(f), d, family = nbinom2),
           f, family = "nbinom2", engine = "glmmTMB")

# nlme varIdent on rows not sorted by group (the stratum's first level met differs too)
set.seed(19)
d <- sleep[sample(nrow(sleep)), ]
d$phase <- factor(ifelse(d$Days > 4, "late", "early"))
fit <- lme(Reaction ~ Days, random = ~ 1 | Subject, data = d,
           weights = varIdent(form = ~ 1 | phase), method = "REML",
           control = lmeControl(tolerance = 1e-10, msTol = 1e-10))
ratio <- coef(fit$modelStruct$varStruct, unconstrained = FALSE)
write_case("sleep_varident_shuffled", d, fit, "Reaction ~ Days + (1 | Subject)", reml = TRUE,
           engine = "nlme", extra = list(variance = list(Ident = "phase"),
                                         variance_parameters = as.list(ratio)))

# glmmTMB tweedie on simulated compound Poisson-gamma data with a factor
set.seed(20)
ng <- 25; m <- 8
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
grp <- factor(sample(c("lo", "hi"), ng * m, replace = TRUE), levels = c("lo", "hi"))
b <- rnorm(ng, 0, 0.4)
mu <- exp(0.5 + 0.6 * (grp == "hi") + b[g])
lambda <- mu^(2 - 1.6) / (1.2 * (2 - 1.6)); n <- rpois(ng * m, lambda)
y <- round(sapply(n, function(k) if (k == 0) 0 else sum(rgamma(k, shape = (2 - 1.6) / (1.6 - 1),
                   scale = 1.2 * (1.6 - 1) * mu[1]^(1.6 - 1)))), 6)
y <- round(y * mu / mu[1], 6)
d <- data.frame(y = y, grp = grp, g = g)
f <- "y ~ grp + (1 | g)"
write_case("sim_tweedie_factor", d, glmmTMB(as.formula(f), d, family = tweedie),
           f, family = "tweedie", engine = "glmmTMB")

# glmmTMB beta with two covariates
set.seed(21)
ng <- 30; m <- 6
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x1 <- round(rnorm(ng * m), 4); x2 <- round(runif(ng * m), 4)
b <- rnorm(ng, 0, 0.5)
mu <- plogis(-0.2 + 0.7 * x1 - 0.5 * x2 + b[g])
y <- round(rbeta(ng * m, mu * 12, (1 - mu) * 12), 6)
d <- data.frame(y = y, x1 = x1, x2 = x2, g = g)
f <- "y ~ x1 + x2 + (1 | g)"
write_case("sim_beta_two_covariates", d, glmmTMB(as.formula(f), d, family = beta_family()),
           f, family = "beta", engine = "glmmTMB")

# lme4 glmer.nb on simulated counts with a covariate and an unbalanced grouping
set.seed(22)
sizes <- sample(3:15, 25, replace = TRUE)
g <- factor(sprintf("g%02d", rep(seq_along(sizes), sizes)))
x <- round(rnorm(length(g)), 4)
b <- rnorm(25, 0, 0.5)
y <- rnbinom(length(g), size = 1.5, mu = exp(0.8 + 0.4 * x + b[g]))
d <- data.frame(y = y, x = x, g = g)
f <- "y ~ x + (1 | g)"
nb <- glmer.nb(as.formula(f), d, control = gctrl,
               nb.control = glmerControl(optimizer = "bobyqa",
                                         optCtrl = list(maxfun = 1e5, rhoend = 1e-10)))
write_case("sim_glmer_nb_unbalanced", d, nb, f, family = "negative_binomial",
           extra = list(k = getME(nb, "glmer.nb.theta")))

# Poisson with prior weights (lme4 multiplies the log-likelihood terms)
set.seed(23)
ng <- 20; m <- 10
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x <- round(rnorm(ng * m), 4)
w <- sample(1:3, ng * m, replace = TRUE)
y <- rpois(ng * m, exp(0.5 + 0.3 * x + rnorm(ng, 0, 0.4)[g]))
d <- data.frame(y = y, x = x, w = w, g = g)
f <- "y ~ x + (1 | g)"
pw <- glmer(as.formula(f), d, poisson, weights = w, control = gctrl)
# lme4's vcov differences its deviance function with steps of 1e-4, where that function's
# PIRLS noise (~1e-5 in the deviance) moves the curvature by ~1% here; the Hessian from
# wide central differences (h = 0.05, 0.025) with Richardson extrapolation is free of it
dd <- update(pw, devFunOnly = TRUE)
wide_hessian <- function(fun, x, h) {
  n <- length(x); H <- matrix(0, n, n)
  for (i in 1:n) for (j in 1:n) {
    ei <- replace(numeric(n), i, h); ej <- replace(numeric(n), j, h)
    H[i, j] <- (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (4 * h * h)
  }
  H
}
x0 <- c(getME(pw, "theta"), fixef(pw))
H <- (4 * wide_hessian(dd, x0, 0.025) - wide_hessian(dd, x0, 0.05)) / 3
se_wide <- sqrt(diag(2 * solve(H)))[-seq_along(getME(pw, "theta"))]
write_case("sim_poisson_prior_weights", d, pw, f, family = "poisson", weights = "w",
           extra = list(se_richardson = as.list(unname(se_wide))))

# sum contrasts on an unbalanced factor, REML
set.seed(24)
d <- mach[-sample(nrow(mach), 7), ]; d$Worker <- factor(d$Worker); d$Machine <- factor(d$Machine)
f <- "score ~ Machine + (1 | Worker)"
write_case("machines_unbalanced_sum_contrasts", d,
           lmer(as.formula(f), d, REML = TRUE, contrasts = list(Machine = "contr.sum"), control = ctrl),
           f, reml = TRUE, extra = list(contrasts = list(Machine = "contr.sum")))

# cbind response with prior weights: R's binomial aic weighs dbinom(successes, trials) by
# the prior weight (m = trials, weights / m = the prior weight)
set.seed(25)
d <- cbpp_d; d$herd <- factor(d$herd); d$period <- factor(d$period)
d$w <- sample(1:3, nrow(d), replace = TRUE)
f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
write_case("cbpp_cbind_prior_weights", d, glmer(as.formula(f), d, binomial, weights = w, control = gctrl),
           f, family = "binomial", weights = "w")

# adaptive Gauss-Hermite quadrature (nAGQ = 9) on shuffled, renamed cbpp
set.seed(26)
d <- cbpp_d[sample(nrow(cbpp_d)), ]
d$herd <- factor(paste0("herd_", d$herd)); d$period <- factor(d$period)
f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
write_case("cbpp_agq9_shuffled", d, glmer(as.formula(f), d, binomial, nAGQ = 9, control = gctrl),
           f, family = "binomial", extra = list(nAGQ = 9))

# glmmTMB zero-inflated Poisson with a zero-inflation covariate
set.seed(27)
ng <- 30; m <- 8
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x <- round(rnorm(ng * m), 4); z <- round(runif(ng * m), 4)
structural <- runif(ng * m) < plogis(-1 + 1.5 * z)
y <- ifelse(structural, 0L, rpois(ng * m, exp(1 + 0.4 * x + rnorm(ng, 0, 0.4)[g])))
d <- data.frame(y = y, x = x, z = z, g = g)
f <- "y ~ x + (1 | g)"
write_case("sim_zip_covariate", d, glmmTMB(as.formula(f), d, family = poisson, ziformula = ~ z),
           f, family = "poisson", engine = "glmmTMB", extra = list(zi = "~ z"))

# glmmTMB structured covariances on Orthodont (REML = FALSE): ar1 and cs over the ages
d <- orth; d$Subject <- factor(d$Subject); d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
d$agef <- factor(d$age)
# glmmTMB's fixed-effect SEs invert the Hessian in all parameters; lme4's (and ours) are
# (X'V^-1 X)^-1 at the estimated covariance: computed here from glmmTMB's estimates
for (st in c("ar1", "cs")) {
  f <- sprintf("distance ~ age + Sex + %s(0 + agef | Subject)", st)
  fit <- glmmTMB(as.formula(f), d, REML = FALSE)
  Sigma <- VarCorr(fit)$cond$Subject; s2 <- sigma(fit)^2
  X <- model.matrix(~ age + Sex, d); XtVX <- 0
  for (lev in levels(d$Subject)) {
    rows <- d$Subject == lev
    Zi <- model.matrix(~ 0 + agef, d[rows, ])
    Vi <- Zi %*% Sigma %*% t(Zi) + s2 * diag(sum(rows))
    XtVX <- XtVX + t(X[rows, ]) %*% solve(Vi, X[rows, ])
  }
  write_case(paste0("orthodont_", st, "_glmmtmb"), d, fit, f, engine = "glmmTMB",
             extra = list(se_conditional = as.list(unname(sqrt(diag(solve(XtVX)))))))
}

# nlme continuous AR(1) in age with rows shuffled and a variance per sex
set.seed(28)
d <- orth[sample(nrow(orth)), ]; d$Subject <- factor(d$Subject)
d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
fit <- lme(distance ~ age + Sex, random = ~ 1 | Subject, data = d, method = "ML",
           correlation = corCAR1(form = ~ age | Subject), weights = varIdent(form = ~ 1 | Sex),
           control = lmeControl(tolerance = 1e-10, msTol = 1e-10, msMaxIter = 500))
write_case("orthodont_car1_varident_shuffled", d, fit, "distance ~ age + Sex + (1 | Subject)",
           engine = "nlme",
           extra = list(variance = list(Ident = "Sex"), correlation = list(CAR1 = "age"),
                        variance_parameters = as.list(coef(fit$modelStruct$varStruct, unconstrained = FALSE)),
                        correlation_parameters = as.list(coef(fit$modelStruct$corStruct, unconstrained = FALSE))))

# glmmTMB ar1 and toep over a time factor, two replicates per subject and time
set.seed(29)
ns <- 20; nt <- 4
subj <- factor(sprintf("s%02d", rep(1:ns, each = nt * 2)))
tf <- factor(rep(rep(1:nt, each = 2), ns))
rho <- 0.6; Sig <- 1.5^2 * rho^abs(outer(1:nt, 1:nt, "-"))
b <- t(chol(Sig)) %*% matrix(rnorm(nt * ns), nt)
x <- round(rnorm(length(subj)), 4)
y <- round(2 + 0.5 * x + b[cbind(as.integer(tf), as.integer(subj))] + rnorm(length(subj)), 5)
d <- data.frame(y = y, x = x, tf = tf, subj = subj)
# glmmTMB's fixed-effect SEs invert the Hessian in all parameters; lme4's (and ours) are
# (X'V^-1 X)^-1 at the estimated covariance: computed here from glmmTMB's estimates
conditional_se <- function(fit, d, group, factor_name) {
  Sigma <- VarCorr(fit)$cond[[group]]; s2 <- sigma(fit)^2
  X <- model.matrix(~ x, d); XtVX <- 0
  for (lev in levels(d[[group]])) {
    rows <- d[[group]] == lev
    Zi <- model.matrix(~ 0 + d[[factor_name]][rows])
    Vi <- Zi %*% Sigma %*% t(Zi) + s2 * diag(sum(rows))
    XtVX <- XtVX + t(X[rows, ]) %*% solve(Vi, X[rows, ])
  }
  unname(sqrt(diag(solve(XtVX))))
}
for (st in c("ar1", "toep")) {
  f <- sprintf("y ~ x + %s(0 + tf | subj)", st)
  fit <- glmmTMB(as.formula(f), d, REML = FALSE)
  write_case(paste0("sim_", st, "_replicates_glmmtmb"), d, fit, f, engine = "glmmTMB",
             extra = list(se_conditional = as.list(conditional_se(fit, d, "subj", "tf"))))
}

# type III anova (lmerTest: Satterthwaite and Kenward-Roger) of a REML fit with an
# interaction and a recoded reference level, run to convergence
d <- orth; d$Subject <- factor(d$Subject); d$Sex <- factor(d$Sex, levels = c("Female", "Male"))
f <- "distance ~ age * Sex + (age | Subject)"
fit <- lmer(as.formula(f), d, REML = TRUE, control = ctrl)
sat <- anova(fit); kr <- anova(fit, ddf = "Kenward-Roger")
write_case("orthodont_reml_anova", d, fit, f, reml = TRUE,
           extra = list(anova = list(terms = rownames(sat), F = unname(sat[["F value"]]),
                                     DenDF = unname(sat$DenDF), F_kr = unname(kr[["F value"]]),
                                     DenDF_kr = unname(kr$DenDF))))

# profile intervals (lme4's confint(method = "profile")) of the shuffled, rescaled sleepstudy
d <- read.csv(file.path(here, "data", "sleep_shuffled_rescaled.csv")); d$Subject <- factor(d$Subject)
f <- "rt ~ weeks + (weeks | Subject)"
fit <- lmer(as.formula(f), d, REML = FALSE, control = ctrl)
ci <- confint(fit, method = "profile", oldNames = FALSE)
write_case("sleep_shuffled_rescaled_profile", d, fit, f,
           extra = list(profile = list(rows = rownames(ci), lower = unname(ci[, 1]),
                                       upper = unname(ci[, 2]))))

# Gamma (log link) with prior weights: Var(y) = phi mu^2 / w
set.seed(30)
ng <- 20; m <- 10
g <- factor(sprintf("g%02d", rep(1:ng, each = m)))
x <- round(rnorm(ng * m), 4)
w <- sample(c(1, 2, 4), ng * m, replace = TRUE)
mu <- exp(1 + 0.3 * x + rnorm(ng, 0, 0.3)[g])
y <- round(rgamma(ng * m, shape = 4 * w, scale = mu / (4 * w)), 6)
d <- data.frame(y = y, x = x, w = w, g = g)
f <- "y ~ x + (1 | g)"
gw <- glmer(as.formula(f), d, Gamma(link = "log"), weights = w, control = gctrl)
# lme4's vcov here is 2.3x too small for the intercept (0.034 against 0.077 from the
# curvature of its own deviance function): reference SEs from the wide-step Hessian
x0 <- c(getME(gw, "theta"), fixef(gw))
H <- (4 * wide_hessian(update(gw, devFunOnly = TRUE), x0, 0.01) -
        wide_hessian(update(gw, devFunOnly = TRUE), x0, 0.02)) / 3
write_case("sim_gamma_log_prior_weights", d, gw, f, family = "gamma", link = "log", weights = "w",
           extra = list(se_richardson = as.list(unname(sqrt(diag(2 * solve(H)))[-1]))))
