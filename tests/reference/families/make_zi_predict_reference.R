# glmmTMB's predict() of zero-inflated fits on new data, for tests/test_glmer_family_predict.py.
# usage (from the project root):
#   Rscript tests/reference/families/make_zi_predict_reference.R /work/shared/data
# Writes tests/reference/families/predict/<case>.json: the new rows (every 23rd row of the
# data, the last two given a site/nest level the fit did not see) and glmmTMB's predictions
# of types link, response, conditional, zprob and zlink, with the random effects
# (allow.new.levels = TRUE: unseen levels get 0) and without them (re.form = NA).
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
datadir <- file.path(here, "data")
source(file.path(here, "..", "load_data.R"))
source(file.path(here, "cases_families.R"))
outdir <- file.path(here, "predict")
dir.create(outdir, showWarnings = FALSE)
V <- function(x) I(unname(as.numeric(x)))
wanted <- c("salamanders_zip", "salamanders_zinb2", "owls_zinb1")
for (case in cases) {
  if (!(case$name %in% wanted)) next
  d <- load_csv(case$data)
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  m <- glmmTMB(as.formula(case$formula), data = d, family = case$family,
               ziformula = as.formula(case$zi))
  rows <- seq(1, nrow(d), by = 23)
  nd <- d[rows, ]
  group <- if (case$data == "Owls") "Nest" else "site"
  nd[[group]] <- as.character(nd[[group]])
  nd[[group]][(nrow(nd) - 1):nrow(nd)] <- "unseen"
  res <- list(name = case$name, glmmTMB_version = as.character(packageVersion("glmmTMB")),
              rows = V(rows - 1), group = group, new_level = "unseen")
  for (type in c("link", "response", "conditional", "zprob", "zlink")) {
    res[[type]] <- V(predict(m, newdata = nd, type = type, allow.new.levels = TRUE))
    res[[paste0(type, "_population")]] <- V(predict(m, newdata = nd, type = type, re.form = NA))
  }
  write_json(res, file.path(outdir, paste0(case$name, ".json")), digits = NA, auto_unbox = TRUE)
  message(case$name, " done")
}
