// SPDX-License-Identifier: GPL-2.0
/*
 * noisegen: a victim busy-looping on one CPU and, on demand, the
 * interference isol must attribute (capture engine tests, lab, benches).
 *
 *   noisegen --cpu N [--hk M] [--tlb] [--jit] [--fault] [--timer]
 *            [--duration S] [--counter FILE] [--ipi-storm]
 *
 * The victim (main thread) spins on CPU N incrementing a counter with a
 * single atomic instruction, so an interrupt lands either before or after
 * an increment, never inside one. With --counter FILE the counter lives in
 * a shared mapping of FILE, readable after the victim dies.
 * Generators run in sibling threads on housekeeping CPU M (default: the
 * lowest allowed CPU other than N):
 *   --tlb       mmap/touch/munmap and mprotect: TLB-flush IPIs to CPU N
 *   --jit       setsockopt(SO_ATTACH_FILTER): BPF JIT text patching IPIs
 *   --ipi-storm munmap as fast as possible (flood)
 * In the victim itself:
 *   --fault     touches a fresh page every --period-us (default 1 ms): page faults
 *   --timer     a 10 ms POSIX CPU-independent timer (hrtimer on CPU N)
 * --go FILE makes the generator threads wait until FILE exists, so a test
 * can arm isol first.
 * --fifo PRIO runs the victim (only: the generators keep their policy)
 * SCHED_FIFO, as latency-critical loops do.
 * Prints "tid=T counter=0xADDR" once the victim runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static int hk_cpu = -1;
static unsigned period_us = 1000;
static const char *go_file;

/* Generators wait for the go file (polled from the housekeeping CPU). */
static void wait_go(void)
{
	while (go_file && access(go_file, F_OK) && !stop)
		usleep(10000);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no kernel entry */
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s)) {
		fprintf(stderr, "noisegen: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		exit(2);
	}
}

static void *tlb_thread(void *arg)
{
	long storm = (long)arg;
	pin(hk_cpu);
	wait_go();
	while (!stop) {
		char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue;
		p[0] = 1;
		if (!storm) {
			mprotect(p, 4096, PROT_READ);
			mprotect(p, 4096, PROT_READ | PROT_WRITE);
		}
		munmap(p, 4096);
		if (!storm)
			usleep(period_us);
	}
	return NULL;
}

static void *jit_thread(void *arg)
{
	(void)arg;
	pin(hk_cpu);
	struct sock_filter code[] = {
		{ BPF_LD | BPF_W | BPF_ABS, 0, 0, 0 },
		{ BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x0800 },
		{ BPF_RET | BPF_K, 0, 0, 0xffff },
		{ BPF_RET | BPF_K, 0, 0, 0 },
	};
	struct sock_fprog prog = { .len = 4, .filter = code };
	wait_go();
	while (!stop) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		if (s >= 0) {
			setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
			close(s);
		}
		usleep(period_us * 10);
	}
	return NULL;
}

static void on_timer(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	int cpu = -1, tlb = 0, jit = 0, fault = 0, timer = 0, storm = 0, fifo = 0;
	double duration = 0;
	const char *counter_path = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--cpu") && i + 1 < argc) cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--hk") && i + 1 < argc) hk_cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--duration") && i + 1 < argc) duration = atof(argv[++i]);
		else if (!strcmp(a, "--counter") && i + 1 < argc) counter_path = argv[++i];
		else if (!strcmp(a, "--period-us") && i + 1 < argc) period_us = atoi(argv[++i]);
		else if (!strcmp(a, "--go") && i + 1 < argc) go_file = argv[++i];
		else if (!strcmp(a, "--fifo") && i + 1 < argc) fifo = atoi(argv[++i]);
		else if (!strcmp(a, "--tlb")) tlb = 1;
		else if (!strcmp(a, "--jit")) jit = 1;
		else if (!strcmp(a, "--fault")) fault = 1;
		else if (!strcmp(a, "--timer")) timer = 1;
		else if (!strcmp(a, "--ipi-storm")) storm = 1;
		else {
			fprintf(stderr, "noisegen: unknown argument %s\n", a);
			return 2;
		}
	}
	if (cpu < 0) {
		fprintf(stderr, "noisegen: --cpu N is required\n");
		return 2;
	}
	if (hk_cpu < 0) {
		cpu_set_t s;
		sched_getaffinity(0, sizeof(s), &s);
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (c != cpu && CPU_ISSET(c, &s)) { hk_cpu = c; break; }
	}
	if ((tlb || jit || storm) && hk_cpu < 0) {
		fprintf(stderr, "noisegen: no housekeeping CPU for the generators\n");
		return 2;
	}

	uint64_t *counter;
	if (counter_path) {
		int fd = open(counter_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || ftruncate(fd, 4096)) {
			perror("noisegen: counter file");
			return 2;
		}
		counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else {
		counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (counter == MAP_FAILED) {
		perror("noisegen: mmap");
		return 2;
	}
	*counter = 0; /* fault it in before the loop */

	pin(cpu);
	pthread_t th;
	if (tlb || storm)
		pthread_create(&th, NULL, tlb_thread, (void *)(long)storm);
	if (jit)
		pthread_create(&th, NULL, jit_thread, NULL);

	char *area = NULL;
	size_t area_pages = 1 << 16, next_page = 0;
	if (fault)
		area = mmap(NULL, area_pages * 4096, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (timer) {
		struct sigaction sa = { .sa_handler = on_timer };
		sigaction(SIGALRM, &sa, NULL);
		timer_t t;
		struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM };
		ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
		struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } };
		if (timer_create(CLOCK_MONOTONIC, &ev, &t) || timer_settime(t, 0, &its, NULL)) {
			perror("noisegen: timer");
			return 2;
		}
	}

	if (fifo) {
		/* After the generator threads exist, so they keep SCHED_OTHER. */
		struct sched_param sp = { .sched_priority = fifo };
		if (sched_setscheduler(0, SCHED_FIFO, &sp)) {
			perror("noisegen: SCHED_FIFO");
			return 2;
		}
	}
	printf("tid=%ld counter=%p\n", (long)syscall(SYS_gettid), (void *)counter);
	fflush(stdout);

	uint64_t start = now_ns(), last_fault = start;
	uint64_t end = duration > 0 ? start + (uint64_t)(duration * 1e9) : UINT64_MAX;
	for (;;) {
		for (int i = 0; i < 4096; i++)
			__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
		uint64_t t = now_ns();
		if (t >= end) {
			fprintf(stderr, "noisegen: done at +%.3f s (t=%llu start=%llu)\n", (t - start) / 1e9,
				(unsigned long long)t, (unsigned long long)start);
			break;
		}
		if (area && t - last_fault >= period_us * 1000ull) {
			area[(next_page++ % area_pages) * 4096] = 1;
			last_fault = t;
		}
	}
	stop = 1;
	return 0;
}
