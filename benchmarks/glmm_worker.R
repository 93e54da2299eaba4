# One glmer timing in a fresh R process: data as the project's datasets (schema factors),
# fit REPEATS times after WARMUP, print JSON with the times and logLik.
# usage: Rscript glmm_worker.R DATADIR DATASET FORMULA FAMILY REPEATS WARMUP
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
schema <- fromJSON(file.path(args[1], "schema.json"), simplifyVector = TRUE)
d <- read.csv(file.path(args[1], paste0(args[2], ".csv")), stringsAsFactors = FALSE)
for (v in names(schema[[args[2]]]$factors)) {
  f <- schema[[args[2]]]$factors[[v]]
  d[[v]] <- factor(as.character(d[[v]]), levels = f$levels, ordered = isTRUE(f$ordered))
}
form <- as.formula(args[3]); fam <- get(args[4])
repeats <- as.integer(args[5]); warmup <- as.integer(args[6])
for (i in seq_len(warmup)) m <- glmer(form, d, family = fam)
times <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time()[["elapsed"]]; m <- glmer(form, d, family = fam); times[i] <- proc.time()[["elapsed"]] - t0
}
cat(sprintf('{"times": [%s], "loglik": %.10f}\n', paste(times, collapse = ","), as.numeric(logLik(m))))
