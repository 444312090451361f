/* schedule.h - learning-rate and momentum schedules as pure functions of the training
 * position pos in [0, 1): no state, no allocation. */
#ifndef CF_SCHEDULE_H
#define CF_SCHEDULE_H
#include <stdint.h>

/* start + (1 + cos(pi * (1 - pos))) * (end - start) / 2.
 * reference: fastai callback/schedule.py sched_cos */
double cf_sched_cos(double start, double end, double pos);

/* fastai's one-cycle value: cosine start -> middle over [0, pct_start), then cosine
 * middle -> end over [pct_start, 1], each phase on its local position.
 * reference: fastai callback/schedule.py combined_cos / combine_scheds */
double cf_onecycle_value(double pos, double start, double middle, double end, double pct_start);

/* out[N] = cf_onecycle_value(pos[n], ...) for every n. */
void cf_onecycle_fill(double *out, const double *pos, int64_t N, double start, double middle,
                      double end, double pct_start);

#endif
