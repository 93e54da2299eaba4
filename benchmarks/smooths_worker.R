# gamm4 timings in a fresh R process for benchmarks/smooths.py.
# usage: Rscript smooths_worker.R DATA.csv FORMULA RANDOM FAMILY REPEATS WARMUP
# (RANDOM: a one-sided formula such as "~(1 | g)" or "NULL"); prints JSON with the times
# (seconds, after WARMUP warm-up fits) and the criterion (REML, or -2 logLik for GLMMs).
suppressMessages({library(gamm4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
if ("g" %in% names(d)) d$g <- factor(d$g)
form <- as.formula(args[2])
random <- if (args[3] == "NULL") NULL else as.formula(args[3])
fam <- get(args[4])()
repeats <- as.integer(args[5])
fit <- function() gamm4(form, random = random, data = d, family = fam)
for (i in seq_len(as.integer(args[6]))) m <- fit()
times <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time()[["elapsed"]]; m <- fit(); times[i] <- proc.time()[["elapsed"]] - t0
}
crit <- if (args[4] == "gaussian") REMLcrit(m$mer) else -2 * as.numeric(logLik(m$mer))
cat(toJSON(list(times = times, criterion = crit, edf = sum(m$gam$edf)), digits = NA,
           auto_unbox = TRUE), "\n")
