// SPDX-License-Identifier: GPL-2.0
/*
 * storm: the housekeeping workloads of bench/sender-cost.sh. A thread
 * spins on CPU V (so the process's mm is live there) while the main
 * thread, on CPU H, works as fast as it can for SECONDS; prints ops/s.
 *   storm V H SECONDS                 each op maps, touches and unmaps one
 *                                     anonymous page: a TLB-flush IPI to V
 *   storm V H SECONDS pagecache FILE  each op writes 64 KiB of a 64 MiB
 *                                     file (the page cache, dirtied), then
 *                                     maps 256 KiB of it, reads a byte of
 *                                     each page and unmaps it: minor
 *                                     faults, writeback, and one TLB-flush
 *                                     IPI to V per op
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
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

#define FILE_SIZE (64 << 20)
#define WRITE_SIZE (64 << 10)
#define MAP_SIZE (256 << 10)

static long anon_ops(void)
{
	for (int i = 0; i < 256; i++) {
		char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		munmap(p, 4096);
	}
	return 256;
}

static int fd = -1;
static char wbuf[WRITE_SIZE];

static long pagecache_ops(void)
{
	static long n;
	volatile char sink = 0;
	for (int i = 0; i < 16; i++, n++) {
		off_t w = (n * WRITE_SIZE) % FILE_SIZE, m = (n * MAP_SIZE) % FILE_SIZE;
		wbuf[0] = (char)n;
		if (pwrite(fd, wbuf, WRITE_SIZE, w) != WRITE_SIZE)
			exit(1);
		char *p = mmap(NULL, MAP_SIZE, PROT_READ, MAP_SHARED, fd, m);
		if (p == MAP_FAILED)
			exit(1);
		for (long o = 0; o < MAP_SIZE; o += 4096)
			sink += p[o];
		munmap(p, MAP_SIZE);
	}
	(void)sink;
	return 16;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int v = atoi(argv[1]), h = atoi(argv[2]);
	double secs = atof(argv[3]);
	long (*op)(void) = anon_ops;
	if (argc >= 6 && !strcmp(argv[4], "pagecache")) {
		fd = open(argv[5], O_RDWR | O_CREAT, 0600);
		if (fd < 0 || ftruncate(fd, FILE_SIZE))
			return 1;
		/* Fill it once so that every op finds its pages cached. */
		for (off_t o = 0; o < FILE_SIZE; o += WRITE_SIZE)
			if (pwrite(fd, wbuf, WRITE_SIZE, o) != WRITE_SIZE)
				return 1;
		op = pagecache_ops;
	}
	pthread_t th;
	pin(h);
	pthread_create(&th, NULL, spin, (void *)(long)v);
	double t0 = now(), t;
	long ops = 0;
	do {
		ops += op();
		t = now();
	} while (t - t0 < secs);
	stop = 1;
	pthread_join(th, NULL);
	printf("%.0f\n", ops / (t - t0));
	return 0;
}
