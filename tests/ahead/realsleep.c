/* Preloaded before libfaketime by `make test-ahead`.

   The suite runs a year ahead with libfaketime moving the calendar only
   (FAKETIME_DONT_FAKE_MONOTONIC=1): a shifted monotonic clock makes every timed
   lock wait (sem_clockwait, which libfaketime does not intercept) last the year.
   libfaketime 0.9.10 still shifts the absolute deadline of a monotonic
   clock_nanosleep, so Python's time.sleep fails with EINVAL. A sleep on the
   monotonic clock measures an interval, never the calendar, so it goes straight
   to the kernel; a deadline on the wall clock is libfaketime's to translate. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request, struct timespec *remain)
{
    if ((flags & TIMER_ABSTIME) && (clock == CLOCK_REALTIME || clock == CLOCK_TAI)) {
        clock_nanosleep_fn faked = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
        return faked(clock, flags, request, remain);
    }
    return syscall(SYS_clock_nanosleep, clock, flags, request, remain) == 0 ? 0 : errno;
}
