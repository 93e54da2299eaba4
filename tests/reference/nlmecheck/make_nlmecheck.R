# Agreement review of mm.nlme against nlme::nlme on cases that are NOT in
# tests/reference/nlme (issue 16).  Run from the repository root:
#   Rscript tests/reference/nlmecheck/make_nlmecheck.R
# Writes tests/reference/nlmecheck/nlmecheck_reference.json and the data of each case as
# tests/reference/nlmecheck/data/<case>.csv (simulated here with set.seed, from the
# self-starting models with random effects).
#
# Each case is fitted twice: with nlme's defaults and "converged":
#   nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500)
# plus maxIter = 500 and pnlsMaxIter = 50 so that the tight tolerances can be reached (with
# nlme's caps of 50 outer / 7 PNLS iterations the tight fit can stop at a cap; numIter is
# recorded).  As in tests/reference/nlme, the fits start from the pooled getInitial() values
# of the self-starting model (covariate effects from 0), which is what mm.nlme starts from.
# The Python arguments of each case (model, fixed, random, method, start) are written into
# the JSON next to the R results, so the test reads the case from one place.
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/nlmecheck"
dir.create(file.path(here, "data"), showWarnings = FALSE)
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500, maxIter = 500,
                     pnlsMaxIter = 50, returnObject = TRUE)
tight50 <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500, maxIter = 50,
                       pnlsMaxIter = 50, returnObject = TRUE)

summarise <- function(fit) {
  s <- summary(fit)
  # several grouping levels (case 21): the innermost level's random effects and coef
  # (reStruct lists the levels innermost first, ranef outermost first)
  inner <- length(fit$modelStruct$reStruct)
  vc <- as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]])) * fit$sigma^2
  cors <- cov2cor(vc)
  re <- ranef(fit)
  if (!is.data.frame(re)) re <- re[[length(re)]]
  cf <- coef(fit)
  ll <- logLik(fit)
  list(
    logLik = as.numeric(ll), AIC = AIC(fit), BIC = BIC(fit), df = attr(ll, "df"),
    nobs = as.integer(fit$dims$N), ngroups = as.integer(fit$dims$ngrps[[1]]),
    re_sd_levels = lapply(as.list(fit$modelStruct$reStruct),
                          function(pd) sqrt(diag(as.matrix(pdMatrix(pd)))) * fit$sigma),
    fixef = as.numeric(fixef(fit)), fixef_names = names(fixef(fit)),
    se = as.numeric(sqrt(diag(vcov(fit)))),
    tTable = list(value = unname(s$tTable[, 1]), se = unname(s$tTable[, 2]),
                  df = unname(s$tTable[, 3]), t = unname(s$tTable[, 4]),
                  p = unname(s$tTable[, 5])),
    sigma = fit$sigma, re_sd = I(as.numeric(sqrt(diag(vc)))), re_names = I(colnames(vc)),
    re_cor = unname(cors[lower.tri(cors)]),
    ranef = lapply(as.list(re), as.numeric), ranef_groups = rownames(re),
    coef = lapply(as.list(cf), as.numeric), coef_groups = rownames(cf),
    fitted0 = as.numeric(fitted(fit, level = 0)),
    fitted1 = as.numeric(fitted(fit, level = inner)),
    resid1 = as.numeric(resid(fit, level = inner)),
    numIter = fit$numIter,
    summary_text = paste(capture.output(print(s)), collapse = "\n"))
}

cases <- list()
fits <- list()
# fit one case: `args` are nlme()'s arguments (without control); `py` the Python side's
# `control`: the "converged" control; cases nlme cannot converge (a singular covariance:
# each LME step ends at nlminb's evaluation limit) get maxIter = 50 instead of 500 (the
# log-likelihood is then flat to the printed digits from 5 to 50 iterations)
fit_case <- function(name, data, args, py, newdata = NULL, initial = NULL, control = tight) {
  write.csv(data, file.path(here, "data", paste0(name, ".csv")), row.names = FALSE,
            na = "")
  args$data <- data
  warned <- list(default = character(0), converged = character(0))
  catch <- function(which, expr) withCallingHandlers(expr, warning = function(w) {
    warned[[which]] <<- unique(c(warned[[which]], conditionMessage(w)))
    invokeRestart("muffleWarning")
  })
  fit <- catch("default", do.call(nlme, args))
  fit_t <- catch("converged", do.call(nlme, c(args, list(control = control))))
  # CPU per fit: the mean of 5 fits (1 fit when one takes more than 2 s)
  cpu1 <- function(ctl) system.time(suppressWarnings(do.call(nlme, c(args, ctl))))
  per_fit <- function(ctl) {
    first <- cpu1(ctl)
    if (first[["elapsed"]] > 2) return(first)
    (first + Reduce(`+`, lapply(1:4, function(i) cpu1(ctl)))) / 5
  }
  cpu <- per_fit(list())
  cpu_t <- per_fit(list(control = control))
  out <- list(py = py, default = summarise(fit), converged = summarise(fit_t),
              warnings = warned,
              cpu_default = unname(cpu["user.self"] + cpu["sys.self"]),
              cpu_converged = unname(cpu_t["user.self"] + cpu_t["sys.self"]))
  if (!is.null(newdata)) {
    pr <- predict(fit_t, newdata = newdata, level = 0:1)  # one grouping level
    out$predict <- list(newdata = newdata, level0 = as.numeric(pr[[2]]),
                        level1 = as.numeric(pr[[3]]))
  }
  if (!is.null(initial)) out$getInitial <- initial
  cases[[name]] <<- out
  fits[[name]] <<- list(default = fit, converged = fit_t)
  invisible(fit_t)
}
gi <- function(formula, data) as.list(getInitial(formula, data = data))
labels <- function(m) sprintf("g%02d", seq_len(m))

# ---------------------------------------------------------------------- 1. SSmicmen
# Michaelis-Menten rate curves (Puromycin-like design, duplicated concentrations), a random
# maximum rate per group.
set.seed(101)
m <- 12
conc <- rep(c(0.02, 0.06, 0.11, 0.22, 0.56, 1.10), each = 2)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Vm <- 200 + rnorm(1, 0, 25)
  data.frame(g = labels(m)[i], conc = conc,
             rate = Vm * conc / (0.06 + conc) + rnorm(length(conc), 0, 8))
}))
st <- gi(rate ~ SSmicmen(conc, Vm, K), d)
fit_case("micmen", d,
         list(model = rate ~ SSmicmen(conc, Vm, K), fixed = Vm + K ~ 1, random = Vm ~ 1 | g,
              start = unlist(st)),
         py = list(model = "rate ~ SSmicmen(conc, Vm, K)", fixed = "Vm + K ~ 1",
                   random = "Vm ~ 1 | g", method = "ML"),
         newdata = data.frame(conc = c(0.01, 0.3, 2.0), g = c("g01", "g05", "g12")),
         initial = st)

# -------------------------------------------------------------------- 2. SSgompertz
set.seed(202)
m <- 15
tt <- 1:10
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Asym <- 100 + rnorm(1, 0, 10)
  data.frame(g = labels(m)[i], t = tt,
             y = Asym * exp(-3 * 0.7^tt) + rnorm(length(tt), 0, 2))
}))
st <- gi(y ~ SSgompertz(t, Asym, b2, b3), d)
fit_case("gompertz", d,
         list(model = y ~ SSgompertz(t, Asym, b2, b3), fixed = Asym + b2 + b3 ~ 1,
              random = Asym ~ 1 | g, start = unlist(st)),
         py = list(model = "y ~ SSgompertz(t, Asym, b2, b3)", fixed = "Asym + b2 + b3 ~ 1",
                   random = "Asym ~ 1 | g", method = "ML"),
         newdata = data.frame(t = c(0.5, 4, 15), g = c("g02", "g09", "g15")),
         initial = st)

# ----------------------------------------------------- 3. SSfpl, pdDiag with two
set.seed(303)
m <- 14
xx <- 0:10
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  B <- 60 + rnorm(1, 0, 6); xmid <- 5 + rnorm(1, 0, 0.6)
  data.frame(g = labels(m)[i], x = xx,
             y = 10 + (B - 10) / (1 + exp((xmid - xx) / 1.1)) + rnorm(length(xx), 0, 1.5))
}))
st <- gi(y ~ SSfpl(x, A, B, xmid, scal), d)
fit_case("fpl_diag", d,
         list(model = y ~ SSfpl(x, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
              random = pdDiag(B + xmid ~ 1), groups = ~g, start = unlist(st)),
         py = list(model = "y ~ SSfpl(x, A, B, xmid, scal)", fixed = "A + B + xmid + scal ~ 1",
                   random = "pdDiag(B + xmid ~ 1) | g", method = "ML"),
         newdata = data.frame(x = c(-1, 4.5, 12), g = c("g01", "g07", "g14")),
         initial = st)

# ------------------------------------------------- 4. SSbiexp, general 2 x 2 covariance
set.seed(404)
m <- 10
times <- c(0.25, 0.5, 0.75, 1, 1.25, 2, 3, 4, 5, 6, 8)
L <- t(chol(matrix(c(0.3^2, 0.5 * 0.3 * 0.15, 0.5 * 0.3 * 0.15, 0.15^2), 2)))
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  b <- as.numeric(L %*% rnorm(2))
  A1 <- 3 + b[1]; lrc1 <- 1 + b[2]
  mu <- A1 * exp(-exp(lrc1) * times) + 0.6 * exp(-exp(-1.3) * times)
  data.frame(g = labels(m)[i], time = times, conc = mu * exp(rnorm(length(times), 0, 0.04)))
}))
st <- gi(conc ~ SSbiexp(time, A1, lrc1, A2, lrc2), d)
fit_case("biexp", d,
         list(model = conc ~ SSbiexp(time, A1, lrc1, A2, lrc2),
              fixed = A1 + lrc1 + A2 + lrc2 ~ 1, random = A1 + lrc1 ~ 1 | g,
              start = unlist(st)),
         py = list(model = "conc ~ SSbiexp(time, A1, lrc1, A2, lrc2)",
                   fixed = "A1 + lrc1 + A2 + lrc2 ~ 1", random = "A1 + lrc1 ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(time = c(0.1, 1.5, 10), g = c("g01", "g04", "g10")),
         initial = st)

# ------------------------------------ 5. an expression with a covariate inside the model
set.seed(505)
m <- 16
tt <- c(0.5, 1, 2, 3, 4, 6, 8, 12)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  dose <- c(1, 2, 3, 4)[(i - 1) %% 4 + 1]
  b0 <- 2 + rnorm(1, 0, 0.4)
  data.frame(g = labels(m)[i], dose = dose, t = tt,
             y = (b0 + 1.5 * dose) * exp(-0.25 * tt) + rnorm(length(tt), 0, 0.1))
}))
fit_case("expression_covariate", d,
         list(model = y ~ (b0 + b1 * dose) * exp(-k * t), fixed = b0 + b1 + k ~ 1,
              random = b0 ~ 1 | g, start = c(b0 = 1, b1 = 1, k = 0.5)),
         py = list(model = "y ~ (b0 + b1 * dose) * exp(-k * t)", fixed = "b0 + b1 + k ~ 1",
                   random = "b0 ~ 1 | g", method = "ML",
                   start = list(b0 = 1, b1 = 1, k = 0.5)),
         newdata = data.frame(t = c(0, 5, 20), dose = c(2.5, 1, 4), g = c("g03", "g08", "g16")))

# -------------------- 6./7. a continuous covariate on the asymptote (ML, REML); anova
set.seed(606)
m <- 20
ages <- c(118, 484, 664, 1004, 1231, 1372, 1582)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  x <- round(runif(1, -2, 2), 2)
  Asym <- 190 + 15 * x + rnorm(1, 0, 20)
  data.frame(g = labels(m)[i], x = x, age = ages,
             size = Asym / (1 + exp((720 - ages) / 340)) + rnorm(length(ages), 0, 6))
}))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
start_x <- c(st$Asym, 0, st$xmid, st$scal)
nd <- data.frame(age = c(50, 800, 2000), x = c(-1.5, 0.3, 1.9), g = c("g01", "g10", "g20"))
fit_case("asym_on_x", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ x, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = start_x),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ x", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"),
         newdata = nd, initial = st)
fit_case("asym_on_x_reml", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ x, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = start_x, method = "REML"),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ x", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "REML"),
         newdata = nd)
fit_case("asym_on_x_null", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML"))

# ------------------------------------ 8. a factor covariate on two parameters; anova
set.seed(808)
m <- 18
ages <- c(100, 300, 500, 700, 900, 1200, 1500, 1800)
trts <- c("ctl", "hi", "lo")
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  trt <- trts[(i - 1) %% 3 + 1]
  Asym <- c(ctl = 150, hi = 200, lo = 120)[[trt]] + rnorm(1, 0, 12)
  xmid <- c(ctl = 700, hi = 650, lo = 800)[[trt]]
  data.frame(g = labels(m)[i], trt = trt, age = ages,
             size = Asym / (1 + exp((xmid - ages) / 300)) + rnorm(length(ages), 0, 4))
}))
d$trt <- factor(d$trt)
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
start_f <- c(st$Asym, 0, 0, st$xmid, 0, 0, st$scal)
fit_case("factor_two", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym + xmid ~ trt, scal ~ 1), random = Asym ~ 1 | g,
              start = start_f),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym + xmid ~ trt", "scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(age = c(50, 800, 2500), trt = c("hi", "ctl", "lo"),
                              g = c("g02", "g04", "g18")),
         initial = st)
fit_case("factor_one", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ trt, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, 0, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ trt", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"))

# ------------------------ 9. three random effects with a general covariance; anova
set.seed(909)
m <- 30
ages <- c(100, 250, 400, 600, 800, 1000, 1300, 1600)
sds <- c(20, 50, 30)
R <- matrix(c(1, 0.5, -0.3, 0.5, 1, 0.2, -0.3, 0.2, 1), 3)
L <- t(chol(diag(sds) %*% R %*% diag(sds)))
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  b <- as.numeric(L %*% rnorm(3))
  data.frame(g = labels(m)[i], age = ages,
             size = (190 + b[1]) / (1 + exp(((720 + b[2]) - ages) / (340 + b[3]))) +
               rnorm(length(ages), 0, 3))
}))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("three_general", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym + xmid + scal ~ 1 | g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym + xmid + scal ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(age = c(0, 700, 3000), g = c("g01", "g15", "g30")),
         initial = st)
fit_case("three_diag", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = pdDiag(Asym + xmid + scal ~ 1), groups = ~g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1",
                   random = "pdDiag(Asym + xmid + scal ~ 1) | g", method = "ML"))

# -------------- 10. unbalanced groups (2 to 12 observations), SSasymp, random Asym + R0
set.seed(1010)
sizes <- c(2, 12, 5, 9, 3, 12, 7, 4, 10, 6, 11, 8)
m <- length(sizes)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  age <- sort(sample(seq(2, 30, by = 2), sizes[i]))
  Asym <- 60 + rnorm(1, 0, 6); R0 <- -8 + rnorm(1, 0, 2)
  data.frame(g = labels(m)[i], age = age,
             height = Asym + (R0 - Asym) * exp(-exp(-2.5) * age) + rnorm(length(age), 0, 1))
}))
st <- gi(height ~ SSasymp(age, Asym, R0, lrc), d)
fit_case("unbalanced", d,
         list(model = height ~ SSasymp(age, Asym, R0, lrc), fixed = Asym + R0 + lrc ~ 1,
              random = Asym + R0 ~ 1 | g, start = unlist(st)),
         py = list(model = "height ~ SSasymp(age, Asym, R0, lrc)",
                   fixed = "Asym + R0 + lrc ~ 1", random = "Asym + R0 ~ 1 | g", method = "ML"),
         newdata = data.frame(age = c(1, 20, 45), g = c("g01", "g05", "g12")),
         initial = st)

# -------- 11. missing values: response, covariate and group (4 rows dropped), and in an
# unused column (nothing dropped for it); nlme needs na.action = na.omit
set.seed(1111)
m <- 10
ages <- c(118, 484, 664, 1004, 1231, 1372, 1582)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Asym <- 190 + rnorm(1, 0, 25)
  data.frame(g = labels(m)[i], age = ages,
             size = Asym / (1 + exp((720 - ages) / 340)) + rnorm(length(ages), 0, 6),
             note = round(runif(length(ages)), 3))
}))
d$size[c(4, 30)] <- NA
d$age[c(11)] <- NA
d$g[c(52)] <- NA
d$note[c(2, 3, 40)] <- NA
dd <- na.omit(d[, c("g", "age", "size")])
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), dd)
fit_case("missing", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | g, start = unlist(st), na.action = na.omit),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML",
                   n_dropped = sum(!complete.cases(d[, c("g", "age", "size")]))),
         newdata = data.frame(age = c(300, 900), g = c("g01", "g10")),
         initial = st)

# --------- 12. a numeric grouping column (integer ids, not 1..m; numeric and text orders
# differ), SSasympOff
set.seed(1212)
ids <- c(7, 23, 101, 5, 350, 42, 9, 64)
m <- length(ids)
conc <- c(95, 175, 250, 350, 500, 675, 1000)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Asym <- 32 + rnorm(1, 0, 5)
  data.frame(id = ids[i], conc = conc,
             uptake = Asym * (1 - exp(-exp(-4.5) * (conc - 50))) + rnorm(length(conc), 0, 1.2))
}))
st <- gi(uptake ~ SSasympOff(conc, Asym, lrc, c0), d)
fit_case("numeric_group", d,
         list(model = uptake ~ SSasympOff(conc, Asym, lrc, c0), fixed = Asym + lrc + c0 ~ 1,
              random = Asym ~ 1 | id, start = unlist(st)),
         py = list(model = "uptake ~ SSasympOff(conc, Asym, lrc, c0)",
                   fixed = "Asym + lrc + c0 ~ 1", random = "Asym ~ 1 | id", method = "ML"),
         newdata = data.frame(conc = c(60, 400, 1500), id = c(5, 101, 350)),
         initial = st)

# ----------- 13. rows shuffled (the self-start must sort x), logistic with random Asym
set.seed(1313)
m <- 9
ages <- c(100, 250, 400, 550, 700, 900, 1100, 1400)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Asym <- 150 + rnorm(1, 0, 15)
  data.frame(g = labels(m)[i], age = ages,
             size = Asym / (1 + exp((600 - ages) / 250)) + rnorm(length(ages), 0, 4))
}))
d <- d[sample(nrow(d)), ]
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("shuffled", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML"),
         newdata = data.frame(age = c(10, 600, 2000), g = c("g09", "g01", "g05")),
         initial = st)

# ------- 14. fixed formulas and random effects listed in another order than the model's
# arguments (scal first), on the data of case 9
d <- read.csv(file.path(here, "data", "three_general.csv"))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("reordered", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(scal ~ 1, Asym + xmid ~ 1), random = scal + Asym ~ 1 | g,
              start = c(st$scal, st$Asym, st$xmid)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("scal ~ 1", "Asym + xmid ~ 1"), random = "scal + Asym ~ 1 | g",
                   method = "ML", start = list(scal = st$scal, Asym = st$Asym, xmid = st$xmid)),
         newdata = data.frame(age = c(0, 700, 3000), g = c("g01", "g15", "g30")))

# ------- 15. a transformed covariate (log(x + 3)) and a factor without intercept
d <- read.csv(file.path(here, "data", "asym_on_x.csv"))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("log_covariate", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ log(x + 3), xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ log(x + 3)", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(age = c(50, 800, 2000), x = c(-1.5, 0.3, 1.9),
                              g = c("g01", "g10", "g20")))
d <- read.csv(file.path(here, "data", "factor_two.csv"), stringsAsFactors = TRUE)
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("factor_no_intercept", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ trt - 1, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, st$Asym, st$Asym, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ trt - 1", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML",
                   start = c(st$Asym, st$Asym, st$Asym, st$xmid, st$scal)),
         newdata = data.frame(age = c(50, 800), trt = c("lo", "lo"), g = c("g03", "g06")))

# ------- 16. covariates varying within groups (each group measured under both lights and
# at its own temperatures): nlme's denominator df put such effects at the residual stratum
set.seed(1616)
m <- 12
tt <- c(1, 2, 4, 6, 8, 12)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Asym <- 50 + rnorm(1, 0, 5)
  light <- rep(c("dim", "lit"), each = length(tt))
  temp <- round(rnorm(2 * length(tt), 20, 3), 1)
  t2 <- rep(tt, 2)
  A <- Asym + 8 * (light == "lit") + 0.5 * (temp - 20)
  data.frame(g = labels(m)[i], light = light, temp = temp, t = t2,
             y = A + (5 - A) * exp(-exp(-1.6) * t2) + rnorm(length(t2), 0, 1))
}))
d$light <- factor(d$light)
st <- gi(y ~ SSasymp(t, Asym, R0, lrc), d)
fit_case("within_covariates", d,
         list(model = y ~ SSasymp(t, Asym, R0, lrc), fixed = list(Asym ~ light + temp, R0 + lrc ~ 1),
              random = Asym ~ 1 | g, start = c(st$Asym, 0, 0, st$R0, st$lrc)),
         py = list(model = "y ~ SSasymp(t, Asym, R0, lrc)",
                   fixed = c("Asym ~ light + temp", "R0 + lrc ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(t = c(0.5, 5, 30), light = c("dim", "lit", "lit"),
                              temp = c(15, 20, 25), g = c("g01", "g06", "g12")),
         initial = st)

# ------- 17. varPower() on a model that is not in the tests (SSmicmen, sd ~ fitted^0.5)
set.seed(1717)
m <- 12
conc <- rep(c(0.02, 0.06, 0.11, 0.22, 0.56, 1.10), each = 2)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  Vm <- 200 + rnorm(1, 0, 25)
  mu <- Vm * conc / (0.06 + conc)
  data.frame(g = labels(m)[i], conc = conc, rate = mu + rnorm(length(conc), 0, 0.8 * sqrt(mu)))
}))
st <- gi(rate ~ SSmicmen(conc, Vm, K), d)
fit_case("micmen_varpower", d,
         list(model = rate ~ SSmicmen(conc, Vm, K), fixed = Vm + K ~ 1, random = Vm ~ 1 | g,
              weights = varPower(), start = unlist(st)),
         py = list(model = "rate ~ SSmicmen(conc, Vm, K)", fixed = "Vm + K ~ 1",
                   random = "Vm ~ 1 | g", method = "ML", weights = "varPower"),
         newdata = data.frame(conc = c(0.01, 0.3, 2.0), g = c("g01", "g05", "g12")),
         initial = st)
cases$micmen_varpower$converged$varPower <- as.numeric(
  coef(fits$micmen_varpower$converged$modelStruct$varStruct, unconstrained = FALSE))
cases$micmen_varpower$default$varPower <- as.numeric(
  coef(fits$micmen_varpower$default$modelStruct$varStruct, unconstrained = FALSE))

# ------- 18. a group with a single observation and missing values in a factor covariate
set.seed(1818)
sizes <- c(1, 7, 7, 2, 7, 6, 7, 7, 5, 7)
m <- length(sizes)
ages <- c(118, 484, 664, 1004, 1231, 1372, 1582)
d <- do.call(rbind, lapply(seq_len(m), function(i) {
  trt <- c("a", "b")[(i - 1) %% 2 + 1]
  Asym <- c(a = 170, b = 210)[[trt]] + rnorm(1, 0, 20)
  a <- sort(sample(ages, sizes[i]))
  data.frame(g = labels(m)[i], trt = trt, age = a,
             size = Asym / (1 + exp((720 - a) / 340)) + rnorm(length(a), 0, 6))
}))
d$trt[c(20, 45)] <- NA
d$trt <- factor(d$trt)
dd <- na.omit(d)
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), dd)
fit_case("single_obs_group", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ trt, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, 0, st$xmid, st$scal), na.action = na.omit),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ trt", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML", n_dropped = sum(!complete.cases(d))),
         newdata = data.frame(age = c(300, 900), trt = c("a", "b"), g = c("g01", "g04")),
         initial = st)

# ------- 19. no variation between groups: the random effect's variance at its boundary
set.seed(1919)
m <- 9
ages <- c(100, 250, 400, 550, 700, 900, 1100, 1400)
d <- do.call(rbind, lapply(seq_len(m), function(i)
  data.frame(g = labels(m)[i], age = ages,
             size = 150 / (1 + exp((600 - ages) / 250)) + rnorm(length(ages), 0, 4))))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("boundary", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML"),
         newdata = data.frame(age = c(10, 600, 2000), g = c("g09", "g01", "g05")),
         initial = st)

# ------- 20. varPower() with REML (nlme fits it; mm.nlme takes varPower with ML only)
d <- read.csv(file.path(here, "data", "micmen_varpower.csv"))
st <- gi(rate ~ SSmicmen(conc, Vm, K), d)
fit_case("micmen_varpower_reml", d,
         list(model = rate ~ SSmicmen(conc, Vm, K), fixed = Vm + K ~ 1, random = Vm ~ 1 | g,
              weights = varPower(), start = unlist(st), method = "REML"),
         py = list(model = "rate ~ SSmicmen(conc, Vm, K)", fixed = "Vm + K ~ 1",
                   random = "Vm ~ 1 | g", method = "REML", weights = "varPower"))
cases$micmen_varpower_reml$converged$varPower <- as.numeric(
  coef(fits$micmen_varpower_reml$converged$modelStruct$varStruct, unconstrained = FALSE))

# ------- 21. nested grouping (plots within sites): nlme's multilevel random effects
set.seed(2121)
ages <- c(100, 300, 500, 700, 900, 1200, 1500)
d <- do.call(rbind, lapply(1:4, function(s) {
  site_eff <- rnorm(1, 0, 15)
  do.call(rbind, lapply(1:5, function(k) {
    Asym <- 180 + site_eff + rnorm(1, 0, 10)
    data.frame(site = paste0("s", s), plot = paste0("p", k), age = ages,
               size = Asym / (1 + exp((700 - ages) / 300)) + rnorm(length(ages), 0, 4))
  }))
}))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("nested_groups", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | site/plot, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | site/plot",
                   method = "ML"))

# ------- 22. REML with three random effects (general covariance), data of case 9
d <- read.csv(file.path(here, "data", "three_general.csv"))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("three_general_reml", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym + xmid + scal ~ 1 | g, start = unlist(st), method = "REML"),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym + xmid + scal ~ 1 | g",
                   method = "REML"),
         newdata = data.frame(age = c(0, 700, 3000), g = c("g01", "g15", "g30")))

# ------- 23. a random effect the data do not support (xmid does not vary between groups in
# case 6's data): a singular 2 x 2 covariance (correlation at +-1)
d <- read.csv(file.path(here, "data", "asym_on_x.csv"))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("singular_2x2", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ x, xmid + scal ~ 1), random = Asym + xmid ~ 1 | g,
              start = c(st$Asym, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ x", "xmid + scal ~ 1"), random = "Asym + xmid ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(age = c(50, 800, 2000), x = c(-1.5, 0.3, 1.9),
                              g = c("g01", "g10", "g20")), control = tight50)

# ------- 24./25. all four SSfpl parameters random (data of case 3, where only B and xmid
# vary): diagonal (two variances at 0) and general 4 x 4
d <- read.csv(file.path(here, "data", "fpl_diag.csv"))
st <- gi(y ~ SSfpl(x, A, B, xmid, scal), d)
fit_case("fpl_diag4", d,
         list(model = y ~ SSfpl(x, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
              random = pdDiag(A + B + xmid + scal ~ 1), groups = ~g, start = unlist(st)),
         py = list(model = "y ~ SSfpl(x, A, B, xmid, scal)", fixed = "A + B + xmid + scal ~ 1",
                   random = "pdDiag(A + B + xmid + scal ~ 1) | g", method = "ML"),
         newdata = data.frame(x = c(-1, 4.5, 12), g = c("g01", "g07", "g14")),
         control = tight50)
fit_case("fpl_general4", d,
         list(model = y ~ SSfpl(x, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
              random = A + B + xmid + scal ~ 1 | g, start = unlist(st)),
         py = list(model = "y ~ SSfpl(x, A, B, xmid, scal)", fixed = "A + B + xmid + scal ~ 1",
                   random = "A + B + xmid + scal ~ 1 | g", method = "ML"),
         newdata = data.frame(x = c(-1, 4.5, 12), g = c("g01", "g07", "g14")),
         control = tight50)

# ------- 26. a transformed response: log(size) ~ log(logistic) (case 13's data)
d <- read.csv(file.path(here, "data", "shuffled.csv"))
fit_case("log_response", d,
         list(model = log(size) ~ log(Asym / (1 + exp((xmid - age) / scal))),
              fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | g,
              start = c(Asym = 150, xmid = 600, scal = 250)),
         py = list(model = "log(size) ~ log(Asym/(1 + exp((xmid - age)/scal)))",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML",
                   start = list(Asym = 150, xmid = 600, scal = 250)))

# ------- 27. a self-start on a transformed covariate: SSlogis(log(age), ...)
st <- gi(size ~ SSlogis(log(age), Asym, xmid, scal), d)
fit_case("selfstart_log_input", d,
         list(model = size ~ SSlogis(log(age), Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | g, start = unlist(st)),
         py = list(model = "size ~ SSlogis(log(age), Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | g", method = "ML"),
         newdata = data.frame(age = c(10, 600, 2000), g = c("g09", "g01", "g05")),
         initial = st)

# ------- 28./29. factor() of an integer code, and an interaction of a factor and a
# continuous covariate, on the asymptote
d <- read.csv(file.path(here, "data", "factor_two.csv"))
d$code <- c(ctl = 1L, hi = 2L, lo = 3L)[d$trt]
d$trt <- NULL
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("factor_call", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ factor(code), xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, 0, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ factor(code)", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"))
# (no predict: nlme's predict.nlme fails on new rows here, "variable 'factor(code)' is not a
# factor", in getParsNlme)
d <- read.csv(file.path(here, "data", "asym_on_x.csv"))
d$trt <- factor(ifelse(as.integer(substr(d$g, 2, 3)) %% 2 == 0, "a", "b"))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("interaction", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ trt * x, xmid + scal ~ 1), random = Asym ~ 1 | g,
              start = c(st$Asym, 0, 0, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ trt * x", "xmid + scal ~ 1"), random = "Asym ~ 1 | g",
                   method = "ML"),
         newdata = data.frame(age = c(50, 800, 2000), x = c(-1.5, 0.3, 1.9),
                              trt = c("a", "b", "b"), g = c("g02", "g11", "g20")))

# ------------------------------------------------ likelihood-ratio tests (nested pairs)
lrt <- function(a, b, which) {
  an <- anova(fits[[a]][[which]], fits[[b]][[which]])
  list(models = c(a, b), df = an$df, logLik = an$logLik, AIC = an$AIC, BIC = an$BIC,
       L.Ratio = an$L.Ratio[2], p = an$`p-value`[2])
}
anovas <- list()
for (pair in list(c("asym_on_x_null", "asym_on_x"), c("factor_one", "factor_two"),
                  c("three_diag", "three_general"))) {
  anovas[[paste(pair, collapse = "_vs_")]] <- list(default = lrt(pair[1], pair[2], "default"),
                                                   converged = lrt(pair[1], pair[2], "converged"))
}

# ------------------------------------------------------ starts away from the optimum
# The same models from other starting values (nlme's defaults and tight control): where
# nlme ends depends on the start (the random-effect variance can collapse to 0 and stay).
poor <- list()
poor_start <- function(case, model, fixed, random, start) {
  d <- read.csv(file.path(here, "data", paste0(case, ".csv")))
  one <- function(ctl) {
    f <- tryCatch(suppressWarnings(nlme(model, data = d, fixed = fixed, random = random,
                                        start = start, control = ctl)),
                  error = function(e) conditionMessage(e))
    if (is.character(f)) return(list(error = f))
    list(logLik = as.numeric(logLik(f)), fixef = as.numeric(fixef(f)),
         re_sd = I(as.numeric(sqrt(diag(as.matrix(pdMatrix(f$modelStruct$reStruct[[1]])))) *
                   f$sigma)))
  }
  poor[[length(poor) + 1]] <<- list(case = case, start = as.list(start),
                                    default = one(nlmeControl()), converged = one(tight))
}
for (st in list(c(b0 = 2, b1 = 1.5, k = 1), c(b0 = 2, b1 = 1.5, k = 1.5),
                c(b0 = 5, b1 = 0.1, k = 1.5), c(b0 = 10, b1 = 0.1, k = 1.5),
                c(b0 = 0.1, b1 = 5, k = 0.05), c(b0 = -2, b1 = 3, k = 0.1)))
  poor_start("expression_covariate", y ~ (b0 + b1 * dose) * exp(-k * t), b0 + b1 + k ~ 1,
             b0 ~ 1 | g, st)
for (st in list(c(Asym = 100, xmid = 300, scal = 100), c(Asym = 300, xmid = 1200, scal = 600),
                c(Asym = 190, xmid = 720, scal = 50)))
  poor_start("three_general", size ~ SSlogis(age, Asym, xmid, scal), Asym + xmid + scal ~ 1,
             Asym + xmid + scal ~ 1 | g, st)

out <- list(cases = cases, anova = anovas, poor_starts = poor,
            versions = list(R = R.version.string, nlme = as.character(packageVersion("nlme"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(here, "nlmecheck_reference.json"))
