/*
 * jitter.c - how steady this machine is, with nothing of verdict in it.
 *
 *   jitter [COUNT]
 *
 * Times COUNT (default 50000) runs of the same short busy loop (about 40 us
 * here) on one thread and prints their p50, p99, p99.9 and max in
 * microseconds.  On a quiet core every run takes the same time; what the
 * tail adds is time the thread did not get: the host's other work (steal),
 * interrupts, other threads.  `make bench` prints it beside the latency
 * rows, whose tail it bounds from below.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 50000, i, k;
  volatile unsigned long sink = 0;
  double *d;
  if (n < 1000) {
    fprintf(stderr, "usage: jitter [COUNT >= 1000]\n");
    return 2;
  }
  d = malloc((size_t)n * sizeof *d);
  if (!d)
    return 1;
  for (i = 0; i < n; i++) {
    double t0 = now_us();
    for (k = 0; k < 20000; k++)
      sink += (unsigned long)(k * k);
    d[i] = now_us() - t0;
  }
  qsort(d, (size_t)n, sizeof *d, cmp);
  printf("a %.0f us busy loop alone, %ld runs: p50 %.0f us, p99 %.0f us, "
         "p99.9 %.0f us, max %.0f us\n",
         d[n / 2], n, d[n / 2], d[n * 99 / 100], d[n * 999 / 1000], d[n - 1]);
  free(d);
  return 0;
}
