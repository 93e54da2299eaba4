# R's terms() of right-hand sides: term labels (in R's order) and the intercept, the
# reference for mixedmodels.formula.terms.
# usage: Rscript make_terms_reference.R OUTFILE
suppressMessages(library(jsonlite))
out <- commandArgs(trailingOnly = TRUE)[1]
rhs <- c(
  "a", "a + b", "b + a", "a:b", "a*b", "a*b*c", "(a + b + c)^2", "(a + b + c)^3",
  "a/b", "a/b/c", "(a + b)/c", "b %in% a", "a*b - a", "a*b - a:b", "a - 1", "0 + a",
  "-1 + a", "a + 0", "1 + a", "a + b - 1 + 1", "a:b + a", "b:a + a:b", "a*(b + c)",
  "(a + b)*(c + d)", "log(x) * f", "I(x^2) + x", "poly(x, 2) * f", "x + f:x",
  "a:b:c + a", "(a + b)^2 - a:b", "a + a", "a*b + b*a", "f/(x + z)", "-a + a + b"
)
res <- lapply(rhs, function(r) {
  t <- terms(as.formula(paste("~", r)))
  list(rhs = r, labels = I(attr(t, "term.labels")), intercept = attr(t, "intercept") == 1)
})
write_json(res, out, auto_unbox = TRUE, pretty = TRUE)
