// SPDX-License-Identifier: GPL-2.0
/* getpid cost on one CPU: `getpid CPU N` prints the mean ns per call
 * (best of 5 rounds of N calls), the syscall path every tracer taxes. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	int cpu = argc > 1 ? atoi(argv[1]) : 0;
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s)) {
		perror("getpid: sched_setaffinity");
		return 2;
	}
	double best = 1e30;
	for (int r = 0; r < 5; r++) {
		double t0 = now();
		for (long i = 0; i < n; i++)
			syscall(SYS_getpid);
		double per = (now() - t0) / n;
		if (per < best)
			best = per;
	}
	printf("%.1f\n", best);
	return 0;
}
