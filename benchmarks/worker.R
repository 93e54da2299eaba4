# One lme4 timing in a fresh R process: read the CSV (not timed), fit REPEATS times, print JSON
# with the times, the REML criterion and the process's peak resident memory (VmHWM).
# usage: Rscript worker.R CSV FORMULA FACTORS REPEATS WARMUP
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
form <- as.formula(args[2]); repeats <- as.integer(args[4]); warmup <- as.integer(args[5])
for (i in seq_len(warmup)) m <- lmer(form, d)
times <- numeric(repeats)
for (i in seq_len(repeats)) { t0 <- proc.time()[["elapsed"]]; m <- lmer(form, d); times[i] <- proc.time()[["elapsed"]] - t0 }
status <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", status[grepl("^VmHWM", status)])) / 1024
cat(sprintf('{"times": [%s], "objective": %.10f, "peak_mb": %.1f}\n', paste(times, collapse = ","), REMLcrit(m), hwm))
