# The data sets as the project's datasets load them: CSV plus schema.json's factor levels.
# Sourced by the reference scripts; defines load_csv(name) for DATADIR `datadir`.
suppressMessages(library(jsonlite))
schema <- fromJSON(file.path(datadir, "schema.json"), simplifyVector = TRUE)
load_csv <- function(name) {
  d <- read.csv(file.path(datadir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in names(schema[[name]]$factors)) {
    f <- schema[[name]]$factors[[v]]
    d[[v]] <- factor(as.character(d[[v]]), levels = f$levels, ordered = isTRUE(f$ordered))
  }
  d
}
