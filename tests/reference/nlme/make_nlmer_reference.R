# Reference values of lme4::nlmer (Laplace approximation) for mm.nlme(method = "Laplace").
# Run from the repository root:  Rscript tests/reference/nlme/make_nlmer_reference.R
# Writes tests/reference/nlme/nlmer_reference.json.
suppressMessages({library(lme4); library(jsonlite)})
here <- "tests/reference/nlme"
load <- function(name) read.csv(file.path(here, "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
Orange <- load("Orange"); Orange$Tree <- factor(Orange$Tree)
Theoph <- load("Theoph"); Theoph$Subject <- factor(Theoph$Subject)
Loblolly <- load("Loblolly"); Loblolly$Seed <- factor(Loblolly$Seed)
summarise <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(logLik = as.numeric(logLik(fit)), fixef = as.list(fixef(fit)),
       theta = as.numeric(getME(fit, "theta")), sigma = sigma(fit),
       sd = vc$sdcor[is.na(vc$var2) & vc$grp != "Residual"],
       se = as.numeric(sqrt(diag(as.matrix(suppressWarnings(vcov(fit)))))),
       devcomp = as.list(fit@devcomp$cmp[c("ldL2", "pwrss", "dev")]))
}
st_orange <- getInitial(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange)
st_theoph <- getInitial(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph)
out <- list(
  orange = summarise(nlmer(circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree,
                           Orange, start = st_orange)),
  loblolly = summarise(nlmer(height ~ SSasymp(age, Asym, R0, lrc) ~ Asym | Seed, Loblolly,
                             start = c(Asym = 103, R0 = -8.5, lrc = -3.3))),
  theoph = summarise(nlmer(conc ~ SSfol(Dose, Time, lKe, lKa, lCl) ~ (0 + lKa + lCl | Subject),
                           Theoph, start = st_theoph)),
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "nlmer_reference.json"))
