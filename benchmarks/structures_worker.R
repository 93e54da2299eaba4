# glmmTMB timings for benchmarks/residual_structures.py: structured random-effect
# covariances, each fitted `repeats` times; one JSON line per case.
# usage: Rscript structures_worker.R DATADIR REPEATS
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]; repeats <- as.integer(args[2])
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE)))
source(file.path(here, "..", "tests", "reference", "load_data.R"))
cases <- list(
  sleepstudy_diag = list("sleepstudy", Reaction ~ Days + diag(Days | Subject)),
  machines_us = list("Machines", score ~ Machine + us(0 + Machine | Worker)),
  machines_cs = list("Machines", score ~ Machine + cs(0 + Machine | Worker)),
  machines_ar1 = list("Machines", score ~ Machine + ar1(0 + Machine | Worker)),
  machines_toep = list("Machines", score ~ Machine + toep(0 + Machine | Worker))
)
for (name in names(cases)) for (reml in c(TRUE, FALSE)) {
  d <- load_csv(cases[[name]][[1]])
  f <- cases[[name]][[2]]
  m <- glmmTMB(f, data = d, REML = reml)
  st <- sapply(seq_len(repeats), function(i) {
    t <- system.time(glmmTMB(f, data = d, REML = reml)); c(t[["elapsed"]], t[["user.self"]] + t[["sys.self"]])
  })
  times <- st[1, ]; cpu <- st[2, ]
  cat(toJSON(list(case = paste0(name, if (reml) "_reml" else "_ml"), seconds = median(times), cpu_seconds = median(cpu),
                  logLik = as.numeric(logLik(m)),
                  glmmTMB = as.character(packageVersion("glmmTMB"))),
             auto_unbox = TRUE, digits = NA), "\n")
}
