/* threads.h - the one way collabc's C core starts threads: n workers running the same
 * function on a shared job, the calling thread being one of them. Plain pthreads; a thread
 * that fails to start leaves its share to the others (the job's workers take work from a
 * shared queue), so the call still completes, only with fewer threads. */
#ifndef CF_THREADS_H
#define CF_THREADS_H
#include <stdint.h>

/* the most threads any driver starts (more cores than this are left to other work) */
#define CF_MAX_THREADS 64

/* Runs fn(job) on n_threads threads at once (clamped to [1, CF_MAX_THREADS]), the caller's
 * among them, and returns when every one has returned; the return value is the number of
 * threads that ran (at least 1). fn must take its work from the job under the job's own
 * lock. */
int cf_run_threads(int n_threads, void *(*fn)(void *), void *job);

/* A team: helper threads that stay up across many short parallel steps (the exact path's
 * optimizer step, one per batch, tens of microseconds each, where starting threads or waking
 * sleeping ones would cost as much as the step). cf_team_run(t, arg) runs fn(arg, c) for every
 * chunk c in [0, n_chunks) and returns when all are done; each chunk runs on whichever thread
 * claims it first, the caller's among them, so a helper the system has not scheduled never
 * holds work it has not started. Between runs a helper spins for a while (about 50 us), then
 * sleeps until the next run. Helpers run with the floating-point mode the creating thread had
 * at cf_team_start (flushed subnormals stay flushed). A team has at most cf_cores() threads
 * (helpers that spin would only take turns). cf_team_start gives
 * NULL for fewer than 2 threads, chunks or cores, or when no helper could start; cf_team_run and cf_team_stop do nothing
 * with NULL, so the caller then runs the work itself. The chunks must give the same result in
 * any order and on any thread. One caller at a time. */
typedef struct cf_team cf_team;
/* the cores this process may run on (its CPU affinity where the system tells it, else the cores
 * online), at least 1, at most CF_MAX_THREADS */
int cf_cores(void);
cf_team *cf_team_start(int n_threads, void (*fn)(void *arg, int64_t chunk), int64_t n_chunks);
void cf_team_run(cf_team *t, void *arg);
void cf_team_stop(cf_team *t);

#endif
