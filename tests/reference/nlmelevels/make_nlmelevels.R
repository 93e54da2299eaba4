# Nested grouping levels in mm.nlme against nlme::nlme (issue 16, nlmelevels): cases beyond
# tests/reference/nlmecheck's nested_groups.  Run from the repository root:
#   Rscript tests/reference/nlmelevels/make_nlmelevels.R
# Writes tests/reference/nlmelevels/nlmelevels_reference.json and the simulated data as
# tests/reference/nlmelevels/data/<case>.csv.  Each case is fitted with nlme's tight
# control (the fixed point of the Lindstrom-Bates iteration, which mm.nlme computes):
#   nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500, maxIter = 500,
#               pnlsMaxIter = 50)
# starting from the pooled getInitial() values of the self-starting model (covariate
# effects from 0), as mm.nlme does.
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/nlmelevels"
dir.create(file.path(here, "data"), showWarnings = FALSE, recursive = TRUE)
tight <- nlmeControl(tolerance = 1e-9, pnlsTol = 1e-8, msMaxIter = 500, maxIter = 500,
                     pnlsMaxIter = 50, returnObject = TRUE)

summarise <- function(fit, newdata) {
  Q <- length(fit$modelStruct$reStruct)          # levels; reStruct lists innermost first
  re <- ranef(fit)                                # outermost first
  levels <- lapply(seq_len(Q), function(k) {
    pd <- fit$modelStruct$reStruct[[Q - k + 1]]
    vc <- as.matrix(pdMatrix(pd)) * fit$sigma^2
    r <- re[[k]]
    list(name = names(re)[k], sd = I(as.numeric(sqrt(diag(vc)))),
         cor = I(as.numeric(cov2cor(vc)[lower.tri(vc)])), names = I(colnames(vc)),
         ranef = lapply(as.list(r), as.numeric), groups = I(rownames(r)))
  })
  ll <- logLik(fit)
  s <- summary(fit)
  pr <- predict(fit, newdata = newdata, level = 0:Q)
  list(
    logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit),
    nobs = as.integer(fit$dims$N), ngroups = I(as.integer(rev(fit$dims$ngrps[1:Q]))),
    fixef = as.numeric(fixef(fit)), fixef_names = names(fixef(fit)),
    se = as.numeric(sqrt(diag(vcov(fit)))), sigma = fit$sigma,
    tTable = list(se = unname(s$tTable[, 2]), df = unname(s$tTable[, 3])),
    levels = levels,
    fitted = lapply(0:Q, function(k) as.numeric(fitted(fit, level = k))),
    coef = lapply(as.list(coef(fit)), as.numeric), coef_groups = rownames(coef(fit)),
    newdata = newdata,
    predict = lapply(seq_len(Q + 1), function(k) as.numeric(pr[[Q + k]])),
    numIter = fit$numIter)
}

cases <- list()
fit_case <- function(name, data, args, py, newdata) {
  write.csv(data, file.path(here, "data", paste0(name, ".csv")), row.names = FALSE)
  args$data <- data
  warned <- character(0)
  fit <- withCallingHandlers(do.call(nlme, c(args, list(control = tight))),
                             warning = function(w) {
                               warned <<- c(warned, conditionMessage(w))
                               invokeRestart("muffleWarning")
                             })
  cpu <- system.time(for (i in 1:3) suppressWarnings(do.call(nlme, c(args, list(control = tight)))))
  out <- summarise(fit, newdata)
  out$py <- py
  out$warnings <- I(warned)
  out$cpu <- unname(cpu["user.self"] + cpu["sys.self"]) / 3
  cases[[name]] <<- out
}
gi <- function(formula, data) as.list(getInitial(formula, data = data))

# ---- 1. the nlmecheck nested_groups data, REML
d <- read.csv("tests/reference/nlmecheck/data/nested_groups.csv")
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
new1 <- data.frame(age = c(50, 700, 2000), site = c("s1", "s3", "s4"),
                   plot = c("p2", "p5", "p1"))
fit_case("nested_reml", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | site/plot, start = unlist(st), method = "REML"),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | site/plot",
                   method = "REML"),
         newdata = new1)

# ---- 2. two random effects at each level (Asym and xmid vary by site and by plot)
set.seed(4242)
ages <- c(100, 250, 400, 550, 700, 900, 1100, 1400)
d <- do.call(rbind, lapply(1:6, function(s) {
  sa <- rnorm(1, 0, 15); sx <- rnorm(1, 0, 40)
  do.call(rbind, lapply(1:4, function(k) {
    A <- 180 + sa + rnorm(1, 0, 10); x <- 700 + sx + rnorm(1, 0, 30)
    data.frame(site = paste0("s", s), plot = paste0("p", k), age = ages,
               size = A / (1 + exp((x - ages) / 300)) + rnorm(length(ages), 0, 4))
  }))
}))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
new2 <- data.frame(age = c(50, 700, 2000), site = c("s1", "s3", "s6"),
                   plot = c("p2", "p4", "p1"))
fit_case("nested_diag2", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = list(site = pdDiag(Asym + xmid ~ 1), plot = pdDiag(Asym + xmid ~ 1)),
              start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1",
                   random = "pdDiag(Asym + xmid ~ 1) | site/plot", method = "ML"),
         newdata = new2)
fit_case("nested_general2", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym + xmid ~ 1 | site/plot, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym + xmid ~ 1 | site/plot",
                   method = "ML"),
         newdata = new2)

# ---- 3. a covariate on the asymptote (a site-level one): Asym.(Intercept) at both levels
d$x <- c(s1 = -1, s2 = -0.4, s3 = 0, s4 = 0.3, s5 = 0.8, s6 = 1.2)[d$site]
new3 <- cbind(new2, x = c(-1, 0, 1.2))
fit_case("nested_covariate", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal),
              fixed = list(Asym ~ x, xmid + scal ~ 1), random = Asym ~ 1 | site/plot,
              start = c(st$Asym, 0, st$xmid, st$scal)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = c("Asym ~ x", "xmid + scal ~ 1"), random = "Asym ~ 1 | site/plot",
                   method = "ML"),
         newdata = new3)

# ---- 4. three levels: region / site / plot
set.seed(5151)
ages <- c(100, 300, 500, 700, 900, 1200, 1500)
d <- do.call(rbind, lapply(1:4, function(r) {
  er <- rnorm(1, 0, 12)
  do.call(rbind, lapply(1:3, function(s) {
    es <- rnorm(1, 0, 8)
    do.call(rbind, lapply(1:3, function(k) {
      A <- 180 + er + es + rnorm(1, 0, 6)
      data.frame(region = paste0("r", r), site = paste0("s", s), plot = paste0("p", k),
                 age = ages,
                 size = A / (1 + exp((700 - ages) / 300)) + rnorm(length(ages), 0, 3))
    }))
  }))
}))
st <- gi(size ~ SSlogis(age, Asym, xmid, scal), d)
fit_case("nested_three", d,
         list(model = size ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
              random = Asym ~ 1 | region/site/plot, start = unlist(st)),
         py = list(model = "size ~ SSlogis(age, Asym, xmid, scal)",
                   fixed = "Asym + xmid + scal ~ 1", random = "Asym ~ 1 | region/site/plot",
                   method = "ML"),
         newdata = data.frame(age = c(50, 700, 2000), region = c("r1", "r2", "r4"),
                              site = c("s1", "s3", "s2"), plot = c("p2", "p1", "p3")))

writeLines(toJSON(list(nlme_version = as.character(packageVersion("nlme")),
                       R_version = R.version.string, cases = cases),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "nlmelevels_reference.json"))
