# Reference fits from glmmTMB for structured random-effect covariances (diag, cs, ar1,
# toep, us), REML and ML; one JSON file per case.
# usage: Rscript make_structures_reference.R OUTDIR DATADIR
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; datadir <- args[2]
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))), "..", "load_data.R"))
V <- function(x) I(unname(as.numeric(x)))
cases <- list(
  list(name = "sleepstudy_diag", data = "sleepstudy", formula = Reaction ~ Days + diag(Days | Subject)),
  list(name = "machines_us", data = "Machines", formula = score ~ Machine + us(0 + Machine | Worker)),
  list(name = "machines_diag", data = "Machines", formula = score ~ Machine + diag(0 + Machine | Worker)),
  list(name = "machines_cs", data = "Machines", formula = score ~ Machine + cs(0 + Machine | Worker)),
  list(name = "machines_ar1", data = "Machines", formula = score ~ Machine + ar1(0 + Machine | Worker)),
  list(name = "machines_toep", data = "Machines", formula = score ~ Machine + toep(0 + Machine | Worker))
)
# (Orthodont's cs(1 + age | Subject) was dropped: glmmTMB reports no convergence there)
for (case in cases) for (reml in c(TRUE, FALSE)) {
  d <- load_csv(case$data)
  m <- glmmTMB(case$formula, data = d, REML = reml)
  times <- sapply(1:5, function(i) system.time(glmmTMB(case$formula, data = d, REML = reml))[["elapsed"]])
  vc <- VarCorr(m)$cond[[1]]
  cov <- unname(as.matrix(vc))
  res <- list(name = paste0(case$name, if (reml) "_reml" else "_ml"), case = case$name, data = case$data,
    formula = deparse(case$formula), REML = reml, nobs = nobs(m),
    glmmTMB_version = as.character(packageVersion("glmmTMB")), R_version = R.version.string,
    glmmTMB_seconds_median = median(times),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    fixef = V(fixef(m)$cond), fixef_names = I(names(fixef(m)$cond)),
    se = V(sqrt(diag(vcov(m)$cond))), sigma = sigma(m),
    re_cov = cov, re_sd = V(sqrt(diag(cov))), re_names = I(rownames(vc)),
    convergence = m$fit$convergence, pdHess = m$sdr$pdHess)
  write_json(res, file.path(out, paste0(res$name, ".json")), digits = NA, auto_unbox = TRUE, pretty = TRUE)
  if (res$convergence != 0 || !isTRUE(res$pdHess)) stop("glmmTMB did not converge on ", res$name)
  cat(res$name, res$logLik, res$df, "\n")
}
