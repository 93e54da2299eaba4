# Reference fits for the project's own cases, in the JSON layout of ../shared's
# make_reference.R, with two extensions: prior weights and cells set to NA.
# usage: Rscript make_project_reference.R CASES.R OUTDIR DATADIR
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
cases_file <- args[1]; out <- args[2]; datadir <- args[3]
script_dir <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(script_dir, "load_data.R"))
V <- function(x) I(unname(as.numeric(x)))
fit_case <- function(case) {
  d <- load_csv(case$data)
  if (!is.null(case[["na", exact = TRUE]])) for (cell in case[["na", exact = TRUE]]) d[as.integer(cell[1]), cell[2]] <- NA
  d$.w <- if (is.null(case$weights)) 1 else eval(parse(text = case$weights), d)
  glmm <- !is.null(case[["family", exact = TRUE]])
  if (glmm) {
    link <- if (is.null(case$link)) switch(case$family, binomial = "logit", poisson = "log") else case$link
    fam <- do.call(case$family, list(link = link))  # binomial(link = <call>) would deparse the call
    nagq <- if (is.null(case$nAGQ)) 1 else case$nAGQ
    m <- glmer(as.formula(case$formula), data = d, family = fam, weights = .w, nAGQ = nagq)
    # the same fit with PIRLS converged tightly: lme4's default tolPwrss = 1e-7 leaves its
    # finite-difference Hessian (and so the standard errors) biased by up to ~1%
    mt <- glmer(as.formula(case$formula), data = d, family = fam, weights = .w, nAGQ = nagq,
                control = glmerControl(tolPwrss = 1e-12))
  } else {
    m <- lmerTest::lmer(as.formula(case$formula), data = d, REML = isTRUE(case$REML), weights = .w,
                        contrasts = case[["contrasts", exact = TRUE]])
  }
  vc <- as.data.frame(VarCorr(m))
  re <- as.data.frame(ranef(m, condVar = TRUE))
  res <- list(name = case$name, data = case$data, formula = case$formula, REML = isTRUE(case$REML),
    family = if (glmm) case$family else "gaussian", link = if (glmm) fam$link else "identity",
    nAGQ = if (glmm) nagq else NULL,
    weights = case[["weights", exact = TRUE]], na = case[["na", exact = TRUE]],
    contrasts = case[["contrasts", exact = TRUE]],
    lme4_version = as.character(packageVersion("lme4")), nobs = nobs(m), ngrps = as.list(ngrps(m)),
    fixef = V(fixef(m)), fixef_names = I(names(fixef(m))),
    se = V(sqrt(diag(as.matrix(vcov(m))))), vcov = unname(as.matrix(vcov(m))),
    theta = V(getME(m, "theta")), theta_names = I(names(getME(m, "theta"))),
    sigma = sigma(m), varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
    objective = unname(if (isREML(m)) REMLcrit(m) else deviance(m)),
    fitted_link = V(predict(m)),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
    singular = isSingular(m), lme4_converged = length(m@optinfo$conv$lme4$messages) == 0,
    ranef = list(grpvar = I(as.character(re$grpvar)), term = I(as.character(re$term)),
                 grp = I(as.character(re$grp)), condval = V(re$condval), condsd = V(re$condsd)),
    fitted = V(fitted(m)), resid = V(residuals(m)), fitted_marginal = V(predict(m, re.form = NA)))
  if (glmm) {
    cs <- summary(m)$coefficients
    res$z_p <- V(cs[, "Pr(>|z|)"])
    res$tight <- list(theta = V(getME(mt, "theta")), fixef = V(fixef(mt)),
      se = V(sqrt(diag(as.matrix(vcov(mt))))), deviance = deviance(mt), logLik = as.numeric(logLik(mt)),
      condval = V(as.data.frame(ranef(mt, condVar = TRUE))$condval),
      condsd = V(as.data.frame(ranef(mt, condVar = TRUE))$condsd))
  } else {
    cs <- summary(m)$coefficients
    res$satterthwaite_df <- V(cs[, "df"]); res$satterthwaite_p <- V(cs[, "Pr(>|t|)"])
  }
  res
}
source(cases_file)
dir.create(out, showWarnings = FALSE, recursive = TRUE)
for (case in cases) {
  r <- tryCatch(fit_case(case), error = function(e) { message(case$name, ": ", conditionMessage(e)); NULL })
  if (!is.null(r)) write_json(r, file.path(out, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE, pretty = FALSE, null = "null")
  message(case$name, " done")
}
