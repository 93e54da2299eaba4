# Reference values for mm.nlme(..., method = "Laplace", n_agq = k) on a model linear in its
# random effect and Gaussian, where the Laplace approximation (and so every adaptive
# Gauss-Hermite quadrature) is exact:
#   Reaction ~ b0 + b1 * Days, b0 ~ 1 | Subject  ==  lmer(Reaction ~ Days + (1 | Subject),
#                                                         REML = FALSE)
# Run from the repository root:  Rscript tests/reference/nlme_agq/make_reference.R
# Writes tests/reference/nlme_agq/sleepstudy_intercept_ml.json.
suppressMessages({library(lme4); library(numDeriv); library(jsonlite)})
here <- "tests/reference/nlme_agq"
d <- read.csv(gzfile("src/mixedmodels/datasets/data/sleepstudy.csv.gz"))
d$Subject <- factor(d$Subject)
m <- lmer(Reaction ~ Days + (1 | Subject), d, REML = FALSE)
beta <- unname(fixef(m)); theta <- unname(getME(m, "theta")); sigma <- sigma(m)
# The exact marginal deviance over (beta, theta, sigma), V_i = sigma^2 (I + theta^2 1 1'),
# and its Hessian at the ML estimates by numDeriv (Richardson): the fixed effects' block of
# 2 H^-1 is the inverse observed information with theta and sigma estimated.
X <- model.matrix(~ Days, d); groups <- split(seq_len(nrow(d)), d$Subject)
deviance <- function(x) {
  b <- x[1:2]; th <- x[3]; s <- x[4]; total <- 0
  for (rows in groups) {
    n <- length(rows); r <- d$Reaction[rows] - X[rows, , drop = FALSE] %*% b
    V <- s^2 * (diag(n) + th^2 * matrix(1, n, n))
    total <- total + n * log(2 * pi) + as.numeric(determinant(V)$modulus) +
      sum(r * solve(V, r))
  }
  total
}
x <- c(beta, theta, sigma)
H <- hessian(deviance, x)
out <- list(
  formula = "Reaction ~ Days + (1 | Subject), REML = FALSE",
  logLik = as.numeric(logLik(m)), deviance_check = deviance(x),
  fixef = beta, theta = theta, sigma = sigma,
  sd = as.data.frame(VarCorr(m))$sdcor[1],
  se_conditional = unname(sqrt(diag(as.matrix(vcov(m))))),
  se_hessian = sqrt(diag(2 * solve(H)))[1:2],
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  numDeriv = as.character(packageVersion("numDeriv"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "sleepstudy_intercept_ml.json"))
