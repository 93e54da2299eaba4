# References for tests/results/test_residual_fitted_variance.py: a residual correlation
# structure together with a variance function of the fitted values (nlme 3.1-162).
# Run from the project root: Rscript tests/reference/rescheck2/make_rescheck2.R
suppressMessages({library(nlme); library(jsonlite)})
d <- "../shared/data"
rd <- function(n) read.csv(file.path(d, paste0(n, ".csv")))
out <- list()
keep <- function(name, m) {
  out[[name]] <<- list(
    logLik = as.numeric(logLik(m)), fixef = unname(fixef(m)),
    se = unname(sqrt(diag(vcov(m)))), sigma = m$sigma,
    cor = unname(as.numeric(coef(m$modelStruct$corStruct, unconstrained = FALSE))),
    power = unname(as.numeric(coef(m$modelStruct$varStruct, unconstrained = FALSE))))
}
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12)
Ov <- rd("Ovary"); Ov$Mare <- factor(Ov$Mare)
for (m in c("REML", "ML")) {
  keep(paste0("ovary_ma1_varpower_", tolower(m)),
       lme(follicles ~ sin(2*pi*Time) + cos(2*pi*Time), random = ~1 | Mare, data = Ov,
           correlation = corARMA(q = 1), weights = varPower(), method = m, control = ctrl))
}
O <- rd("Orthodont"); O$Subject <- factor(O$Subject)
O$Sex <- factor(O$Sex, levels = c("Male", "Female"))  # the data schema's order, as R's Orthodont
keep("orthodont_ar1_varpower_reml",
     lme(distance ~ age * Sex, random = ~1 | Subject, data = O, correlation = corAR1(),
         weights = varPower(), method = "REML", control = ctrl))
B <- rd("BodyWeight"); B$Rat <- factor(B$Rat); B$Diet <- factor(B$Diet)
keep("bodyweight_car1_varpower_ml",
     lme(weight ~ Time * Diet, random = ~Time | Rat, data = B,
         correlation = corCAR1(form = ~Time), weights = varPower(), method = "ML",
         control = ctrl))
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/rescheck2/rescheck2_reference.json")
