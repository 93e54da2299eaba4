# Likelihood-ratio tests between nested families (Poisson inside the negative binomial),
# for tests/test_glmer_family_anova.py.
# usage (from the project root):
#   Rscript tests/reference/families/make_anova_reference.R
# Writes tests/reference/families/anova/salamanders_poisson_nb.json: lme4's
# anova(glmer(poisson), glmer.nb) and glmmTMB's anova(poisson, nbinom2) (npar, logLik,
# AIC, BIC, Chisq, Df, p value), fitted to the bundled Salamanders data.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
datadir <- file.path(here, "data")
source(file.path(here, "..", "load_data.R"))
d <- load_csv("Salamanders")
for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
f <- count ~ spp + mined + (1|site)
tight <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
pois <- glmer(f, data = d, family = poisson, control = tight)
nb <- glmer.nb(f, data = d, control = tight)
nb <- lme4:::optTheta(nb, interval = log(getME(nb, "glmer.nb.theta")) + c(-0.05, 0.05),
                      tol = 1e-10, control = tight)
table <- function(a) {
  a <- as.data.frame(a)
  list(npar = I(a[[1]]), AIC = I(a$AIC), BIC = I(a$BIC), logLik = I(a$logLik),
       Chisq = a$Chisq[2], p = a[["Pr(>Chisq)"]][2],
       Df = if ("Chi Df" %in% names(a)) a[["Chi Df"]][2] else a$Df[2])
}
lme4_table <- table(anova(pois, nb))
tp <- glmmTMB(f, data = d, family = poisson)
tn <- glmmTMB(f, data = d, family = nbinom2)
tmb_table <- table(anova(tp, tn))
dir.create(file.path(here, "anova"), showWarnings = FALSE)
write_json(list(lme4_version = as.character(packageVersion("lme4")),
                glmmTMB_version = as.character(packageVersion("glmmTMB")),
                formula = deparse(f), lme4 = lme4_table, glmmTMB = tmb_table),
           file.path(here, "anova", "salamanders_poisson_nb.json"), digits = NA,
           auto_unbox = TRUE)
message("done")
