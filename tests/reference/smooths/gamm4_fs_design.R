# gamm4's random-effect columns for the fs smooth with m = 2 (the gaussian_fs case of
# gamm4_cases.json), for tests/design/test_smooths_fs_null_space.py: mgcv splits the smooth's
# 2-dimensional null space along the eigenvectors its eigen-solver returns for two zero
# eigenvalues, each direction a random effect with its own variance.  Stored per row (each
# row has entries in its own group's columns only): the row's group, its 8 range-space
# entries and its entry in each of the two null-space terms, with gamm4's REML criterion.
# Run: Rscript tests/reference/smooths/gamm4_fs_design.R   (writes gamm4_fs_design.json)
# test: tests/design/test_smooths_fs_null_space.py
suppressMessages({library(mgcv); library(gamm4); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
ref <- fromJSON(file.path(here, "gamm4_cases.json"))
d <- as.data.frame(ref$cases$gaussian_fs$data); d$g <- factor(d$g)
fit <- gamm4(y ~ s(x, g, bs = "fs"), data = d, REML = TRUE)
mer <- fit$mer
Z <- as.matrix(getME(mer, "Z"))
term <- getME(mer, "Lind")  # the variance (theta) of each column of Z
rows <- lapply(sort(unique(term)), function(t) {
  block <- Z[, term == t, drop = FALSE]
  width <- ncol(block) / nlevels(d$g)  # columns per group, level-major
  t(sapply(seq_len(nrow(block)), function(i) {
    lev <- as.integer(d$g[i]); block[i, (lev - 1) * width + seq_len(width)]
  }))
})
out <- list(
  g = as.character(d$g), levels = levels(d$g),
  range = rows[[1]], null1 = as.numeric(rows[[2]]), null2 = as.numeric(rows[[3]]),
  criterion = REMLcrit(mer), theta = unname(getME(mer, "theta")),
  cnms = names(getME(mer, "cnms"))
)
write_json(out, file.path(here, "gamm4_fs_design.json"), digits = NA)
