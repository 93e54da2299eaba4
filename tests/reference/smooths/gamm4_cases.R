# Reference fits for tests/test_smooth_agreement.py: gamm4 (through lme4) and mgcv's gam.
# Run: Rscript tests/reference/smooths/gamm4_cases.R   (writes gamm4_cases.json beside it)
# Each case stores its data, the lme4 criterion (REML for Gaussian, -2 log L (Laplace) for
# the others), log det(X'X) of the fixed-effect matrix gamm4 handed to lme4 (the criterion
# depends on the parametrization of the fixed part through log det(X'V^-1 X)), the
# parametric coefficients, each smooth's fitted values (predict type = "terms"), its edf,
# mgcv's table of approximate significance, and curves with standard errors on a grid.
suppressMessages({library(mgcv); library(gamm4); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))

make_data <- function(n, n_groups, seed) {
  set.seed(seed)
  g <- factor(sprintf("g%02d", sample(n_groups, n, replace = TRUE)))
  f <- factor(sample(c("a", "b", "c"), n, replace = TRUE))
  x <- round(runif(n), 4); z <- round(runif(n), 4)
  u <- rnorm(n_groups, sd = 0.5)[as.integer(g)]
  eta <- sin(2 * pi * x) + 0.5 * (f == "b") + u
  data.frame(x = x, z = z, g = g, f = f, u = u, eta = eta)
}

cases <- list()
add_case <- function(name, formula, random, d, family = gaussian(), grid_smooth = NULL) {
  fam <- family$family
  fit <- gamm4(formula, random = random, data = d, family = family, REML = TRUE)
  mer <- fit$mer; gam <- fit$gam
  X <- getME(mer, "X")
  crit <- if (fam == "gaussian") REMLcrit(mer) else -2 * as.numeric(logLik(mer))
  st <- summary(gam)$s.table
  terms <- predict(gam, type = "terms")
  labels <- sapply(gam$smooth, function(s) s$label)
  edf <- sapply(gam$smooth, function(s) sum(gam$edf[s$first.para:s$last.para]))
  smooth_fit <- lapply(labels, function(l) as.numeric(terms[, l]))
  names(smooth_fit) <- labels
  # a grid over x (other covariates at their first value / mean), curves with standard errors
  grid <- data.frame(x = seq(0, 1, length = 25), z = 0.5, g = d$g[1], f = d$f[1])
  pg <- predict(gam, newdata = grid, type = "terms", se.fit = TRUE)
  curves <- lapply(labels, function(l) list(fit = as.numeric(pg$fit[, l]), se = as.numeric(pg$se.fit[, l])))
  names(curves) <- labels
  nd <- d[seq(1, nrow(d), by = 7), ]
  cases[[name]] <<- list(
    formula = deparse(formula), random = if (is.null(random)) NULL else deparse(random),
    family = fam,
    data = d[, c("x", "z", "g", "f", "y")],
    criterion = crit, logdet_xtx = as.numeric(determinant(crossprod(X))$modulus),
    fixed_names = colnames(X), n_parametric = gam$nsdf,
    parametric = unname(gam$coefficients[seq_len(gam$nsdf)]),
    mer_fixef = unname(fixef(mer)),
    sigma = if (fam == "gaussian") sigma(mer) else 1,
    smooth_labels = labels, edf = unname(edf), smooth_fit = smooth_fit,
    s_table = list(edf = unname(st[, 1]), ref_df = unname(st[, 2]), stat = unname(st[, 3]),
                   p_value = unname(st[, 4]), stat_name = colnames(st)[3]),
    grid_x = grid$x, curves = curves,
    newdata_rows = seq(1, nrow(d), by = 7) - 1,
    predict_newdata = as.numeric(predict(gam, newdata = nd)),
    varcorr = as.data.frame(VarCorr(mer))[, c("grp", "sdcor")]
  )
}

d <- make_data(400, 20, 1); d$y <- d$eta + rnorm(400, sd = 0.4)
add_case("gaussian_tp", y ~ s(x) + s(z), ~(1 | g), d)  # s(z): no effect
d <- make_data(450, 15, 2); d$y <- d$eta + 0.6 * (d$f == "c") * cos(3 * d$x) + rnorm(450, sd = 0.3)
add_case("gaussian_cr_by", y ~ f + s(x, bs = "cr", k = 8, by = f), ~(1 | g), d)
d <- make_data(600, 25, 3); d$y <- rbinom(600, 1, plogis(d$eta))
add_case("binomial_tp", y ~ s(x) + s(z), ~(1 | g), d, binomial())
d <- make_data(500, 20, 4); d$y <- rpois(500, exp(0.3 + 0.7 * d$eta))
add_case("poisson_cr", y ~ s(x, bs = "cr"), ~(1 | g), d, poisson())
d <- make_data(480, 8, 5)
d$y <- d$eta + 0.8 * sin(4 * d$x + as.integer(d$g)) + rnorm(480, sd = 0.3)
add_case("gaussian_fs_m1", y ~ s(x, g, bs = "fs", m = 1), NULL, d)
add_case("gaussian_fs", y ~ s(x, g, bs = "fs"), NULL, d)
d <- make_data(400, 10, 6); d$y <- d$eta + cos(2 * d$z * d$x) + rnorm(400, sd = 0.3)
add_case("gaussian_t2", y ~ t2(x, z), ~(1 | g), d)
d <- make_data(400, 20, 7); d$y <- d$eta + rnorm(400, sd = 0.4)
add_case("gaussian_re", y ~ s(x) + s(g, bs = "re"), NULL, d)

# mgcv's gam with s(g, bs = "re") fits the same Gaussian model by REML
gm <- gam(y ~ s(x) + s(g, bs = "re"), data = d, method = "REML")
st <- summary(gm)$s.table
gam_re <- list(
  data = d[, c("x", "z", "g", "f", "y")],
  fitted = as.numeric(fitted(gm)), sigma = sqrt(gm$sig2),
  edf = unname(st[, 1]), smooth_labels = rownames(st),
  sd_g = sqrt(gm$sig2 / gm$sp[2]) / sqrt(gm$smooth[[2]]$S.scale),
  reml_score = as.numeric(gm$gcv.ubre))

out <- list(versions = list(R = R.version.string, mgcv = as.character(packageVersion("mgcv")),
                            gamm4 = as.character(packageVersion("gamm4")),
                            lme4 = as.character(packageVersion("lme4"))),
            cases = cases, gam_re = gam_re)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", dataframe = "columns"),
           file.path(here, "gamm4_cases.json"))
