# Timings of lme4 and glmmTMB on the GLMM-family cases, in one R process: each case fitted
# once to warm up, then REPEATS times (wall and CPU: user + system of this process);
# prints one JSON line per case and peer.
# usage: Rscript glmm_families_worker.R SHARED_DATADIR FAMILY_DATADIR CASES.json REPEATS
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]; own <- args[2]; cases <- fromJSON(args[3], simplifyVector = FALSE)
repeats <- as.integer(args[4])
load_set <- function(name) {
  dir <- if (file.exists(file.path(own, paste0(name, ".csv")))) own else shared
  schema <- fromJSON(file.path(dir, "schema.json"), simplifyVector = TRUE)
  d <- read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in names(schema[[name]]$factors)) {
    f <- schema[[name]]$factors[[v]]
    d[[v]] <- factor(as.character(d[[v]]), levels = f$levels, ordered = isTRUE(f$ordered))
  }
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  d
}
time_it <- function(f) {
  m <- f()
  times <- numeric(repeats); cpu <- numeric(repeats)
  for (i in seq_len(repeats)) {
    t0 <- proc.time(); m <- f(); t1 <- proc.time()
    times[i] <- t1[["elapsed"]] - t0[["elapsed"]]
    cpu[i] <- (t1[["user.self"]] + t1[["sys.self"]]) - (t0[["user.self"]] + t0[["sys.self"]])
  }
  list(times = times, cpu = cpu, loglik = as.numeric(logLik(m)))
}
tmb_family <- function(case) {
  switch(case$family, Gamma = Gamma(link = case$link),
         inverse.gaussian = inverse.gaussian(link = case$link),
         gaussian = gaussian(link = case$link), case$family)
}
for (case in cases) {
  d <- load_set(case$data)
  f <- as.formula(case$formula)
  out <- list(name = case$name)
  zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    out$lme4 <- suppressWarnings(time_it(function() glmer(f, data = d, family = fam)))
  } else if (case$engine == "glmer.nb") {
    out$lme4 <- suppressWarnings(time_it(function() glmer.nb(f, data = d)))
  }
  tmb_fam <- if (case$engine == "glmer.nb") "nbinom2" else tmb_family(case)
  out$glmmTMB <- tryCatch(
    suppressWarnings(time_it(function() glmmTMB(f, data = d, family = tmb_fam, ziformula = zi))),
    error = function(e) NULL)
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
}
