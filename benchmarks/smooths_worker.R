# gamm4 timings in a fresh R process for benchmarks/smooths.py.
# usage: Rscript smooths_worker.R DATA.csv FORMULA RANDOM FAMILY REPEATS WARMUP
# (RANDOM: a one-sided formula such as "~(1 | g)" or "NULL"); prints JSON with the times
# (seconds, after WARMUP warm-up fits), the CPU seconds of each (user + system: the shared
# machine's load inflates wall times) and the criterion (REML, or -2 logLik for GLMMs).
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
cpu <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time(); m <- fit(); t1 <- proc.time()
  times[i] <- t1[["elapsed"]] - t0[["elapsed"]]
  cpu[i] <- (t1[["user.self"]] + t1[["sys.self"]]) - (t0[["user.self"]] + t0[["sys.self"]])
}
crit <- if (args[4] == "gaussian") REMLcrit(m$mer) else -2 * as.numeric(logLik(m$mer))
cat(toJSON(list(times = times, cpu = cpu, criterion = crit, edf = sum(m$gam$edf)), digits = NA,
           auto_unbox = TRUE), "\n")
