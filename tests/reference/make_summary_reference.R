# lme4's printed summaries, to test the summary layout line by line.
# usage: Rscript make_summary_reference.R DATADIR OUTDIR
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
sleepstudy <- read.csv(file.path(args[1], "sleepstudy.csv")); sleepstudy$Subject <- factor(sleepstudy$Subject)
Penicillin <- read.csv(file.path(args[1], "Penicillin.csv"))
m1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
writeLines(capture.output(print(summary(m1))), file.path(args[2], "summary_sleepstudy_reml.txt"))
m2 <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin, REML = FALSE)
writeLines(capture.output(print(summary(m2))), file.path(args[2], "summary_penicillin_ml.txt"))
