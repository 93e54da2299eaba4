# Timings of lme4 and glmmTMB (their default fits) on the review's family cases
# (tests/reference/famcheck), in one R process: each case fitted once to warm up, then
# REPEATS times (CPU: user + system).  Prints one JSON line per case.
# usage: Rscript glmm_families_more_worker.R SHARED_DATADIR FAMILY_DATADIR FAMCHECK_DATADIR CASES.json REPEATS
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]; own <- args[2]; famcheck <- args[3]
cases <- fromJSON(args[4], simplifyVector = FALSE); repeats <- as.integer(args[5])
here <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
source(file.path(dirname(normalizePath(here[1])), "families_data.R"))
for (case in cases) {
  d <- if (case$data == "famcheck_sim") {
    read.csv(file.path(famcheck, "famcheck_sim.csv"), stringsAsFactors = TRUE)
  } else {
    load_set(case$data, shared, own)
  }
  d$.w <- if (is.null(case$weights)) 1 else d[[case$weights]]
  f <- as.formula(case$formula)
  out <- list(name = case$name)
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    out$peer <- suppressWarnings(time_it(function() glmer(f, data = d, family = fam, weights = .w), repeats))
  } else if (case$engine == "glmer.nb") {
    out$peer <- suppressWarnings(time_it(function() glmer.nb(f, data = d), repeats))
  } else {
    zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
    out$peer <- suppressWarnings(time_it(function()
      glmmTMB(f, data = d, family = case$family, ziformula = zi, weights = .w), repeats))
  }
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
}
