# The tweedie case of the GLMM families: a compound Poisson-gamma response with random
# intercepts, simulated here (set.seed, so reproducible) and fitted by glmmTMB's tweedie().
# usage (from the project root):
#   Rscript tests/reference/families/make_tweedie_reference.R
# Writes data/tweedie_sim.csv and tweedie_sim.json with the fields of
# make_families_reference.R's glmmTMB cases, plus the power (1 + plogis(psi)) and its Wald
# interval, and profile/tweedie_sim.json (glmmTMB's uniroot profile intervals).
suppressMessages({library(glmmTMB); library(jsonlite)})
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
V <- function(x) I(unname(as.numeric(x)))

set.seed(20261128)
ng <- 30; m <- 12
g <- factor(rep(sprintf("g%02d", 1:ng), each = m))
x <- round(runif(ng * m, -1, 1), 4)
b <- rnorm(ng, 0, 0.5)
mu <- exp(0.5 + 0.6 * x + b[as.integer(g)])
p <- 1.6; phi <- 1.2
# compound Poisson-gamma: N ~ Poisson(mu^(2-p) / (phi (2-p))) gamma summands of shape
# (2-p)/(p-1) and scale phi (p-1) mu^(p-1)
N <- rpois(length(mu), mu^(2 - p) / (phi * (2 - p)))
shape <- (2 - p) / (p - 1); scale <- phi * (p - 1) * mu^(p - 1)
y <- ifelse(N > 0, rgamma(length(mu), shape = pmax(N, 1) * shape, scale = scale), 0)
y <- round(y, 6)
d <- data.frame(y = y, x = x, g = g)
write.csv(d, file.path(here, "data", "tweedie_sim.csv"), row.names = FALSE)
d <- read.csv(file.path(here, "data", "tweedie_sim.csv"))
d$g <- factor(d$g)

f <- y ~ x + (1|g)
m <- glmmTMB(f, data = d, family = tweedie)
vc <- VarCorr(m)$cond
ci <- confint(m, method = "wald", full = TRUE)
psi <- m$fit$par[["psi"]]
se_psi <- sqrt(m$sdr$cov.fixed["psi", "psi"])
res <- list(name = "tweedie_sim", engine = "glmmTMB", data = "tweedie_sim",
  formula = "y ~ x + (1|g)", family = "tweedie",
  glmmTMB_version = as.character(packageVersion("glmmTMB")),
  zero_share = mean(d$y == 0),
  nobs = nobs(m), ngrps = lapply(m$modelInfo$reTrms$cond$flist, nlevels),
  fixef = V(fixef(m)$cond), fixef_names = I(names(fixef(m)$cond)),
  se = V(sqrt(diag(vcov(m)$cond))),
  sd = V(unlist(lapply(vc, function(v) attr(v, "stddev")))),
  sigma = sigma(m), power = 1 + plogis(psi),
  power_wald = V(1 + plogis(psi + c(-1, 1) * qnorm(0.975) * se_psi)),
  logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
  fitted = V(fitted(m)), fitted_link = V(predict(m, type = "link")),
  confint_names = I(rownames(ci)), confint_lower = V(ci[, 1]), confint_upper = V(ci[, 2]),
  summary = paste(capture.output(print(summary(m))), collapse = "\n"),
  converged = m$fit$convergence == 0)
write_json(res, file.path(here, "tweedie_sim.json"), digits = NA, auto_unbox = TRUE)
np <- nrow(vcov(m, full = TRUE))
ur <- confint(m, method = "uniroot", parm = seq_len(np))
pr <- confint(m, method = "profile", parm = seq_len(np))
prof <- list(name = "tweedie_sim", engine = "glmmTMB", level = 0.95,
  glmmTMB_version = as.character(packageVersion("glmmTMB")),
  logLik = as.numeric(logLik(m)), sigma = sigma(m),
  internal_names = I(colnames(vcov(m, full = TRUE))),
  profile_names = I(rownames(pr)), profile_lower = V(pr[, 1]), profile_upper = V(pr[, 2]),
  uniroot_names = I(rownames(ur)), uniroot_lower = V(ur[, 1]), uniroot_upper = V(ur[, 2]),
  wald_names = I(rownames(ci)), wald_lower = V(ci[, 1]), wald_upper = V(ci[, 2]))
write_json(prof, file.path(here, "profile", "tweedie_sim.json"), digits = NA, auto_unbox = TRUE)
message("tweedie_sim done; share of zeros ", mean(d$y == 0))
