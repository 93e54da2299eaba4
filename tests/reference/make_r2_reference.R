# Nakagawa R2 and ICC from performance (r2_nakagawa, icc) for two models.
# usage: Rscript make_r2_reference.R DATADIR OUTFILE
suppressMessages({library(lme4); library(performance); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
sleepstudy <- read.csv(file.path(args[1], "sleepstudy.csv")); sleepstudy$Subject <- factor(sleepstudy$Subject)
Penicillin <- read.csv(file.path(args[1], "Penicillin.csv"))
m1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
m2 <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
m3 <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
one <- function(m) {
  r2 <- r2_nakagawa(m); ic <- icc(m)
  list(r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional),
       icc_adjusted = unname(ic$ICC_adjusted), icc_conditional = unname(ic$ICC_conditional))
}
out <- list(sleepstudy_slopes = one(m1), penicillin_crossed = one(m2), sleepstudy_intercepts = one(m3),
            performance_version = as.character(packageVersion("performance")))
write_json(out, args[2], digits = NA, auto_unbox = TRUE)
