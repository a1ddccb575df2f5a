/*
 * LD_PRELOAD shim that moves a process's wall clock (CLOCK_REALTIME, gettimeofday, time) by an
 * offset the caller can change while the process runs: the file named by GRINDER_CLOCK_OFFSET_FILE
 * holds the offset in whole seconds (may be negative). Monotonic clocks are left alone, which is
 * what a wall-clock step (NTP step, operator `date -s`) does to a real host. Built by the fault
 * tests and the chaos harness with `cc -shared -fPIC`; see tools/kit/clock-shim.ts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static clock_gettime_fn real_clock_gettime;
static gettimeofday_fn real_gettimeofday;
static long long cached_offset;
static long long checked_at_ns;

static void init(void) {
  if (!real_clock_gettime) real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
  if (!real_gettimeofday) real_gettimeofday = (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday");
}

/* The offset in seconds, re-read from the file at most every 5 ms of monotonic time. */
static long long offset_seconds(void) {
  struct timespec mono;
  init();
  real_clock_gettime(CLOCK_MONOTONIC, &mono);
  long long now_ns = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
  if (checked_at_ns != 0 && now_ns - checked_at_ns < 5000000LL) return cached_offset;
  checked_at_ns = now_ns;
  const char *path = getenv("GRINDER_CLOCK_OFFSET_FILE");
  if (!path) return cached_offset = 0;
  FILE *f = fopen(path, "r");
  if (!f) return cached_offset;
  long long v = 0;
  if (fscanf(f, "%lld", &v) == 1) cached_offset = v;
  fclose(f);
  return cached_offset;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  init();
  int r = real_clock_gettime(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset_seconds();
  return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
  init();
  int r = real_gettimeofday(tv, tz);
  if (r == 0 && tv) tv->tv_sec += offset_seconds();
  return r;
}

time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
