/* threads.h - the one way collabc's C core starts threads: n workers running the same
 * function on a shared job, the calling thread being one of them. Plain pthreads; a thread
 * that fails to start leaves its share to the others (the job's workers take work from a
 * shared queue), so the call still completes, only with fewer threads. */
#ifndef CF_THREADS_H
#define CF_THREADS_H

/* the most threads any driver starts (more cores than this are left to other work) */
#define CF_MAX_THREADS 64

/* Runs fn(job) on n_threads threads at once (clamped to [1, CF_MAX_THREADS]), the caller's
 * among them, and returns when every one has returned; the return value is the number of
 * threads that ran (at least 1). fn must take its work from the job under the job's own
 * lock. */
int cf_run_threads(int n_threads, void *(*fn)(void *), void *job);

#endif
