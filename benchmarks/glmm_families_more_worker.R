# Timings of lme4 and glmmTMB (their default fits) on the review's family cases
# (tests/reference/famcheck), in one R process: each case fitted once to warm up, then
# REPEATS times (CPU: user + system).  Prints one JSON line per case.
# usage: Rscript glmm_families_more_worker.R SHARED_DATADIR FAMILY_DATADIR FAMCHECK_DATADIR CASES.json REPEATS
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]; own <- args[2]; famcheck <- args[3]
cases <- fromJSON(args[4], simplifyVector = FALSE); repeats <- as.integer(args[5])
load_set <- function(name) {
  if (name == "famcheck_sim") {
    return(read.csv(file.path(famcheck, "famcheck_sim.csv"), stringsAsFactors = TRUE))
  }
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
  cpu <- numeric(repeats)
  for (i in seq_len(repeats)) {
    t0 <- proc.time(); m <- f(); t1 <- proc.time()
    cpu[i] <- (t1[["user.self"]] + t1[["sys.self"]]) - (t0[["user.self"]] + t0[["sys.self"]])
  }
  list(cpu = cpu, loglik = as.numeric(logLik(m)))
}
for (case in cases) {
  d <- load_set(case$data)
  d$.w <- if (is.null(case$weights)) 1 else d[[case$weights]]
  f <- as.formula(case$formula)
  out <- list(name = case$name)
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    out$peer <- suppressWarnings(time_it(function() glmer(f, data = d, family = fam, weights = .w)))
  } else if (case$engine == "glmer.nb") {
    out$peer <- suppressWarnings(time_it(function() glmer.nb(f, data = d)))
  } else {
    zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
    out$peer <- suppressWarnings(time_it(function()
      glmmTMB(f, data = d, family = case$family, ziformula = zi, weights = .w)))
  }
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
}
