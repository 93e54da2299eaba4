# Reliability review of mm.nlme on nonlinear mixed models NOT in its other tests (issue 16,
# task nlcheck): R data sets (ChickWeight, Indometh, DNase, Loblolly, Orange) with models,
# covariance structures and starting values of their own.  Run from the repository root:
#   Rscript tests/reference/nlmereview/make_nlmereview.R
# Writes tests/reference/nlmereview/data/<data set>.csv and nlmereview_reference.json.
#
# Each case records mm.nlme's keyword arguments ("py"), nlme's fit at the control written in
# "control" ("reference"), and nlme's fit with its default control from the same start
# ("default", or the error nlme stopped with).  The reference controls:
#   tight: nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, maxIter = 500, msMaxIter = 500,
#          pnlsMaxIter = 50): the Lindstrom-Bates fixed point, which mm.nlme computes;
#   tight7: tight with nlme's default pnlsMaxIter = 7 (ChickWeight);
#   pnls6: tolerance = 1e-7, pnlsTol = 1e-6 (ChickWeight with varPower);
#   pnls:  tolerance = 1e-7, pnlsTol = 1e-7, pnlsMaxIter = 50, minScale = 1e-12 (Indometh,
#          DNase: with tight nlme stops on "step halving factor reduced below minimum in PNLS
#          step"; with its default pnlsTol = 1e-3 it stops where a PNLS step still moves
#          the estimates, 6.9e-3 above the fixed point's logLik for Indometh);
#   default: nlme's defaults (Orange with three general random effects, where tight ends at
#          maxIter).
# "compare" says how tests/results/test_nlme_review.py uses the reference: "agree" (the
# issue's tolerances), "at_least" (our logLik at least nlme's; estimates close) or
# "not_a_fixed_point" (nlme's estimates are no fixed point of the alternation;
# tests/optim/test_nonlinear_review.py).
# ChickWeight: the logistic's alternation has two fixed points (chick 18's random effects
# have two local minima); the reference is nlme's from start Asym = 937, xmid = 35, scal = 11
# (the better one, logLik -2216.986); nlme from getInitial and from other starts stops at
# the other (-2217.51, "default" of those cases) or fails.
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/nlmereview"
dir.create(file.path(here, "data"), showWarnings = FALSE)

write_data <- function(name, d) {
  write.csv(d, file.path(here, "data", paste0(name, ".csv")), row.names = FALSE)
  d
}
as_plain <- function(d, group) {
  d <- as.data.frame(d)
  for (col in names(d)) if (is.factor(d[[col]])) d[[col]] <- as.character(d[[col]])
  d
}
data_sets <- list(
  ChickWeight = write_data("ChickWeight", as_plain(ChickWeight)[, c("weight", "Time", "Chick", "Diet")]),
  Indometh = write_data("Indometh", as_plain(Indometh)),
  DNase = write_data("DNase", within(as_plain(DNase), lconc <- log(conc))),
  Loblolly = write_data("Loblolly", as_plain(Loblolly)),
  Orange = write_data("Orange", as_plain(Orange))
)
# the groups in order of first appearance, as mm.nlme reads them from the CSV
grouped <- function(name, g) {
  d <- data_sets[[name]]
  d[[g]] <- factor(d[[g]], levels = unique(d[[g]]))
  d
}

controls <- list(
  tight = nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, maxIter = 500, msMaxIter = 500,
                      pnlsMaxIter = 50),
  # ChickWeight: with pnlsMaxIter = 50 nlme stops on a failed step halving; with its
  # default 7 it converges
  tight7 = nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, maxIter = 500, msMaxIter = 500),
  # ChickWeight with varPower: tight and pnls stop on a failed step halving (REML pnls at
  # the worse fixed point); at pnlsTol = 1e-6 nlme converges
  pnls6 = nlmeControl(tolerance = 1e-7, pnlsTol = 1e-6),
  pnls = nlmeControl(tolerance = 1e-7, pnlsTol = 1e-7, pnlsMaxIter = 50, minScale = 1e-12,
                     maxIter = 200, msMaxIter = 500),
  default = nlmeControl()
)

summarise <- function(fit) {
  vc <- as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]])) * fit$sigma^2
  sd <- sqrt(diag(vc))
  cors <- cov2cor(vc)
  re <- ranef(fit)
  list(logLik = as.numeric(logLik(fit)), fixef = unname(fixef(fit)),
       se = unname(sqrt(diag(vcov(fit)))), sigma = fit$sigma, re_sd = unname(sd),
       re_cor = if (ncol(vc) > 1) cors[lower.tri(cors)] else numeric(0),
       ranef_groups = rownames(re), ranef = unname(as.matrix(re)),
       power = if (is.null(fit$modelStruct$varStruct)) NULL
               else unname(coef(fit$modelStruct$varStruct)),
       numIter = fit$numIter)
}

run <- function(case, control) {
  args <- c(case$r, list(data = grouped(case$py$data, case$group), control = controls[[control]]))
  fit <- tryCatch(do.call(nlme, args), error = function(e) conditionMessage(e))
  if (is.character(fit)) list(error = fit) else summarise(fit)
}

chick <- list(model = weight ~ SSlogis(Time, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym + xmid ~ 1 | Chick)
chick_py <- list(data = "ChickWeight", model = "weight ~ SSlogis(Time, Asym, xmid, scal)",
                 fixed = "Asym + xmid + scal ~ 1", random = "Asym + xmid ~ 1 | Chick")
chick_start <- c(Asym = 937, xmid = 35, scal = 11)
chick_initial <- getInitial(weight ~ SSlogis(Time, Asym, xmid, scal), data = data_sets$ChickWeight)
with_start <- function(py, start) c(py, list(start = as.list(start)))

cases <- list(
  chick_nlme_start = list(py = with_start(chick_py, chick_start), group = "Chick",
                          r = c(chick, list(start = chick_start)), control = "tight7",
                          compare = "agree"),
  # mm.nlme's self-start (R's getInitial values); nlme from there: "default"
  chick_selfstart = list(py = c(chick_py, list(start = NULL)), group = "Chick",
                         r = c(chick, list(start = chick_initial)), control = "tight7",
                         reference_case = "chick_nlme_start", compare = "agree"),
  chick_start_2000 = list(py = with_start(chick_py, c(Asym = 2000, xmid = 50, scal = 15)),
                          group = "Chick",
                          r = c(chick, list(start = c(Asym = 2000, xmid = 50, scal = 15))),
                          control = "tight7", reference_case = "chick_nlme_start",
                          compare = "agree"),
  chick_start_100 = list(py = with_start(chick_py, c(Asym = 100, xmid = 5, scal = 2)),
                         group = "Chick",
                         r = c(chick, list(start = c(Asym = 100, xmid = 5, scal = 2))),
                         control = "tight7", reference_case = "chick_nlme_start",
                         compare = "agree"),
  indometh = list(
    py = list(data = "Indometh", model = "conc ~ SSbiexp(time, A1, lrc1, A2, lrc2)",
              fixed = "A1 + lrc1 + A2 + lrc2 ~ 1", random = "pdDiag(A1 + lrc1 + A2 ~ 1) | Subject",
              start = list(A1 = 2.8, lrc1 = 0.8, A2 = 0.55, lrc2 = -1.35)),
    group = "Subject",
    r = list(model = conc ~ SSbiexp(time, A1, lrc1, A2, lrc2), fixed = A1 + lrc1 + A2 + lrc2 ~ 1,
             random = pdDiag(A1 + lrc1 + A2 ~ 1), groups = ~Subject,
             start = c(A1 = 2.8, lrc1 = 0.8, A2 = 0.55, lrc2 = -1.35)),
    control = "pnls", compare = "agree"),
  dnase = list(
    py = list(data = "DNase", model = "density ~ SSfpl(lconc, A, B, xmid, scal)",
              fixed = "A + B + xmid + scal ~ 1", random = "pdDiag(A + B ~ 1) | Run",
              start = list(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    group = "Run",
    r = list(model = density ~ SSfpl(lconc, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
             random = pdDiag(A + B ~ 1), groups = ~Run,
             start = c(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    control = "pnls", compare = "agree"),
  loblolly_general3 = list(
    py = list(data = "Loblolly", model = "height ~ SSasymp(age, Asym, R0, lrc)",
              fixed = "Asym + R0 + lrc ~ 1", random = "Asym + R0 + lrc ~ 1 | Seed",
              start = list(Asym = 103, R0 = -8.5, lrc = -3.3)),
    group = "Seed",
    r = list(model = height ~ SSasymp(age, Asym, R0, lrc), fixed = Asym + R0 + lrc ~ 1,
             random = Asym + R0 + lrc ~ 1 | Seed, start = c(Asym = 103, R0 = -8.5, lrc = -3.3)),
    control = "tight", compare = "agree"),
  loblolly_asym_lrc = list(
    py = list(data = "Loblolly", model = "height ~ SSasymp(age, Asym, R0, lrc)",
              fixed = "Asym + R0 + lrc ~ 1", random = "Asym + lrc ~ 1 | Seed",
              start = list(Asym = 103, R0 = -8.5, lrc = -3.3)),
    group = "Seed",
    r = list(model = height ~ SSasymp(age, Asym, R0, lrc), fixed = Asym + R0 + lrc ~ 1,
             random = Asym + lrc ~ 1 | Seed, start = c(Asym = 103, R0 = -8.5, lrc = -3.3)),
    control = "tight", compare = "agree"),
  orange_general3 = list(
    py = list(data = "Orange", model = "circumference ~ SSlogis(age, Asym, xmid, scal)",
              fixed = "Asym + xmid + scal ~ 1", random = "Asym + xmid + scal ~ 1 | Tree",
              start = list(Asym = 192, xmid = 728, scal = 353)),
    group = "Tree",
    r = list(model = circumference ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
             random = Asym + xmid + scal ~ 1 | Tree, start = c(Asym = 192, xmid = 728, scal = 353)),
    control = "default", compare = "at_least"),
  orange_far_start = list(
    py = list(data = "Orange", model = "circumference ~ SSlogis(age, Asym, xmid, scal)",
              fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | Tree",
              start = list(Asym = 600, xmid = 2000, scal = 1000)),
    group = "Tree",
    r = list(model = circumference ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
             random = Asym ~ 1 | Tree, start = c(Asym = 600, xmid = 2000, scal = 1000)),
    control = "tight", compare = "agree"),
  # more structures on the same data, all at the "pnls" control (tight stops on a failed
  # step halving in each); nlme's default fits stop 2e-6 to 9e-3 from these logLiks
  chick_diet = list(
    py = list(data = "ChickWeight", model = "weight ~ SSlogis(Time, Asym, xmid, scal)",
              fixed = list("Asym ~ factor(Diet)", "xmid + scal ~ 1"),
              random = "Asym + xmid ~ 1 | Chick", start = c(285, 0, 0, 0, 11.5, 6.7)),
    group = "Chick",
    r = list(model = weight ~ SSlogis(Time, Asym, xmid, scal),
             fixed = list(Asym ~ factor(Diet), xmid + scal ~ 1),
             random = Asym + xmid ~ 1 | Chick, start = c(285, 0, 0, 0, 11.5, 6.7)),
    control = "pnls", compare = "agree"),
  chick_gompertz = list(
    py = list(data = "ChickWeight", model = "weight ~ SSgompertz(Time, Asym, b2, b3)",
              fixed = "Asym + b2 + b3 ~ 1", random = "Asym + b2 ~ 1 | Chick",
              start = list(Asym = 500, b2 = 4, b3 = 0.95)),
    group = "Chick",
    r = list(model = weight ~ SSgompertz(Time, Asym, b2, b3), fixed = Asym + b2 + b3 ~ 1,
             random = Asym + b2 ~ 1 | Chick, start = c(Asym = 500, b2 = 4, b3 = 0.95)),
    control = "pnls", compare = "agree"),
  indometh_general2 = list(
    py = list(data = "Indometh", model = "conc ~ SSbiexp(time, A1, lrc1, A2, lrc2)",
              fixed = "A1 + lrc1 + A2 + lrc2 ~ 1", random = "A1 + A2 ~ 1 | Subject",
              start = list(A1 = 2.8, lrc1 = 0.8, A2 = 0.55, lrc2 = -1.35)),
    group = "Subject",
    r = list(model = conc ~ SSbiexp(time, A1, lrc1, A2, lrc2), fixed = A1 + lrc1 + A2 + lrc2 ~ 1,
             random = A1 + A2 ~ 1 | Subject, start = c(A1 = 2.8, lrc1 = 0.8, A2 = 0.55, lrc2 = -1.35)),
    control = "pnls", compare = "agree"),
  dnase_general2 = list(
    py = list(data = "DNase", model = "density ~ SSfpl(lconc, A, B, xmid, scal)",
              fixed = "A + B + xmid + scal ~ 1", random = "A + B ~ 1 | Run",
              start = list(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    group = "Run",
    r = list(model = density ~ SSfpl(lconc, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
             random = A + B ~ 1 | Run, start = c(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    control = "pnls", compare = "agree"),
  dnase_diag4 = list(
    py = list(data = "DNase", model = "density ~ SSfpl(lconc, A, B, xmid, scal)",
              fixed = "A + B + xmid + scal ~ 1", random = "pdDiag(A + B + xmid + scal ~ 1) | Run",
              start = list(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    group = "Run",
    r = list(model = density ~ SSfpl(lconc, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
             random = pdDiag(A + B + xmid + scal ~ 1), groups = ~Run,
             start = c(A = -0.0079, B = 2.377, xmid = 1.5, scal = 1.04)),
    control = "pnls", compare = "agree"),
  loblolly_diag3 = list(
    py = list(data = "Loblolly", model = "height ~ SSasymp(age, Asym, R0, lrc)",
              fixed = "Asym + R0 + lrc ~ 1", random = "pdDiag(Asym + R0 + lrc ~ 1) | Seed",
              start = list(Asym = 103, R0 = -8.5, lrc = -3.3)),
    group = "Seed",
    r = list(model = height ~ SSasymp(age, Asym, R0, lrc), fixed = Asym + R0 + lrc ~ 1,
             random = pdDiag(Asym + R0 + lrc ~ 1), groups = ~Seed,
             start = c(Asym = 103, R0 = -8.5, lrc = -3.3)),
    control = "pnls", compare = "agree"),
  orange_diag3 = list(
    py = list(data = "Orange", model = "circumference ~ SSlogis(age, Asym, xmid, scal)",
              fixed = "Asym + xmid + scal ~ 1", random = "pdDiag(Asym + xmid + scal ~ 1) | Tree",
              start = list(Asym = 192, xmid = 728, scal = 353)),
    group = "Tree",
    r = list(model = circumference ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
             random = pdDiag(Asym + xmid + scal ~ 1), groups = ~Tree,
             start = c(Asym = 192, xmid = 728, scal = 353)),
    control = "pnls", compare = "agree"),
  # a far start of dnase_general2: the alternation's warm LME steps stopped at sd(A) = 0
  # (logLik 354.13) before the boundary check; nlme's default fit from here ends at the
  # same curve with A and B swapped (scal < 0; SSfpl is symmetric), so the reference is
  # dnase_general2's
  dnase_general2_far_start = list(
    py = list(data = "DNase", model = "density ~ SSfpl(lconc, A, B, xmid, scal)",
              fixed = "A + B + xmid + scal ~ 1", random = "A + B ~ 1 | Run",
              start = list(A = 0.5, B = 1, xmid = 0, scal = 0.5)),
    group = "Run",
    r = list(model = density ~ SSfpl(lconc, A, B, xmid, scal), fixed = A + B + xmid + scal ~ 1,
             random = A + B ~ 1 | Run, start = c(A = 0.5, B = 1, xmid = 0, scal = 0.5)),
    control = "pnls", reference_case = "dnase_general2", compare = "agree"),
  # with varPower: chick 18's two modes again, and the search of its mode from 0 returns
  # to the worse one under the weights of that fit (hence the mirror start, -u)
  chick_varpower_ml = list(py = c(with_start(chick_py, chick_start), list(weights = "varPower")),
                           group = "Chick",
                           r = c(chick, list(start = chick_start, weights = varPower())),
                           control = "pnls6", compare = "agree"),
  chick_varpower_reml = list(py = c(with_start(chick_py, chick_start),
                                    list(weights = "varPower", method = "REML")),
                             group = "Chick",
                             r = c(chick, list(start = chick_start, weights = varPower(),
                                               method = "REML")),
                             control = "pnls6", compare = "agree"),
  # nlme from this start stops (pnls and default) at logLik 55.748 with sd(lrc1) = 3e-6,
  # above the fixed point's 54.588 (indometh); its point is no fixed point: the LME step at
  # its linearization moves sd(lrc1) away from 0 (nlme's log-sd parametrization stalls
  # there), and the alternation from it returns to 54.588 (tests/optim)
  indometh_start_5 = list(
    py = list(data = "Indometh", model = "conc ~ SSbiexp(time, A1, lrc1, A2, lrc2)",
              fixed = "A1 + lrc1 + A2 + lrc2 ~ 1", random = "pdDiag(A1 + lrc1 + A2 ~ 1) | Subject",
              start = list(A1 = 5, lrc1 = 1.5, A2 = 1, lrc2 = -0.5)),
    group = "Subject",
    r = list(model = conc ~ SSbiexp(time, A1, lrc1, A2, lrc2), fixed = A1 + lrc1 + A2 + lrc2 ~ 1,
             random = pdDiag(A1 + lrc1 + A2 ~ 1), groups = ~Subject,
             start = c(A1 = 5, lrc1 = 1.5, A2 = 1, lrc2 = -0.5)),
    control = "pnls", compare = "not_a_fixed_point")
)

out <- list()
for (name in names(cases)) {
  case <- cases[[name]]
  ref <- if (is.null(case$reference_case)) run(case, case$control) else out[[case$reference_case]]$reference
  tight <- if (case$control == "tight") ref else run(case, "tight")
  out[[name]] <- list(py = case$py, control = case$control, compare = case$compare,
                      reference_case = if (is.null(case$reference_case)) "" else case$reference_case,
                      reference = ref, default = run(case, "default"),
                      tight_error = if (is.null(tight$error)) "" else tight$error)
}
# nlme's default fit of Indometh with its covariance, for the test that it is not a fixed
# point of the alternation (a PNLS step from it still lowers the objective)
ind <- cases$indometh
fit <- do.call(nlme, c(ind$r, list(data = grouped("Indometh", "Subject"))))
out$indometh$default$D <- unname(as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]]))) * fit$sigma^2
writeLines(toJSON(list(nlme_version = as.character(packageVersion("nlme")), R = R.version.string,
                       initial_chick = unname(chick_initial), cases = out),
                  auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
           file.path(here, "nlmereview_reference.json"))
