# Shared by the GLMM-family benchmark workers (glmm_families_worker.R,
# glmm_families_more_worker.R): a data set read as the tests read it, and one timing loop.

# The data set `name` from the family references' own directory `own` when it is there,
# else from `shared`, with the factor levels of its schema.json.
load_set <- function(name, shared, own) {
  dir <- if (file.exists(file.path(own, paste0(name, ".csv")))) own else shared
  schema <- jsonlite::fromJSON(file.path(dir, "schema.json"), simplifyVector = TRUE)
  d <- read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in names(schema[[name]]$factors)) {
    f <- schema[[name]]$factors[[v]]
    d[[v]] <- factor(as.character(d[[v]]), levels = f$levels, ordered = isTRUE(f$ordered))
  }
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  d
}

# f() once to warm up, then `repeats` times: wall and CPU (user + system) per fit, and the
# last fit's logLik.
time_it <- function(f, repeats) {
  m <- f()
  times <- numeric(repeats); cpu <- numeric(repeats)
  for (i in seq_len(repeats)) {
    t0 <- proc.time(); m <- f(); t1 <- proc.time()
    times[i] <- t1[["elapsed"]] - t0[["elapsed"]]
    cpu[i] <- (t1[["user.self"]] + t1[["sys.self"]]) - (t0[["user.self"]] + t0[["sys.self"]])
  }
  list(times = times, cpu = cpu, loglik = as.numeric(logLik(m)))
}
