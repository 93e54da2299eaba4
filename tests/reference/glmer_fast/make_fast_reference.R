# lme4's nAGQ = 0 fits (beta from PIRLS, theta optimized: the fit mixedmodels' glmer(fast =
# True) makes, MixedModels.jl's fast = true), with PIRLS converged tightly (tolPwrss 1e-12)
# and the first-stage optimizer run to a tight tolerance, for tests/test_glmer_fast.py.
# usage: Rscript make_fast_reference.R DATADIR   (writes fast.json next to this script)
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
datadir <- args[1]
script_dir <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(script_dir, "..", "load_data.R"))
cases <- list(
  list(name = "cbpp", data = "cbpp", family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(name = "grouseticks", data = "grouseticks", family = "poisson",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)")
)
out <- lapply(cases, function(case) {
  d <- load_csv(case$data)
  m <- glmer(as.formula(case$formula), data = d, family = get(case$family), nAGQ = 0,
             control = glmerControl(tolPwrss = 1e-12,
                                    optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  list(name = case$name, theta = I(unname(getME(m, "theta"))),
       fixef = I(unname(fixef(m))), logLik = as.numeric(logLik(m)),
       lme4 = as.character(packageVersion("lme4")))
})
names(out) <- sapply(cases, `[[`, "name")
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(script_dir, "fast.json"))
