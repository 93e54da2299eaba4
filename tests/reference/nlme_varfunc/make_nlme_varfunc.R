# Reference values of nonlinear mixed models with variance functions from nlme::nlme.
# Run from the repository root:  Rscript tests/reference/nlme_varfunc/make_nlme_varfunc.R
# Writes tests/reference/nlme_varfunc/nlme_varfunc.json.  The data are the CSV copies in
# tests/reference/nlme/data (grouping columns become factors with sorted levels, as in
# tests/reference/nlme/make_nlme_reference.R, whose conventions this script follows).
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/nlme_varfunc"
load <- function(name) read.csv(file.path("tests/reference/nlme/data", paste0(name, ".csv")),
                                stringsAsFactors = TRUE)
Orange <- load("Orange"); Orange$Tree <- factor(Orange$Tree)
Theoph <- load("Theoph"); Theoph$Subject <- factor(Theoph$Subject)
Soybean <- load("Soybean")
Loblolly <- load("Loblolly"); Loblolly$Seed <- factor(Loblolly$Seed)
CO2 <- load("CO2")
# "converged": the Lindstrom-Bates iteration run to its fixed point (nlme's defaults stop
# it early, see make_nlme_reference.R)
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msTol = 1e-12, maxIter = 500,
                     pnlsMaxIter = 50, msMaxIter = 500, returnObject = TRUE)

variance_block <- function(fit) {
  # the "Variance function:" block of print(summary(fit)), up to "Fixed effects:"
  text <- capture.output(print(summary(fit)))
  first <- grep("^(Variance function:|Combination of variance functions:)", text)[1]
  last <- grep("^Fixed effects:", text)[1] - 1
  text[first:last]
}

summarise <- function(fit) {
  s <- summary(fit)
  vc <- as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]])) * fit$sigma^2
  vf <- fit$modelStruct$varStruct
  vp <- coef(vf, unconstrained = FALSE)
  list(
    logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
    df = attr(logLik(fit), "df"),
    fixef = as.list(fixef(fit)), fixef_names = names(fixef(fit)),
    se = as.numeric(sqrt(diag(vcov(fit)))),
    tTable_se = unname(s$tTable[, 2]), tTable_df = unname(s$tTable[, 3]),
    sigma = fit$sigma, re_sd = as.numeric(sqrt(diag(vc))), re_names = colnames(vc),
    var_par = as.numeric(vp), var_names = names(vp),
    var_par_unconstrained = as.numeric(coef(vf, unconstrained = TRUE)),
    var_weights = as.numeric(varWeights(vf)[order(order(fit$groups[[1]]))]),
    fitted1 = as.numeric(fitted(fit, level = 1)),
    pearson = as.numeric(resid(fit, level = 1, type = "pearson")),
    normalized = as.numeric(resid(fit, level = 1, type = "normalized")),
    variance_block = variance_block(fit),
    numIter = fit$numIter)
}

cases <- list()
run <- function(name, expr) {
  fit <- eval(expr)
  cases[[name]] <<- summarise(fit)
  fit_t <- suppressWarnings(eval(substitute(update(F, control = tight), list(F = fit))))
  cases[[name]]$converged <<- summarise(fit_t)
  invisible(fit)
}

st_orange <- getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange)
st_theoph <- getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph)
st_soy <- getInitial(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean)
st_co2 <- getInitial(uptake ~ SSasympOff(conc, Asym, lrc, c0), data = CO2)
# Soybean with Variety starts from the diagonal fit without covariates, as in
# make_nlme_reference.R
soy <- nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = Soybean,
            fixed = Asym + xmid + scal ~ 1, random = pdDiag(Asym + xmid + scal ~ 1),
            groups = ~Plot, start = st_soy)
soy_start <- c(fixef(soy)[1], 0, fixef(soy)[2], 0, fixef(soy)[3], 0)

for (method in c("ML", "REML")) {
  tag <- tolower(method)
  # the Pinheiro-Bates Soybean model: varPower() of the fitted values
  run(paste0("soybean_varpower_", tag), bquote(nlme(weight ~ SSlogis(Time, Asym, xmid, scal),
      data = Soybean, fixed = Asym + xmid + scal ~ Variety,
      random = pdDiag(Asym + xmid + scal ~ 1), groups = ~Plot, weights = varPower(),
      start = soy_start, method = .(method))))
  # a residual sd per Type (a covariate: no fixed-point coupling)
  run(paste0("co2_varident_", tag), bquote(nlme(uptake ~ SSasympOff(conc, Asym, lrc, c0),
      data = CO2, fixed = Asym + lrc + c0 ~ 1, random = Asym ~ 1 | Plant,
      weights = varIdent(form = ~1 | Type), start = st_co2, method = .(method))))
  # an exponential of a covariate
  run(paste0("loblolly_varexp_", tag), bquote(nlme(height ~ SSasymp(age, Asym, R0, lrc),
      data = Loblolly, fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1 | Seed,
      weights = varExp(form = ~age), start = c(Asym = 103, R0 = -8.5, lrc = -3.3),
      method = .(method))))
  # varComb: a sd per tree times a power of the fitted values
  run(paste0("orange_varcomb_", tag), bquote(nlme(circumference ~ SSlogis(age, Asym, xmid, scal),
      data = Orange, fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1 | Tree,
      weights = varComb(varIdent(form = ~1 | Tree), varPower()), start = st_orange,
      method = .(method))))
}
# cases of our own: an exponential of the fitted values (Theoph, diagonal random effects)
# and fixed weights (variance proportional to age)
run("theoph_varexp_fitted_ml", quote(nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl),
    data = Theoph, fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1),
    groups = ~Subject, weights = varExp(), start = st_theoph)))
run("loblolly_varfixed_ml", quote(nlme(height ~ SSasymp(age, Asym, R0, lrc),
    data = Loblolly, fixed = Asym + R0 + lrc ~ 1, random = Asym ~ 1 | Seed,
    weights = varFixed(~age), start = c(Asym = 103, R0 = -8.5, lrc = -3.3))))

out <- list(cases = cases, soybean_variety_start = as.numeric(soy_start),
            co2_start = as.numeric(st_co2),
            versions = list(R = R.version.string, nlme = as.character(packageVersion("nlme"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "nlme_varfunc.json"))
