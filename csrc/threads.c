/* threads.c - cf_run_threads: start n-1 pthreads on fn(job), run fn(job) here too, join;
 * cf_team: helpers that stay up across many short runs (threads.h). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "fpmode.h"
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

/* ------------------------------------------------------------------------ cf_team */

int cf_cores(void) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 1) return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (n > CF_MAX_THREADS ? CF_MAX_THREADS : (int)n) : 1;
}

/* spins of a helper waiting for the next run before it sleeps (a pause is about 20-150
 * cycles: some tens of microseconds in all) */
#define CF_TEAM_SPINS 2000

struct cf_team {
    void (*fn)(void *, int64_t);
    int64_t n_chunks;
    void *arg;               /* this run's; written before the run's ticket is published */
    atomic_uint_fast64_t ticket; /* run number << 32 | the next chunk to claim */
    atomic_int_fast64_t done;    /* chunks of this run finished */
    atomic_int quit;
    atomic_int sleepers;     /* helpers waiting on wake */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    cf_fp_mode mode;         /* the creating thread's, set in every helper */
    int n_helpers;
    pthread_t tid[CF_MAX_THREADS];
};

static inline void cf_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* claims and runs one chunk of run number `run`; 0 when none is left (or the run is over) */
static int team_claim(cf_team *t, uint64_t run) {
    uint_fast64_t cur = atomic_load(&t->ticket);
    for (;;) {
        if (cur >> 32 != run || (int64_t)(cur & 0xffffffffu) >= t->n_chunks) return 0;
        /* claiming chunk c of this run: the caller cannot finish the run (and reuse arg)
         * before this chunk is counted done */
        if (atomic_compare_exchange_weak(&t->ticket, &cur, cur + 1)) {
            t->fn(t->arg, (int64_t)(cur & 0xffffffffu));
            atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
            return 1;
        }
    }
}

static void *team_helper(void *arg) {
    cf_team *t = arg;
    cf_fp_set(t->mode);
    uint64_t seen = 0;
    for (;;) {
        uint64_t run = atomic_load(&t->ticket) >> 32;
        for (int spins = 0; run == seen && spins < CF_TEAM_SPINS; spins++) {
            cf_relax();
            run = atomic_load(&t->ticket) >> 32;
        }
        if (run == seen) { /* sleep: cf_team_run wakes sleepers after publishing its ticket */
            pthread_mutex_lock(&t->lock);
            atomic_fetch_add(&t->sleepers, 1);
            while ((run = atomic_load(&t->ticket) >> 32) == seen) pthread_cond_wait(&t->wake, &t->lock);
            atomic_fetch_sub(&t->sleepers, 1);
            pthread_mutex_unlock(&t->lock);
        }
        seen = run;
        if (atomic_load(&t->quit)) return NULL;
        while (team_claim(t, run)) {
        }
    }
}

cf_team *cf_team_start(int n_threads, void (*fn)(void *, int64_t), int64_t n_chunks) {
    if (n_threads > CF_MAX_THREADS) n_threads = CF_MAX_THREADS;
    /* helpers spin: more threads than cores would only take turns spinning */
    const int cores = cf_cores();
    if (n_threads > cores) n_threads = cores;
    if (n_chunks < n_threads) n_threads = (int)n_chunks;
    if (n_threads < 2 || n_chunks > 0xffffffff) return NULL;
    cf_team *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->n_chunks = n_chunks;
    atomic_init(&t->ticket, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->quit, 0);
    atomic_init(&t->sleepers, 0);
    t->mode = cf_fp_current();
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->wake, NULL) != 0) {
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    for (int h = 0; h < n_threads - 1; h++) {
        if (pthread_create(&t->tid[t->n_helpers], NULL, team_helper, t) != 0) break;
        t->n_helpers++;
    }
    if (t->n_helpers == 0) { /* no helper: the caller runs the chunks alone */
        cf_team_stop(t);
        return NULL;
    }
    return t;
}

/* publishes run number `run` (next chunk 0) and wakes the helpers that sleep */
static void team_publish(cf_team *t, uint64_t run) {
    atomic_store(&t->ticket, (uint_fast64_t)run << 32);
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->lock);
    }
}

void cf_team_run(cf_team *t, void *arg) {
    if (!t) return;
    const uint64_t run = (atomic_load(&t->ticket) >> 32) + 1;
    t->arg = arg;
    atomic_store(&t->done, 0);
    team_publish(t, run);
    while (team_claim(t, run)) {
    }
    while (atomic_load_explicit(&t->done, memory_order_acquire) < t->n_chunks) cf_relax();
}

void cf_team_stop(cf_team *t) {
    if (!t) return;
    atomic_store(&t->quit, 1);
    team_publish(t, (atomic_load(&t->ticket) >> 32) + 1);
    for (int h = 0; h < t->n_helpers; h++) pthread_join(t->tid[h], NULL);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
