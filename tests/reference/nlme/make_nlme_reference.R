# Reference values of nonlinear mixed models from nlme::nlme (and stats::getInitial).
# Run from the repository root:  Rscript tests/reference/nlme/make_nlme_reference.R
# Writes tests/reference/nlme/nlme_reference.json.  The data are the CSV copies in
# tests/reference/nlme/data (from ../shared/data); grouping columns become factors with
# sorted levels (the Python side sorts them the same way).
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/nlme"
load <- function(name) read.csv(file.path(here, "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
Orange <- load("Orange"); Orange$Tree <- factor(Orange$Tree)
Theoph <- load("Theoph"); Theoph$Subject <- factor(Theoph$Subject)
Soybean <- load("Soybean")
Loblolly <- load("Loblolly"); Loblolly$Seed <- factor(Loblolly$Seed)
CO2 <- load("CO2")
# nlme's defaults stop the alternation early (tolerance = 1e-5, at most 7 PNLS iterations
# with pnlsTol = 1e-3): its default numbers sit up to ~1e-4 (relative) from the fixed point
# of the Lindstrom-Bates iteration.  Each case is therefore also fitted "converged", with
# tolerances nlme still meets (tighter pnlsTol makes its step halving fail).
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msTol = 1e-12, maxIter = 500,
                     pnlsMaxIter = 50, returnObject = TRUE)

summarise <- function(fit) {
  s <- summary(fit)
  vc <- as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]])) * fit$sigma^2
  sds <- sqrt(diag(vc))
  cors <- cov2cor(vc)
  re <- ranef(fit)
  out <- list(
    logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
    df = attr(logLik(fit), "df"),
    fixef = as.list(fixef(fit)), fixef_names = names(fixef(fit)),
    se = as.numeric(sqrt(diag(vcov(fit)))),
    tTable = list(value = unname(s$tTable[, 1]), se = unname(s$tTable[, 2]),
                  df = unname(s$tTable[, 3]), t = unname(s$tTable[, 4]),
                  p = unname(s$tTable[, 5])),
    sigma = fit$sigma, re_sd = as.list(sds), re_names = colnames(vc),
    re_cor = unname(cors[lower.tri(cors)]),
    ranef = lapply(as.list(re), as.numeric), ranef_groups = rownames(re),
    coef = lapply(as.list(coef(fit)), as.numeric),
    fitted0 = as.numeric(fitted(fit, level = 0)), fitted1 = as.numeric(fitted(fit, level = 1)),
    resid1 = as.numeric(resid(fit, level = 1)),
    numIter = fit$numIter)
  vf <- fit$modelStruct$varStruct
  if (!is.null(vf)) out$varPower <- as.numeric(coef(vf, unconstrained = FALSE))
  out
}

cases <- list()
run <- function(name, expr, data, ...) {
  fit <- eval(expr)
  cases[[name]] <<- summarise(fit)
  fit_t <- suppressWarnings(eval(substitute(update(F, control = tight), list(F = fit))))
  cases[[name]]$converged <<- summarise(fit_t)
  invisible(fit)
}

# Without `start` nlme() fits nlsList() first (a different route to the same fixed point);
# here, as in the Python fits, the self-start's pooled getInitial() values start the fit.
st_orange <- getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange)
st_theoph <- getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph)
st_soy <- getInitial(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean)
st_co2 <- getInitial(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2)
o_ml <- run("orange_ml", quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange,
            fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree, start = st_orange)))
o_reml <- run("orange_reml", quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal),
              data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree,
              method = "REML", start = st_orange)))
o_expr <- run("orange_expression", quote(nlme(circumference ~ Asym/(1 + exp((xmid - age)/scal)),
              data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree,
              start = c(Asym = 170, xmid = 700, scal = 350))))
o_two <- run("orange_two_diag", quote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal),
             data = Orange, fixed = Asym + xmid + scal ~ 1,
             random = pdDiag(Asym + xmid ~ 1), groups = ~Tree, start = st_orange)))
an <- anova(o_ml, o_two)
cases$orange_anova <- list(logLik = an$logLik, df = an$df, L.Ratio = an$L.Ratio[2],
                           p = an$`p-value`[2], AIC = an$AIC, BIC = an$BIC)
newd <- data.frame(age = c(100, 500, 1500, 700), Tree = factor(c("1", "3", "5", "2")))
pr <- predict(o_ml, newdata = newd, level = 0:1)
cases$orange_predict <- list(age = newd$age, Tree = as.character(newd$Tree),
                             level0 = pr$predict.fixed, level1 = pr$predict.Tree)

th <- run("theoph", quote(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,
          fixed = lKe + lKa + lCl ~ 1, random = lKa + lCl ~ 1 | Subject, start = st_theoph)))
th_d <- run("theoph_diag", quote(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph,
            fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1), groups = ~Subject, start = st_theoph)))

soy <- run("soybean_diag", quote(nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean,
           fixed = Asym + xmid + scal ~ 1, random = pdDiag(Asym + xmid + scal ~ 1),
           groups = ~Plot, start = st_soy)))
soy_start <- c(fixef(soy)[1], 0, fixef(soy)[2], 0, fixef(soy)[3], 0)
cases$soybean_variety_start <- as.numeric(soy_start)
soy_v <- run("soybean_variety_varpower", quote(nlme(weight ~ SSlogis(Time, Asym, xmid, scal),
             data = Soybean, fixed = Asym + xmid + scal ~ Variety,
             random = pdDiag(Asym + xmid + scal ~ 1), groups = ~Plot,
             weights = varPower(), start = soy_start)))

lob <- run("loblolly", quote(nlme(height ~ SSasymp(age, Asym, R0, lrc), data = Loblolly,
           fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1 | Seed,
           start = c(Asym = 103, R0 = -8.5, lrc = -3.3))))
co2_tt <- run("co2_type_treatment", quote(nlme(uptake ~ SSasympOff(conc, Asym, lrc, c0),
              data = CO2, fixed = list(Asym ~ Type * Treatment, lrc + c0 ~ 1),
              random = Asym ~ 1 | Plant,
              start = c(st_co2[1], 0, 0, 0, st_co2[2], st_co2[3]))))
co2 <- run("co2", quote(nlme(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2,
           fixed = Asym + lrc + c0 ~ 1, random = Asym + lrc ~ 1 | Plant, start = st_co2)))

# self-start initial values as stats::getInitial computes them
gi <- function(formula, data) as.list(getInitial(formula, data = data))
initial <- list(
  SSlogis = gi(circumference ~ SSlogis(age, Asym, xmid, scal), Orange),
  SSasymp = gi(height ~ SSasymp(age, Asym, R0, lrc), Loblolly),
  SSasympOff = gi(uptake ~ SSasympOff(conc, Asym, lrc, c0), CO2),
  SSfol = gi(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), Theoph),
  SSmicmen = gi(uptake ~ SSmicmen(conc, Vm, K), CO2),
  SSgompertz = gi(height ~ SSgompertz(age, Asym, b2, b3), Loblolly),
  SSfpl = gi(weight ~ SSfpl(Time, A, B, xmid, scal), Soybean),
  SSbiexp = gi(conc ~ SSbiexp(Time, A1, lrc1, A2, lrc2), subset(Theoph, Subject == "1" & Time > 0)))

out <- list(cases = cases, initial = initial, initial_co2 = as.numeric(st_co2),
            versions = list(R = R.version.string, nlme = as.character(packageVersion("nlme"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "nlme_reference.json"))
