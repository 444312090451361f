/* collabc.h - the umbrella header of collabc's C core: plain C11, no Python.
 * Shape letters used in every kernel comment:
 *   B = batch rows, K = factors, NU / NI = users / items (incl. '#na#'),
 *   H = hidden width, N = element count, Q / NC = ranking queries / candidates.
 * Families: embedding, dotbias, activation, linear, batchnorm, loss, optim, schedule, rng;
 * drivers: train (dot-product models), nn (embedding + MLP models); rank (top-n scoring);
 * tensorops (the generic tensor layer's gather / scatter-add / ordered row sum).
 * Conventions: outputs first, then inputs, then sizes, then hyperparameters; forward
 * overwrites, backward accumulates (+=) and the caller zeroes; kernels never allocate
 * (drivers allocate only their scratch), print or exit; failures are CF_ERR_* codes. */
#ifndef COLLABC_H
#define COLLABC_H

#define CF_VERSION "0.1.0"

#include "status.h"
#include "embedding.h"
#include "dotbias.h"
#include "activation.h"
#include "loss.h"
#include "optim.h"
#include "schedule.h"
#include "train.h"
#include "linear.h"
#include "batchnorm.h"
#include "rng.h"
#include "nn.h"
#include "sparse.h"
#include "rank.h"
#include "threads.h"
#include "tensorops.h"
#include "als.h"
#include "bpr.h"
#include "bfm.h"

#endif
