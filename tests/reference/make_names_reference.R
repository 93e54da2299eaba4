# R's model.matrix for right-hand sides that use R's expression language: column names
# and values, the reference for mixedmodels.design.rsyntax.
# usage: Rscript make_names_reference.R OUTFILE DATADIR
suppressMessages(library(jsonlite))
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; datadir <- args[2]
script_dir <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(script_dir, "load_data.R"))
cases <- list(
  list(data = "sleepstudy", rhs = "I(Days/2) + log(Days + 1) + sqrt(Days)"),
  list(data = "sleepstudy", rhs = "exp(Days/10) + sin(2 * pi * Days/10) + cos(Days)"),
  list(data = "sleepstudy", rhs = "poly(Days, 2, raw = TRUE)"),
  list(data = "sleepstudy", rhs = "poly(Days, 3)"),
  list(data = "sleepstudy", rhs = "factor(Days)"),
  list(data = "sleepstudy", rhs = "I((Days - 4.5)^2) + abs(Days - 5) + floor(Days/3)"),
  list(data = "sleepstudy", rhs = "log(Days + 1, base = 2) + log10(Days + 1) + log2(Days + 1)"),
  list(data = "sleepstudy", rhs = "factor(Days > 4)"),
  list(data = "sleepstudy", rhs = "0 + as.factor(Days)"),
  list(data = "sleepstudy", rhs = "I(-Days) + I(Days * 2 - 1) + exp(-Days)"),
  list(data = "Orthodont", rhs = "Sex * I(age - 11)"),
  list(data = "Orthodont", rhs = "as.numeric(Sex) + age:Sex"),
  list(data = "Arabidopsis", rhs = "log(1 + total.fruits) + factor(nutrient) * amd"),
  list(data = "Arabidopsis", rhs = "total.fruits + sqrt(total.fruits + 0.5)"),
  # a logical column (derive: name = R/pandas expression evaluated on the data)
  list(data = "sleepstudy", rhs = "late * Days", derive = c(late = "Days > 4")),
  list(data = "sleepstudy", rhs = "0 + late", derive = c(late = "Days > 4")),
  # R's contrasts = list(...) (the contrasts argument of lmer/glmer)
  list(data = "Machines", rhs = "Machine * score", contrasts = list(Machine = "contr.sum")),
  list(data = "Machines", rhs = "Machine", contrasts = list(Machine = "contr.helmert")),
  list(data = "ergoStool", rhs = "Type", contrasts = list(Type = "contr.poly")),
  list(data = "ergoStool", rhs = "Type", contrasts = list(Type = "contr.treatment")),
  # R's terms: interactions, nesting, powers, removal, no intercept (R's TermCode rules)
  list(data = "Arabidopsis", rhs = "amd * status"),
  list(data = "Arabidopsis", rhs = "factor(nutrient):amd"),
  list(data = "Arabidopsis", rhs = "0 + amd:status"),
  list(data = "Arabidopsis", rhs = "(amd + status + reg)^2"),
  list(data = "Arabidopsis", rhs = "reg/amd"),
  list(data = "Arabidopsis", rhs = "amd %in% reg"),
  list(data = "Arabidopsis", rhs = "amd * status - amd"),
  list(data = "Arabidopsis", rhs = "-1 + amd + status"),
  list(data = "Arabidopsis", rhs = "log(1 + total.fruits) * amd - 1"),
  list(data = "Arabidopsis", rhs = "amd:log(1 + total.fruits) + status"),
  list(data = "Arabidopsis", rhs = "factor(nutrient) * amd * status"),
  list(data = "Arabidopsis", rhs = "C(status, contr.sum) + amd"),
  list(data = "Orthodont", rhs = "poly(age, 2) * Sex"),
  list(data = "Orthodont", rhs = "scale(age) + Sex:age"),
  list(data = "Orthodont", rhs = "I(age > 10) + I(Sex == \"Male\")"),
  list(data = "Orthodont", rhs = "Sex * age - 1"),
  list(data = "Orthodont", rhs = "0 + age + Sex"),
  list(data = "Orthodont", rhs = "pmin(age, 10) + round(age/3) + as.numeric(Sex)"),
  list(data = "Machines", rhs = "Machine + Machine:Worker"),
  list(data = "cake", rhs = "recipe * temp"),
  list(data = "sleepstudy", rhs = "Days %% 3 + Days %/% 4 + I(-Days^2)")
)
res <- lapply(cases, function(case) {
  d <- load_csv(case$data)
  for (v in names(case$derive)) d[[v]] <- eval(parse(text = case$derive[[v]]), d)
  m <- model.matrix(as.formula(paste("~", case$rhs)), d, contrasts.arg = case$contrasts)
  list(data = case$data, rhs = case$rhs, derive = as.list(case$derive),
       contrasts = case$contrasts, columns = I(colnames(m)), matrix = unname(m))
})
write_json(res, out, digits = NA, auto_unbox = TRUE, pretty = FALSE)
