#!/usr/bin/env Rscript
## One fresh-process flexmix fit for benchmarks/flexmix_compare.py; prints one JSON line.
##
## The fit is what a flexmix user runs for a softmax-gated Gaussian mixture of experts with
## restarts (as in ../shared/peers/flexmix_timing.R):
##   stepFlexmix(y ~ x1 + ... + xd, data, k = K, nrep = NREP,
##               concomitant = FLXPmultinom(~ x1 + ... + xd))
## under flexmix's default control (tolerance 1e-6 relative, iter.max 200, minprior 0.05).
## The parent process pins this script to one core and measures wall time and peak memory from
## outside; the line printed here holds the time of loading flexmix, reading the data and fitting,
## the best repetition's iterations, its log-likelihood and the number of components it kept.
##
## Usage (from the repository root):
##   Rscript benchmarks/flexmix_compare.R DATA.csv K [NREP=5] [SEED=1]
## DATA.csv has columns y, x1..xd (written by flexmix_compare.py).
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages({
  library(flexmix)
  library(jsonlite)
})
load_s <- proc.time()[["elapsed"]] - t0

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: Rscript flexmix_compare.R DATA.csv K [NREP] [SEED]")
path <- args[1]
K <- as.integer(args[2])
nrep <- if (length(args) >= 3) as.integer(args[3]) else 5L
seed <- if (length(args) >= 4) as.integer(args[4]) else 1L

t0 <- proc.time()[["elapsed"]]
dat <- read.csv(path)
data_s <- proc.time()[["elapsed"]] - t0
xs <- setdiff(names(dat), "y")
fo <- as.formula(paste("y ~", paste(xs, collapse = " + ")))
co <- as.formula(paste("~", paste(xs, collapse = " + ")))

set.seed(seed)
t0 <- proc.time()[["elapsed"]]
fit <- tryCatch(stepFlexmix(fo, data = dat, k = K, nrep = nrep, verbose = FALSE,
                            concomitant = FLXPmultinom(co)),
                error = function(e) e)
fit_s <- proc.time()[["elapsed"]] - t0
ok <- !inherits(fit, "error")
out <- list(load_s = load_s, data_s = data_s, fit_s = fit_s, n = nrow(dat),
            n_iter = if (ok) fit@iter else NA,
            loglik = if (ok) as.numeric(logLik(fit)) else NA,
            k_final = if (ok) fit@k else NA,
            converged = if (ok) fit@converged else NA,
            error = if (ok) "" else conditionMessage(fit),
            R = R.version.string, flexmix = as.character(packageVersion("flexmix")))
cat(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null"), "\n")
