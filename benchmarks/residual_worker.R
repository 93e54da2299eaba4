# nlme::lme timings for benchmarks/residual_structures.py: the same cases, each fitted
# `repeats` times; prints one JSON line per case (median elapsed seconds, logLik).
# usage: Rscript residual_worker.R DATADIR REPEATS
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]; repeats <- as.integer(args[2])
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE)))
source(file.path(here, "..", "tests", "reference", "load_data.R"))
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, niterEM = 100, opt = "nlminb")
cases <- list(
  ovary_ar1 = list("Ovary", follicles ~ sin(2*pi*Time) + cos(2*pi*Time), ~1 | Mare, quote(corAR1()), NULL),
  ovary_arma11 = list("Ovary", follicles ~ sin(2*pi*Time) + cos(2*pi*Time), ~1 | Mare, quote(corARMA(p = 1, q = 1)), NULL),
  bodyweight_varpower = list("BodyWeight", weight ~ Time * Diet, ~Time | Rat, NULL, quote(varPower())),
  bodyweight_car1 = list("BodyWeight", weight ~ Time * Diet, ~Time | Rat, quote(corCAR1(form = ~Time)), NULL),
  orthodont_varident = list("Orthodont", distance ~ age * Sex, ~1 | Subject, NULL, quote(varIdent(form = ~1 | Sex))),
  pastes_cs = list("Pastes", strength ~ 1, ~1 | batch, quote(corCompSymm(form = ~1 | batch/cask)), NULL),
  sleepstudy_ar1 = list("sleepstudy", Reaction ~ Days, ~1 | Subject, quote(corAR1()), NULL)
)
for (name in names(cases)) for (method in c("REML", "ML")) {
  cs <- cases[[name]]
  d <- load_csv(cs[[1]])
  cl <- list(fixed = cs[[2]], random = cs[[3]], data = quote(d), method = method, control = ctrl)
  if (!is.null(cs[[4]])) cl$correlation <- cs[[4]]
  if (!is.null(cs[[5]])) cl$weights <- cs[[5]]
  m <- do.call(lme, cl)
  st <- sapply(seq_len(repeats), function(i) {
    t <- system.time(do.call(lme, cl)); c(t[["elapsed"]], t[["user.self"]] + t[["sys.self"]])
  })
  times <- st[1, ]; cpu <- st[2, ]
  cat(toJSON(list(case = paste0(name, "_", tolower(method)), seconds = median(times), cpu_seconds = median(cpu),
                  logLik = as.numeric(logLik(m)), nlme = as.character(packageVersion("nlme"))),
             auto_unbox = TRUE, digits = NA), "\n")
}
