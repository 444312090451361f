/* threads.c - cf_run_threads: start n-1 pthreads on fn(job), run fn(job) here too, join. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include "threads.h"

int cf_run_threads(int n_threads, void *(*fn)(void *), void *job) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > CF_MAX_THREADS) n_threads = CF_MAX_THREADS;
    pthread_t tid[CF_MAX_THREADS];
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        if (pthread_create(&tid[started], NULL, fn, job) != 0) break;
        started++;
    }
    fn(job);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    return started + 1;
}
