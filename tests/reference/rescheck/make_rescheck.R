# Agreement review of issue 12 on cases that are not in the other tests: nlme::lme with
# correlation = / weights = and glmmTMB with structured random-effect covariances, on
# simulated data (written here as CSV, set.seed) and two of the project's data sets.
# One JSON file per case: the REML and ML fits, predictions on new rows, nlme's Wald
# intervals() and the LRT (anova) against a second structure, plus R's fitting time.
# usage: Rscript make_rescheck.R OUTDIR DATADIR
suppressMessages({library(nlme); library(glmmTMB); library(jsonlite)})
# nlme's intervals() invert fdHess, a coarse Hessian (one quadratic fit per pair of
# parameters, relative step eps^(1/3)); the same intervals with numDeriv's Richardson
# Hessian of the same function are recorded beside them
with_richardson <- function(expr) {
  orig <- nlme::fdHess
  assignInNamespace("fdHess", function(pars, fun, ..., .relStep = NULL, minAbsPar = 0)
    list(Hessian = numDeriv::hessian(function(p) fun(p, ...), pars)), "nlme")
  on.exit(assignInNamespace("fdHess", orig, "nlme"))
  expr
}
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; datadir <- args[2]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
V <- function(x) I(unname(as.numeric(x)))
N <- function(x) I(as.character(x))
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                   niterEM = 100, opt = "nlminb", returnObject = FALSE)
lab <- function(prefix, i) sprintf("%s%02d", prefix, i)
# median over 5 fits of the elapsed and the CPU (user + system) seconds
timed <- function(expr_fun) {
  t <- sapply(1:5, function(i) { s <- system.time(expr_fun()); c(s[["elapsed"]], s[["user.self"]] + s[["sys.self"]]) })
  list(elapsed = median(t[1, ]), cpu = median(t[2, ]))
}
ar1_noise <- function(n, phi) as.numeric(arima.sim(list(ar = phi), n = n))

# ------------------------------------------------------------------ simulated data
sim <- list()
set.seed(101)  # random slope, AR(1) errors
d <- expand.grid(Time = 0:9, g = lab("g", 1:30))
b0 <- rnorm(30, 0, 2); b1 <- rnorm(30, 0, 0.5); gi <- as.integer(d$g)
d$x <- rnorm(nrow(d))
d$y <- 10 + 0.8 * d$x + 0.5 * d$Time + b0[gi] + b1[gi] * d$Time +
  unlist(lapply(1:30, function(i) ar1_noise(10, 0.5)))
sim$slope_ar1 <- d

set.seed(102)  # random slope per subject, compound symmetry within sessions
d <- expand.grid(trial = 1:4, session = lab("s", 1:3), subj = lab("p", 1:20))
d$Time <- (as.integer(d$session) - 1) + d$trial / 10
si <- as.integer(d$subj); ss <- interaction(d$subj, d$session)
b0 <- rnorm(20, 0, 1.5); b1 <- rnorm(20, 0, 0.6); se <- rnorm(nlevels(ss), 0, 0.8)
d$y <- 5 + 1.2 * d$Time + b0[si] + b1[si] * d$Time + se[as.integer(ss)] + rnorm(nrow(d))
sim$slope_cs_inner <- d[, c("subj", "session", "trial", "Time", "y")]

set.seed(103)  # integer times with gaps, unequal groups, shuffled rows
rows <- lapply(1:25, function(i) {
  t <- sort(sample(1:15, sample(3:12, 1)))
  e <- ar1_noise(15, 0.6)[t]
  data.frame(g = lab("g", i), t = t, x = runif(length(t), 0, 2), e = e, b = rnorm(1, 0, 1.2))
})
d <- do.call(rbind, rows)
d$y <- 3 + 1.5 * d$x + d$b + d$e
d <- d[sample(nrow(d)), c("g", "t", "x", "y")]
sim$gaps_ar1 <- d

set.seed(104)  # continuous-time AR(1) at irregular, non-integer times
rows <- lapply(1:20, function(i) {
  t <- round(cumsum(rexp(sample(8:15, 1), rate = 1.2)), 3)
  r <- exp(-abs(outer(t, t, "-")) * 0.5)  # Phi = exp(-0.5) per unit time
  e <- as.numeric(t(chol(r)) %*% rnorm(length(t)))
  data.frame(g = lab("g", i), t = t, y = 2 + 0.4 * t + rnorm(1, 0, 1) + 0.9 * e)
})
sim$car1_irregular <- do.call(rbind, rows)

set.seed(105)  # compound symmetry within subject (nested in site), varIdent on 3 levels
d <- expand.grid(rep = 1:2, cond = c("lo", "mid", "hi"), subj = lab("p", 1:5), site = lab("s", 1:8))
d$subj <- paste0(d$site, d$subj)
sd_cond <- c(lo = 1, mid = 1.6, hi = 2.4)
sub <- as.integer(factor(d$subj)); st <- as.integer(factor(d$site))
d$y <- 10 + c(lo = 0, mid = 1, hi = 2.5)[as.character(d$cond)] + rnorm(8, 0, 1.5)[st] +
  rnorm(40, 0, 0.9)[sub] + rnorm(nrow(d)) * sd_cond[as.character(d$cond)]
sim$cs_varident3 <- d[, c("site", "subj", "cond", "rep", "y")]

set.seed(106)  # variance a power of a positive covariate
d <- expand.grid(k = 1:8, g = lab("g", 1:25))
d$dose <- round(runif(nrow(d), 0.5, 6), 3)
d$y <- 1 + 2 * d$dose + rnorm(25, 0, 1.5)[as.integer(d$g)] + rnorm(nrow(d)) * 0.5 * d$dose^0.8
sim$varpower_cov <- d[, c("g", "dose", "y")]

set.seed(107)  # variance a power of the mean (varPower of the fitted values)
d <- expand.grid(k = 1:6, g = lab("g", 1:30))
d$x <- round(runif(nrow(d), 1, 10), 3)
mu <- 5 + 6 * d$x + rnorm(30, 0, 4)[as.integer(d$g)]
d$y <- mu + rnorm(nrow(d)) * 0.3 * mu^0.6
sim$varpower_fitted <- d[, c("g", "x", "y")]

set.seed(108)  # AR(1) errors with a standard deviation per phase (3 levels)
d <- expand.grid(Time = 1:12, g = lab("g", 1:30))
d$phase <- cut(d$Time, c(0, 4, 8, 12), labels = c("early", "mid", "late"))
d$y <- 20 - 0.3 * d$Time + rnorm(30, 0, 2)[as.integer(d$g)] +
  unlist(lapply(1:30, function(i) ar1_noise(12, 0.55))) *
  c(early = 1, mid = 1.5, late = 0.7)[as.character(d$phase)]
sim$varident_ar1 <- d[, c("g", "Time", "phase", "y")]

set.seed(109)  # singleton groups, missing values in the response and in two structure columns
sizes <- c(1, 1, 1, 2, 3, sample(4:10, 25, replace = TRUE))
rows <- lapply(seq_along(sizes), function(i) {
  m <- sizes[i]
  data.frame(g = lab("g", i), t = 1:m, x = round(runif(m, 0, 3), 3),
             e = ar1_noise(m + 1, 0.5)[seq_len(m)], b = rnorm(1, 0, 1.5))
})
d <- do.call(rbind, rows)
d$y <- 4 + 0.7 * d$x + d$b + d$e * exp(0.25 * d$x)
d <- d[, c("g", "t", "x", "y")]
d$y[c(7, 40, 41)] <- NA; d$x[c(12, 90)] <- NA; d$t[c(60, 150)] <- NA
sim$single_missing <- d

set.seed(110)  # nested random intercepts a/b, AR(1) within the inner groups
d <- expand.grid(Time = 1:6, b = lab("b", 1:4), a = lab("a", 1:10))
ab <- interaction(d$a, d$b)
d$x <- rnorm(nrow(d))
d$y <- 1 + 0.5 * d$x + rnorm(10, 0, 1.2)[as.integer(d$a)] + rnorm(40, 0, 0.8)[as.integer(ab)] +
  unlist(lapply(1:40, function(i) ar1_noise(6, 0.5)))
sim$nested_ar1 <- d[, c("a", "b", "Time", "x", "y")]

set.seed(111)  # glmmTMB: heterogeneous compound symmetry over a 3-level factor
d <- expand.grid(rep = 1:3, cond = c("c1", "c2", "c3"), subj = lab("p", 1:40))
sds <- c(1.0, 1.6, 2.2); rho <- 0.5
S <- diag(sds) %*% (matrix(rho, 3, 3) + diag(1 - rho, 3)) %*% diag(sds)
B <- matrix(rnorm(40 * 3), 40) %*% chol(S)
d$x <- rnorm(nrow(d))
d$y <- 2 + c(0, 1, 2)[as.integer(d$cond)] + 0.5 * d$x +
  B[cbind(as.integer(d$subj), as.integer(d$cond))] + rnorm(nrow(d))
sim$tmb_cs3 <- d[, c("subj", "cond", "rep", "x", "y")]

set.seed(112)  # glmmTMB: ar1 over a 6-level time factor
d <- expand.grid(rep = 1:2, time = 1:6, subj = lab("p", 1:30))
d$tf <- factor(paste0("t", d$time))
R <- 0.6^abs(outer(1:6, 1:6, "-"))
B <- matrix(rnorm(30 * 6), 30) %*% chol(1.5^2 * R)
d$y <- 1 + 0.3 * d$time + B[cbind(as.integer(d$subj), d$time)] + rnorm(nrow(d), 0, 0.8)
sim$tmb_ar1_6 <- d[, c("subj", "time", "tf", "rep", "y")]

set.seed(113)  # glmmTMB: diag(x | g) next to a second, crossed term (1 | h)
d <- expand.grid(k = 1:3, h = lab("h", 1:8), g = lab("g", 1:20))
d$x <- round(rnorm(nrow(d)), 3)
d$y <- 5 + 1 * d$x + rnorm(20, 0, 1.5)[as.integer(d$g)] + rnorm(20, 0, 0.7)[as.integer(d$g)] * d$x +
  rnorm(8, 0, 1)[as.integer(d$h)] + rnorm(nrow(d))
sim$tmb_diag_plus <- d[, c("g", "h", "x", "y")]

set.seed(114)  # glmmTMB: toep(0 + tf | subj) crossed with (1 | item)
d <- expand.grid(tf = paste0("t", 1:4), item = lab("i", 1:10), subj = lab("p", 1:24))
acf <- c(1, 0.6, 0.3, 0.1); sds <- c(1, 1.3, 1.6, 2)
S <- diag(sds) %*% toeplitz(acf) %*% diag(sds)
B <- matrix(rnorm(24 * 4), 24) %*% chol(S)
d$y <- 3 + c(0, 0.5, 1, 1.5)[as.integer(d$tf)] + B[cbind(as.integer(d$subj), as.integer(d$tf))] +
  rnorm(10, 0, 0.8)[as.integer(d$item)] + rnorm(nrow(d))
sim$tmb_crossed_toep <- d[, c("subj", "item", "tf", "y")]

for (name in names(sim)) {
  rownames(sim[[name]]) <- NULL
  write.csv(sim[[name]], file.path(out, paste0(name, ".csv")), row.names = FALSE)
}
load_case <- function(case) {
  if (!is.null(case$dataset)) return(load_csv(case$dataset))
  d <- read.csv(file.path(out, paste0(case$name, ".csv")), stringsAsFactors = FALSE)
  for (v in case$factors) d[[v]] <- factor(d[[v]])
  d
}

# ------------------------------------------------------------------ nlme cases
# alt: the second structure of the LRT (anova of the two ML fits); shift: numeric columns
# moved on the new rows for predict()
nlme_cases <- list(
  list(name = "slope_ar1", fixed = y ~ x + Time, random = ~Time | g, factors = "g",
       correlation = quote(corAR1()), alt = list(), shift = c("x", "Time")),
  list(name = "slope_cs_inner", fixed = y ~ Time, random = ~Time | subj,
       factors = c("subj", "session"), correlation = quote(corCompSymm(form = ~1 | subj/session)),
       alt = list(), shift = "Time"),
  list(name = "gaps_ar1", fixed = y ~ x, random = ~1 | g, factors = "g",
       correlation = quote(corAR1(form = ~t | g)), alt = list(), shift = "x"),
  list(name = "car1_irregular", fixed = y ~ t, random = ~1 | g, factors = "g",
       correlation = quote(corCAR1(form = ~t | g)),
       alt = list(), shift = "t"),
  list(name = "ovary_ma2", dataset = "Ovary", fixed = follicles ~ sin(2*pi*Time) + cos(2*pi*Time),
       random = ~1 | Mare, correlation = quote(corARMA(q = 2)),
       alt = list(correlation = quote(corAR1())), shift = "Time"),
  list(name = "cs_varident3", fixed = y ~ cond, random = ~1 | site,
       factors = c("site", "subj", "cond"),
       correlation = quote(corCompSymm(form = ~1 | site/subj)),
       weights = quote(varIdent(form = ~1 | cond)),
       alt = list(correlation = quote(corCompSymm(form = ~1 | site/subj))), shift = character(0)),
  list(name = "varpower_cov", fixed = y ~ dose, random = ~1 | g, factors = "g",
       weights = quote(varPower(form = ~dose)), alt = list(), shift = "dose"),
  list(name = "varpower_fitted", fixed = y ~ x, random = ~1 | g, factors = "g",
       weights = quote(varPower()), alt = list(weights = quote(varExp())), shift = "x"),
  list(name = "orthodont_varcomb", dataset = "Orthodont", fixed = distance ~ age + Sex,
       random = ~1 | Subject,
       weights = quote(varComb(varIdent(form = ~1 | Sex), varPower(form = ~age))),
       alt = list(weights = quote(varIdent(form = ~1 | Sex))), shift = "age"),
  list(name = "varident_ar1", fixed = y ~ Time, random = ~1 | g, factors = c("g", "phase"),
       correlation = quote(corAR1()), weights = quote(varIdent(form = ~1 | phase)),
       alt = list(correlation = quote(corAR1())), shift = "Time"),
  list(name = "single_missing", fixed = y ~ x, random = ~1 | g, factors = "g",
       correlation = quote(corAR1(form = ~t | g)), weights = quote(varExp(form = ~x)),
       alt = list(correlation = quote(corAR1(form = ~t | g))), shift = "x"),
  list(name = "nested_ar1", fixed = y ~ x, random = ~1 | a/b, factors = c("a", "b"),
       correlation = quote(corAR1()), alt = list(), shift = "x")
)
fit_lme <- function(case, method, d, correlation = case$correlation, weights = case$weights) {
  cl <- list(fixed = case$fixed, random = case$random, data = quote(d), method = method,
             control = ctrl, na.action = quote(na.omit))
  if (!is.null(correlation)) cl$correlation <- correlation
  if (!is.null(weights)) cl$weights <- weights
  do.call(lme, cl)
}
new_rows <- function(case, d) {
  keep <- complete.cases(d)
  nd <- d[keep, ][c(1, 5, 9, 14, 20, 27), ]
  for (v in case$shift) nd[[v]] <- nd[[v]] + 0.37
  nd
}
frame_json <- function(nd) {
  nd <- as.data.frame(lapply(nd, function(x) if (is.factor(x)) as.character(x) else x))
  rownames(nd) <- NULL
  nd
}
wald_ends <- function(m) {
  iv <- tryCatch(intervals(m, which = "var-cov"), error = function(e) NULL)
  ends <- function(part, col) if (is.null(iv) || is.null(iv[[part]])) NULL else V(iv[[part]][, col])
  list(cor_lower = ends("corStruct", "lower"), cor_upper = ends("corStruct", "upper"),
       var_lower = ends("varStruct", "lower"), var_upper = ends("varStruct", "upper"))
}
lme_result <- function(m, method) {
  ms <- m$modelStruct
  cor_par <- if (!is.null(ms$corStruct)) coef(ms$corStruct, unconstrained = FALSE) else numeric(0)
  var_par <- if (!is.null(ms$varStruct)) coef(ms$varStruct, unconstrained = FALSE) else numeric(0)
  iv <- tryCatch(intervals(m, which = "var-cov"), error = function(e) NULL)
  ci_cor <- if (!is.null(iv) && !is.null(iv$corStruct)) iv$corStruct else NULL
  ci_var <- if (!is.null(iv) && !is.null(iv$varStruct)) iv$varStruct else NULL
  vc <- VarCorr(m)
  sdc <- suppressWarnings(as.numeric(vc[, "StdDev"]))
  re_sd <- sdc[!is.na(sdc)]
  re_sd <- re_sd[-length(re_sd)]  # the last is the residual's
  list(REML = method == "REML", nobs = m$dims$N,
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m),
    fixef = V(fixef(m)), fixef_names = I(names(fixef(m))),
    se = V(sqrt(diag(vcov(m)))), sigma = m$sigma, re_sd = V(re_sd),
    cor_par = V(cor_par), cor_names = N(names(cor_par)),
    var_par = V(var_par), var_names = N(names(var_par)),
    cor_lower = if (is.null(ci_cor)) NULL else V(ci_cor[, "lower"]),
    cor_upper = if (is.null(ci_cor)) NULL else V(ci_cor[, "upper"]),
    var_lower = if (is.null(ci_var)) NULL else V(ci_var[, "lower"]),
    var_upper = if (is.null(ci_var)) NULL else V(ci_var[, "upper"]),
    fitted = V(fitted(m)), fitted_fixed = V(fitted(m, level = 0)))
}
for (case in nlme_cases) {
  d <- load_case(case)
  nd <- new_rows(case, d)
  res <- list(name = case$name, kind = "nlme", data = if (is.null(case$dataset)) case$name else case$dataset,
    simulated = is.null(case$dataset), fixed = deparse(case$fixed), random = deparse(case$random),
    correlation = if (is.null(case$correlation)) NULL else deparse(case$correlation),
    weights = if (is.null(case$weights)) NULL else deparse(case$weights),
    nlme_version = as.character(packageVersion("nlme")), R_version = R.version.string,
    rows = nrow(d), newdata = frame_json(nd))
  for (method in c("REML", "ML")) {
    m <- fit_lme(case, method, d)
    times <- timed(function() fit_lme(case, method, d))
    r <- lme_result(m, method)
    r$seconds_median <- times$elapsed
    r$cpu_seconds_median <- times$cpu
    r$richardson <- wald_ends(with_richardson(fit_lme(case, method, d)))
    Q <- length(m$groups)
    r$predict_fixed <- V(predict(m, nd, level = 0))
    r$predict_random <- V(predict(m, nd, level = Q))
    res[[tolower(method)]] <- r
    if (method == "ML") {
      alt <- case$alt
      m0 <- fit_lme(case, method, d, correlation = alt$correlation, weights = alt$weights)
      a <- anova(m0, m)
      res$lrt <- list(alt_correlation = if (is.null(alt$correlation)) NULL else deparse(alt$correlation),
        alt_weights = if (is.null(alt$weights)) NULL else deparse(alt$weights),
        alt_logLik = as.numeric(logLik(m0)), alt_df = attr(logLik(m0), "df"),
        L_ratio = a$L.Ratio[2], p_value = a$`p-value`[2])
    }
  }
  write_json(res, file.path(out, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE,
             pretty = TRUE, null = "null")
  cat(case$name, res$reml$logLik, res$ml$logLik, res$lrt$L_ratio, res$reml$seconds_median, "\n")
}

# ------------------------------------------------------------------ glmmTMB cases
tmb_cases <- list(
  list(name = "tmb_cs3", formula = y ~ cond + x + cs(0 + cond | subj), factors = c("subj", "cond"),
       fixed = ~cond + x, re = list(subj = ~0 + cond),
       alt = y ~ cond + x + us(0 + cond | subj), shift = "x"),
  list(name = "tmb_ar1_6", formula = y ~ time + ar1(0 + tf | subj), factors = c("subj", "tf"),
       fixed = ~time, re = list(subj = ~0 + tf),
       alt = y ~ time + (1 | subj), shift = "time"),
  list(name = "tmb_diag_plus", formula = y ~ x + diag(x | g) + (1 | h), factors = c("g", "h"),
       fixed = ~x, re = list(g = ~x, h = ~1),
       alt = y ~ x + us(x | g) + (1 | h), shift = "x"),
  list(name = "tmb_crossed_toep", formula = y ~ tf + toep(0 + tf | subj) + (1 | item),
       fixed = ~tf, re = list(subj = ~0 + tf, item = ~1),
       factors = c("subj", "item", "tf"), alt = y ~ tf + us(0 + tf | subj) + (1 | item),
       shift = character(0))
)
# glmmTMB 1.1.5's predict() under REML = TRUE is not X beta (+ Z b) (re.form = NA differs
# from X %*% fixef by up to 0.15 on tmb_diag_plus, with or without newdata; its ML
# predictions are): predictions are written out from fixef() and ranef() instead, and
# checked against predict() on the ML fits
tmb_predict <- function(case, m, nd) {
  fixed <- drop(model.matrix(case$fixed, nd) %*% fixef(m)$cond)
  re <- ranef(m)$cond
  full <- fixed
  for (g in names(case$re)) {
    A <- model.matrix(case$re[[g]], nd)
    b <- as.matrix(re[[g]])[as.character(nd[[g]]), colnames(A), drop = FALSE]
    full <- full + rowSums(A * b)
  }
  list(fixed = fixed, full = full)
}
# lme4's standard errors, (X' V^-1 X)^-1 at glmmTMB's estimates with V = Z G Z' + sigma^2 I
# written out densely; glmmTMB's own (sdreport's) also carry the covariance parameters'
# uncertainty through the observed information's cross terms
lme4_se <- function(case, m, d) {
  X <- model.matrix(case$fixed, d)
  vc <- VarCorr(m)$cond
  Vm <- diag(sigma(m)^2, nrow(d))
  for (g in names(case$re)) {
    A <- model.matrix(case$re[[g]], d)
    same <- outer(as.character(d[[g]]), as.character(d[[g]]), "==")
    Vm <- Vm + (A %*% as.matrix(vc[[g]])[colnames(A), colnames(A)] %*% t(A)) * same
  }
  sqrt(diag(solve(t(X) %*% solve(Vm, X))))
}
tmb_result <- function(m) {
  vcs <- VarCorr(m)$cond
  list(REML = NULL, nobs = nobs(m), logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    fixef = V(fixef(m)$cond), fixef_names = I(names(fixef(m)$cond)),
    se = V(sqrt(diag(vcov(m)$cond))), sigma = sigma(m),
    re_cov = lapply(vcs, function(v) unname(as.matrix(v))), re_terms = I(names(vcs)),
    convergence = m$fit$convergence, pdHess = m$sdr$pdHess)
}
for (case in tmb_cases) {
  d <- load_case(case)
  nd <- new_rows(case, d)
  res <- list(name = case$name, kind = "glmmTMB", data = case$name, simulated = TRUE,
    formula = deparse(case$formula), alt_formula = deparse(case$alt),
    glmmTMB_version = as.character(packageVersion("glmmTMB")), R_version = R.version.string,
    rows = nrow(d), newdata = frame_json(nd))
  for (reml in c(TRUE, FALSE)) {
    m <- glmmTMB(case$formula, data = d, REML = reml)
    times <- timed(function() glmmTMB(case$formula, data = d, REML = reml))
    r <- tmb_result(m)
    r$REML <- reml
    r$seconds_median <- times$elapsed
    r$cpu_seconds_median <- times$cpu
    p <- tmb_predict(case, m, nd)
    if (!reml && max(abs(c(p$fixed - predict(m, nd, re.form = NA), p$full - predict(m, nd)))) > 1e-8)
      stop("predictions written out differ from glmmTMB's predict() on ", case$name)
    r$predict_fixed <- V(p$fixed)
    r$predict_random <- V(p$full)
    r$se_lme4 <- V(lme4_se(case, m, d))
    if (r$convergence != 0 || !isTRUE(r$pdHess)) stop("glmmTMB did not converge on ", case$name)
    res[[if (reml) "reml" else "ml"]] <- r
    if (!reml) {
      m0 <- glmmTMB(case$alt, data = d, REML = FALSE)
      a <- anova(m0, m)
      res$lrt <- list(alt_logLik = as.numeric(logLik(m0)), alt_df = attr(logLik(m0), "df"),
        L_ratio = a$Chisq[2], chi_df = a$`Chi Df`[2], p_value = a$`Pr(>Chisq)`[2])
    }
  }
  write_json(res, file.path(out, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE,
             pretty = TRUE, null = "null")
  cat(case$name, res$reml$logLik, res$ml$logLik, res$lrt$L_ratio, res$reml$seconds_median, "\n")
}
