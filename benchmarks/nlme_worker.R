# Times nlme::nlme on the nonlinear cases of tests/reference/nlme/cases.py (same models,
# nlme's default control; self-starting models start from getInitial(), timed with it).
# usage: Rscript benchmarks/nlme_worker.R <data dir> <repeats> [<batch>]
# Prints one JSON line: {case: {"times": [...], "cpu": [...], "loglik": ..., "converged":
# {the same with tolerance = 1e-9, pnlsTol = 1e-8}}} (elapsed and user + system seconds per
# fit: each repeat times <batch> fits back to back and divides by <batch>, since
# system.time counts whole milliseconds and the small fits take 10-20 of them).
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; repeats <- as.integer(args[2])
batch <- if (length(args) >= 3) as.integer(args[3]) else 1L
load <- function(name) read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = TRUE)
Orange <- load("Orange"); Orange$Tree <- factor(Orange$Tree)
Theoph <- load("Theoph"); Theoph$Subject <- factor(Theoph$Subject)
Soybean <- load("Soybean")
Loblolly <- load("Loblolly"); Loblolly$Seed <- factor(Loblolly$Seed)
CO2 <- load("CO2")
cases <- list(
  orange_ml = quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange,
    fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree,
    start = getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange))),
  orange_reml = quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange,
    fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree, method = "REML",
    start = getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange))),
  orange_expression = quote(nlme(circumference ~ Asym/(1 + exp((xmid - age)/scal)),
    data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree,
    start = c(Asym = 170, xmid = 700, scal = 350))),
  orange_two_diag = quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange,
    fixed = Asym + xmid + scal ~ 1, random = pdDiag(Asym + xmid ~ 1), groups = ~Tree,
    start = getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange))),
  theoph = quote(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,
    fixed = lKe + lKa + lCl ~ 1, random = lKa + lCl ~ 1 | Subject,
    start = getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph))),
  theoph_diag = quote(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,
    fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~Subject,
    start = getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph))),
  soybean_diag = quote(nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean,
    fixed = Asym + xmid + scal ~ 1, random = pdDiag(Asym + xmid + scal ~ 1), groups = ~Plot,
    start = getInitial(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean))),
  soybean_variety_varpower = quote(nlme(weight ~ SSlogis(Time, Asym, xmid, scal),
    data = Soybean, fixed = Asym + xmid + scal ~ Variety,
    random = pdDiag(Asym + xmid + scal ~ 1), groups = ~Plot, weights = varPower(),
    start = c(18.9634910694249, 0, 55.1406736162262, 0, 8.5520279768786, 0))),
  loblolly = quote(nlme(height ~ SSasymp(age, Asym, R0, lrc), data = Loblolly,
    fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1 | Seed,
    start = c(Asym = 103, R0 = -8.5, lrc = -3.3))),
  co2_type_treatment = quote(nlme(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2,
    fixed = list(Asym ~ Type * Treatment, lrc + c0 ~ 1), random = Asym ~ 1 | Plant,
    start = {s <- getInitial(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2);
             c(s[1], 0, 0, 0, s[2], s[3])})),
  co2 = quote(nlme(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2,
    fixed = Asym + lrc + c0 ~ 1, random = Asym + lrc ~ 1 | Plant,
    start = getInitial(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2))))
# nlme run to its fixed point (the accuracy of mm.nlme's default), as in the reference
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msTol = 1e-12, maxIter = 500,
                     pnlsMaxIter = 50, returnObject = TRUE)
timed <- function(call) {
  fit <- suppressWarnings(eval(call))  # warm-up
  st <- replicate(repeats, {
    s <- system.time(for (i in seq_len(batch)) fit <- suppressWarnings(eval(call)))
    c(s[["elapsed"]], s[["user.self"]] + s[["sys.self"]]) / batch})
  list(times = st[1, ], cpu = st[2, ], loglik = as.numeric(logLik(fit)))
}
out <- list()
for (name in names(cases)) {
  out[[name]] <- timed(cases[[name]])
  conv <- cases[[name]]
  conv$control <- quote(tight)
  out[[name]]$converged <- timed(conv)
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
