// SPDX-License-Identifier: GPL-2.0
/*
 * storm: the IPI-heavy housekeeping workload of bench/sender-cost.sh. A
 * thread spins on CPU V (so the process's mm is live there) while the
 * main thread, on CPU H, maps, touches and unmaps one page as fast as it
 * can: every munmap sends a TLB-flush IPI to CPU V. Prints ops/s.
 *   storm V H SECONDS
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static volatile int stop;

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static void *spin(void *arg)
{
	pin((int)(long)arg);
	while (!stop)
		;
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int v = atoi(argv[1]), h = atoi(argv[2]);
	double secs = atof(argv[3]);
	pthread_t th;
	pin(h);
	pthread_create(&th, NULL, spin, (void *)(long)v);
	double t0 = now(), t;
	long ops = 0;
	do {
		for (int i = 0; i < 256; i++) {
			char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			p[0] = 1;
			munmap(p, 4096);
		}
		ops += 256;
		t = now();
	} while (t - t0 < secs);
	stop = 1;
	pthread_join(th, NULL);
	printf("%.0f\n", ops / (t - t0));
	return 0;
}
