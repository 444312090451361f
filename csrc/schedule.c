/* schedule.c - cosine annealing and fastai's one-cycle combination of two cosines. */
#include <math.h>
#include "schedule.h"

static const double CF_PI = 3.14159265358979323846;

double cf_sched_cos(double start, double end, double pos) {
    return start + (1.0 + cos(CF_PI * (1.0 - pos))) * (end - start) / 2.0;
}

double cf_onecycle_value(double pos, double start, double middle, double end, double pct_start) {
    if (pos < pct_start) return cf_sched_cos(start, middle, pos / pct_start);
    if (pct_start >= 1.0) return middle;
    return cf_sched_cos(middle, end, (pos - pct_start) / (1.0 - pct_start));
}

void cf_onecycle_fill(double *out, const double *pos, int64_t N, double start, double middle,
                      double end, double pct_start) {
    for (int64_t n = 0; n < N; n++)
        out[n] = cf_onecycle_value(pos[n], start, middle, end, pct_start);
}
