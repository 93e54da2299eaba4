# Reference fits from nlme::lme with residual correlation (correlation =) and variance
# functions (weights =), one JSON file per case.
# usage: Rscript make_residual_reference.R OUTDIR DATADIR
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; datadir <- args[2]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
V <- function(x) I(unname(as.numeric(x)))
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                   niterEM = 100, opt = "nlminb", returnObject = FALSE)
cases <- list(
  list(name = "ovary_ar1", data = "Ovary", fixed = follicles ~ sin(2*pi*Time) + cos(2*pi*Time),
       random = ~1 | Mare, correlation = quote(corAR1())),
  list(name = "ovary_arma11", data = "Ovary", fixed = follicles ~ sin(2*pi*Time) + cos(2*pi*Time),
       random = ~1 | Mare, correlation = quote(corARMA(p = 1, q = 1))),
  list(name = "bodyweight_varpower", data = "BodyWeight", fixed = weight ~ Time * Diet,
       random = ~Time | Rat, weights = quote(varPower())),
  list(name = "bodyweight_car1", data = "BodyWeight", fixed = weight ~ Time * Diet,
       random = ~Time | Rat, correlation = quote(corCAR1(form = ~Time))),
  list(name = "orthodont_varident", data = "Orthodont", fixed = distance ~ age * Sex,
       random = ~1 | Subject, weights = quote(varIdent(form = ~1 | Sex))),
  # own cases
  list(name = "pastes_cs", data = "Pastes", fixed = strength ~ 1,
       random = ~1 | batch, correlation = quote(corCompSymm(form = ~1 | batch/cask))),
  list(name = "bodyweight_varexp", data = "BodyWeight", fixed = weight ~ Time * Diet,
       random = ~Time | Rat, weights = quote(varExp(form = ~Time))),
  list(name = "orthodont_varfixed", data = "Orthodont", fixed = distance ~ age * Sex,
       random = ~1 | Subject, weights = quote(varFixed(~age))),
  list(name = "bodyweight_car1_varpower_time", data = "BodyWeight", fixed = weight ~ Time * Diet,
       random = ~Time | Rat, correlation = quote(corCAR1(form = ~Time)),
       weights = quote(varPower(form = ~Time))),
  list(name = "sleepstudy_ar1", data = "sleepstudy", fixed = Reaction ~ Days,
       random = ~1 | Subject, correlation = quote(corAR1())),
  list(name = "ovary_ar1_gaps", data = "Ovary", fixed = follicles ~ sin(2*pi*Time) + cos(2*pi*Time),
       random = ~1 | Mare, correlation = quote(corARMA(form = ~ t | Mare, p = 1)), gaps = TRUE),
  list(name = "ovary_ar2", data = "Ovary", fixed = follicles ~ sin(2*pi*Time) + cos(2*pi*Time),
       random = ~1 | Mare, correlation = quote(corARMA(p = 2)))
)
prepare <- function(case) {
  d <- load_csv(case$data)
  if (isTRUE(case$gaps)) {
    # integer time within mare (row position), every 4th row removed: AR(1) with gaps
    d$t <- ave(seq_len(nrow(d)), d$Mare, FUN = seq_along)
    d <- d[d$t %% 4 != 0, ]
  }
  d
}
fit_case <- function(case, method, d) {
  cl <- list(fixed = case$fixed, random = case$random, data = quote(d), method = method,
             control = ctrl)
  if (!is.null(case$correlation)) cl$correlation <- case$correlation
  if (!is.null(case$weights)) cl$weights <- case$weights
  do.call(lme, cl)
}
for (case in cases) for (method in c("REML", "ML")) {
  d <- prepare(case)
  m <- fit_case(case, method, d)
  times <- sapply(1:5, function(i) system.time(fit_case(case, method, d))[["elapsed"]])
  ms <- m$modelStruct
  cor_par <- if (!is.null(ms$corStruct)) coef(ms$corStruct, unconstrained = FALSE) else numeric(0)
  cor_unc <- if (!is.null(ms$corStruct)) coef(ms$corStruct, unconstrained = TRUE) else numeric(0)
  var_par <- if (!is.null(ms$varStruct)) coef(ms$varStruct, unconstrained = FALSE, allCoef = TRUE) else numeric(0)
  iv <- tryCatch(intervals(m, which = "var-cov"), error = function(e) NULL)
  ci_cor <- if (!is.null(iv) && !is.null(iv$corStruct)) iv$corStruct else NULL
  ci_var <- if (!is.null(iv) && !is.null(iv$varStruct)) iv$varStruct else NULL
  vc <- VarCorr(m)
  re_sd <- as.numeric(vc[-nrow(vc), "StdDev"])
  res <- list(name = paste0(case$name, "_", tolower(method)), case = case$name, data = case$data,
    fixed = deparse(case$fixed), random = deparse(case$random),
    correlation = if (is.null(case$correlation)) NULL else deparse(case$correlation),
    weights = if (is.null(case$weights)) NULL else deparse(case$weights),
    REML = method == "REML", nobs = nrow(d),
    nlme_version = as.character(packageVersion("nlme")), R_version = R.version.string,
    lme_seconds_median = median(times),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
    fixef = V(fixef(m)), fixef_names = I(names(fixef(m))),
    se = V(sqrt(diag(vcov(m)))), sigma = m$sigma,
    re_sd = V(re_sd), re_names = I(rownames(vc)[-nrow(vc)]),
    cor_par = V(cor_par), cor_unconstrained = V(cor_unc),
    var_par = V(var_par), var_names = I(as.character(names(var_par))),
    cor_lower = if (is.null(ci_cor)) NULL else V(ci_cor[, "lower"]),
    cor_upper = if (is.null(ci_cor)) NULL else V(ci_cor[, "upper"]),
    var_lower = if (is.null(ci_var)) NULL else V(ci_var[, "lower"]),
    var_upper = if (is.null(ci_var)) NULL else V(ci_var[, "upper"]),
    fitted = V(fitted(m)), fitted_fixed = V(fitted(m, level = 0)),
    numIter = if (is.null(m$numIter)) 0 else m$numIter)
  if (isTRUE(case$gaps)) res$rows_kept <- V(as.integer(rownames(d)))
  write_json(res, file.path(out, paste0(res$name, ".json")), digits = NA, auto_unbox = TRUE, pretty = TRUE)
  cat(res$name, res$logLik, "\n")
}
