# Reference bases for tests/core/test_smooth_bases.py, made with mgcv's own constructors.
# Run: Rscript tests/reference/smooths/bases.R   (writes bases.json next to this script)
suppressMessages({library(mgcv); library(jsonlite)})
set.seed(13)
n <- 250
x <- round(runif(n, -1, 3), 3)       # ties on purpose: the basis sits at unique values
xnew <- c(seq(-1.5, 3.5, length = 23))
out <- list(mgcv = as.character(packageVersion("mgcv")), x = x, xnew = xnew, cases = list())
for (spec in list(list(bs = "tp", k = 10, m = NA), list(bs = "tp", k = 6, m = 1),
                  list(bs = "cr", k = 10, m = NA), list(bs = "cr", k = 5, m = NA))) {
  d <- data.frame(x = x)
  term <- if (is.na(spec$m)) s(x, bs = spec$bs, k = spec$k) else s(x, bs = spec$bs, k = spec$k, m = spec$m)
  sm <- smoothCon(term, d, absorb.cons = TRUE, scale.penalty = FALSE)[[1]]
  raw <- smoothCon(term, d, absorb.cons = FALSE, scale.penalty = FALSE)[[1]]
  re <- smooth2random(sm, "", type = 2)
  name <- paste0(spec$bs, spec$k, if (is.na(spec$m)) "" else paste0("m", spec$m))
  out$cases[[name]] <- list(
    bs = spec$bs, k = spec$k, m = spec$m,
    X_raw = raw$X, S_raw = raw$S[[1]],
    X = sm$X, S = sm$S[[1]], rank = sm$rank,
    Xf = re$Xf, Xr = as.matrix(re$rand[[1]]),
    Xnew = PredictMat(sm, data.frame(x = xnew)),
    Xnew_raw = PredictMat(raw, data.frame(x = xnew)))
}
writeLines(toJSON(out, digits = NA, matrix = "rowmajor", auto_unbox = TRUE, na = "null"),
           file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))), "bases.json"))
