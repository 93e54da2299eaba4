# Timings of lme4 and glmmTMB on the GLMM-family cases, in one R process: each case fitted
# once to warm up, then REPEATS times (wall and CPU: user + system of this process);
# prints one JSON line per case and peer.
# usage: Rscript glmm_families_worker.R SHARED_DATADIR FAMILY_DATADIR CASES.json REPEATS
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- args[1]; own <- args[2]; cases <- fromJSON(args[3], simplifyVector = FALSE)
repeats <- as.integer(args[4])
here <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
source(file.path(dirname(normalizePath(here[1])), "families_data.R"))
tmb_family <- function(case) {
  switch(case$family, Gamma = Gamma(link = case$link),
         inverse.gaussian = inverse.gaussian(link = case$link),
         gaussian = gaussian(link = case$link), case$family)
}
for (case in cases) {
  d <- load_set(case$data, shared, own)
  f <- as.formula(case$formula)
  out <- list(name = case$name)
  zi <- if (is.null(case$zi)) ~0 else as.formula(case$zi)
  if (case$engine == "glmer") {
    fam <- do.call(case$family, list(link = case$link))
    out$lme4 <- suppressWarnings(time_it(function() glmer(f, data = d, family = fam), repeats))
  } else if (case$engine == "glmer.nb") {
    out$lme4 <- suppressWarnings(time_it(function() glmer.nb(f, data = d), repeats))
  }
  tmb_fam <- if (case$engine == "glmer.nb") "nbinom2" else tmb_family(case)
  out$glmmTMB <- tryCatch(
    suppressWarnings(time_it(
      function() glmmTMB(f, data = d, family = tmb_fam, ziformula = zi), repeats)),
    error = function(e) NULL)
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
}
