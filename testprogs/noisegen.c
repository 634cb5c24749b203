// SPDX-License-Identifier: GPL-2.0
/*
 * noisegen: a victim busy-looping on one CPU and, on demand, the
 * interference isol must attribute (capture engine tests, lab, benches).
 *
 *   noisegen --cpu N [--hk M] [--tlb] [--jit] [--fault] [--timer]
 *            [--duration S] [--counter FILE] [--ipi-storm]
 *            [--spin CPUS [--pause]] [--mb-hk M] [--syscall] [--wake]
 *
 * The victim (main thread) spins on CPU N incrementing a counter with a
 * single atomic instruction, so an interrupt lands either before or after
 * an increment, never inside one. With --counter FILE the counter lives in
 * a shared mapping of FILE, readable after the victim dies.
 * Generators run in sibling threads on housekeeping CPU M (default: the
 * lowest allowed CPU other than N):
 *   --tlb       mmap/touch/munmap and mprotect: TLB-flush IPIs to CPU N
 *   --jit       attach/detach an XDP program on lo through a BPF link: the
 *               kernel re-JITs its XDP dispatcher and patches the jump to
 *               it (text_poke: do_sync_core IPIs to every CPU, each time)
 *   --membarrier membarrier(PRIVATE_EXPEDITED): ipi_mb on CPU N (and on
 *               every CPU running a --spin thread); on CPU --mb-hk M if
 *               given, so that it runs beside a storm on CPU --hk
 *   --perf      open/close a per-CPU perf event on CPU N: the kernel
 *               installs it there with remote_function
 *   --ipi-storm munmap as fast as possible (flood)
 *   --wake      write a byte every --period-us to a pipe that a thread
 *               pinned to CPU N reads: a remote wake-up of that thread
 *               (sched_ttwu_pending through the wake list when CPU N is
 *               idle, on 6.0 and later; a reschedule IPI otherwise)
 * --period-us 0 makes --membarrier and --perf flood too.
 * --spin CPUS (a list: 1-6,9) adds a thread busy in user space on each of
 * CPUS, sharing this process's mm: every TLB flush and membarrier of the
 * generators IPIs all of them. --pause puts a PAUSE in their loop, as
 * polling loops do; under single-threaded TCG it also ends the vCPU's
 * turn, where a bare loop holds the emulator until its next kick and
 * every IPI round waits for each spinner's turn.
 * In the victim itself:
 *   --fault     reads a fresh page every --period-us (default 1 ms): page faults
 *   --timer     a 10 ms POSIX CPU-independent timer (hrtimer on CPU N)
 *   --cputimer  a 100 ms ITIMER_PROF (process CPU time): the kernel keeps
 *               the tick on CPU N to account it (tick dependency posix_timer)
 *   --syscall   spends its time in the kernel: read()s 64 MiB of /dev/zero
 *               in a loop, the counter counting calls, from its start (no
 *               --go wait); --tlb then waits for --go and two more calls,
 *               so that its first IPI lands inside one, not as the victim
 *               comes back from a stop (SIGSTOP/CONT around isol's load)
 * --go FILE makes the generator and spinner threads wait until FILE
 * exists, so a test can arm isol first; --duration then counts from there.
 * --sleep makes the victim sleep instead of spinning: the generators that
 * aim at CPU N itself (--perf) need no task there, and a measuring loop
 * (isol noise) can have the CPU to itself.
 * --fifo PRIO runs the victim (only: the generators keep their policy)
 * SCHED_FIFO, as latency-critical loops do.
 * Prints "tid=T counter=0xADDR" once the victim runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/membarrier.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <time.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int stop;
static int hk_cpu = -1;
static unsigned period_us = 1000;
static const char *go_file;
static int mb_cpu = -1, pause_spin;
/* --syscall: the victim's call counter, which --tlb waits on. */
static volatile uint64_t *syscall_calls;

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
	if (syscall_calls) {
		uint64_t c0 = *syscall_calls;
		while (!stop && *syscall_calls < c0 + 2)
			usleep(1000);
	}
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

/* BPF JIT text patching on demand. A classic filter JIT-compiled into a
 * bpf_prog_pack patches text only when the pack allocator takes or frees
 * a pack, which depends on everything else the kernel has loaded; the XDP
 * dispatcher is regenerated and its jump patched (text_poke_bp, IPIs to
 * every CPU) at every attach and detach of an XDP program, on every
 * kernel since 5.9 (BPF links for XDP). */
static int bpf_sys(int cmd, union bpf_attr *a)
{
	return (int)syscall(SYS_bpf, cmd, a, sizeof(*a));
}

static void *jit_thread(void *arg)
{
	(void)arg;
	pin(hk_cpu);
	struct bpf_insn pass[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_XDP;
	a.expected_attach_type = BPF_XDP;
	a.insns = (unsigned long)pass;
	a.insn_cnt = 2;
	a.license = (unsigned long)"GPL";
	int prog = bpf_sys(BPF_PROG_LOAD, &a);
	unsigned lo = if_nametoindex("lo");
	if (prog < 0 || !lo) {
		fprintf(stderr, "noisegen: --jit: loading an XDP program: %s\n", strerror(errno));
		exit(2);
	}
	wait_go();
	while (!stop) {
		memset(&a, 0, sizeof(a));
		a.link_create.prog_fd = prog;
		a.link_create.target_ifindex = lo;
		a.link_create.attach_type = BPF_XDP;
		a.link_create.flags = XDP_FLAGS_SKB_MODE;
		int link = bpf_sys(BPF_LINK_CREATE, &a);
		if (link < 0) {
			fprintf(stderr, "noisegen: --jit: attaching XDP to lo: %s\n", strerror(errno));
			exit(2);
		}
		close(link); /* detach: the dispatcher is patched again */
		usleep(period_us * 10);
	}
	return NULL;
}

/* smp_call_function_many() to every CPU running this process: the victim. */
static void *membarrier_thread(void *arg)
{
	(void)arg;
	pin(mb_cpu >= 0 ? mb_cpu : hk_cpu);
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)) {
		fprintf(stderr, "noisegen: --membarrier: %s\n", strerror(errno));
		exit(2);
	}
	wait_go();
	while (!stop) {
		syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
		if (period_us)
			usleep(period_us);
	}
	return NULL;
}

/* A per-CPU event on the victim's CPU: perf installs (and removes) it
 * there with a cross-CPU call (remote_function). */
static int victim_cpu;
static void *perf_thread(void *arg)
{
	(void)arg;
	pin(hk_cpu);
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_DUMMY;
	wait_go();
	while (!stop) {
		int fd = (int)syscall(SYS_perf_event_open, &a, -1, victim_cpu, -1, 0);
		if (fd < 0) {
			fprintf(stderr, "noisegen: --perf: perf_event_open: %s\n", strerror(errno));
			exit(2);
		}
		close(fd);
		if (period_us)
			usleep(period_us);
	}
	return NULL;
}

/* --wake: the reader on CPU N blocks in read(); the writer wakes it. */
static int wake_pipe[2];

static void *wakee_thread(void *arg)
{
	char c;
	(void)arg;
	pin(victim_cpu);
	while (!stop && read(wake_pipe[0], &c, 1) == 1)
		;
	return NULL;
}

static void *waker_thread(void *arg)
{
	(void)arg;
	pin(hk_cpu);
	wait_go();
	while (!stop) {
		if (write(wake_pipe[1], "w", 1) != 1) {
			perror("noisegen: --wake: write");
			exit(2);
		}
		usleep(period_us);
	}
	return NULL;
}

/* Busy in user space on one CPU (born on the housekeeping CPU, moved
 * there at go): in the mm, never lazy, so a target of every flush. */
static void *spin_thread(void *arg)
{
	volatile uint64_t n = 0;
	wait_go();
	pin((int)(long)arg);
	while (!stop) {
		n++;
		if (pause_spin) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#elif defined(__aarch64__)
			__asm__ volatile("yield");
#endif
		}
	}
	return NULL;
}

/* "1-6,9" into set; 0 on success. */
static int parse_cpus(const char *s, cpu_set_t *set)
{
	CPU_ZERO(set);
	while (*s) {
		char *e;
		long a = strtol(s, &e, 10), b = a;
		if (e == s || a < 0)
			return -1;
		if (*e == '-') {
			s = e + 1;
			b = strtol(s, &e, 10);
			if (e == s || b < a)
				return -1;
		}
		for (long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET(c, set);
		if (*e == ',')
			e++;
		else if (*e)
			return -1;
		s = e;
	}
	return 0;
}

static void on_timer(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	int cpu = -1, tlb = 0, jit = 0, fault = 0, timer = 0, storm = 0, fifo = 0, mb = 0, perf = 0;
	int sleep_victim = 0, cputimer = 0, in_syscall = 0, wake = 0;
	double duration = 0;
	const char *counter_path = NULL;
	cpu_set_t spin;
	CPU_ZERO(&spin);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--cpu") && i + 1 < argc) cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--hk") && i + 1 < argc) hk_cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--duration") && i + 1 < argc) duration = atof(argv[++i]);
		else if (!strcmp(a, "--counter") && i + 1 < argc) counter_path = argv[++i];
		else if (!strcmp(a, "--period-us") && i + 1 < argc) period_us = atoi(argv[++i]);
		else if (!strcmp(a, "--go") && i + 1 < argc) go_file = argv[++i];
		else if (!strcmp(a, "--fifo") && i + 1 < argc) fifo = atoi(argv[++i]);
		else if (!strcmp(a, "--mb-hk") && i + 1 < argc) mb_cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--spin") && i + 1 < argc) {
			if (parse_cpus(argv[++i], &spin)) {
				fprintf(stderr, "noisegen: --spin %s: not a CPU list\n", argv[i]);
				return 2;
			}
		}
		else if (!strcmp(a, "--pause")) pause_spin = 1;
		else if (!strcmp(a, "--tlb")) tlb = 1;
		else if (!strcmp(a, "--jit")) jit = 1;
		else if (!strcmp(a, "--fault")) fault = 1;
		else if (!strcmp(a, "--timer")) timer = 1;
		else if (!strcmp(a, "--ipi-storm")) storm = 1;
		else if (!strcmp(a, "--membarrier")) mb = 1;
		else if (!strcmp(a, "--perf")) perf = 1;
		else if (!strcmp(a, "--sleep")) sleep_victim = 1;
		else if (!strcmp(a, "--cputimer")) cputimer = 1;
		else if (!strcmp(a, "--syscall")) in_syscall = 1;
		else if (!strcmp(a, "--wake")) wake = 1;
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
	victim_cpu = cpu;
	if ((tlb || jit || storm || mb || perf || wake || CPU_COUNT(&spin)) && hk_cpu < 0) {
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

	/* --sleep: the victim has no business on CPU N at all. */
	pin(sleep_victim && hk_cpu >= 0 ? hk_cpu : cpu);
	/* Generators are born on the housekeeping CPU: inheriting CPU N they
	 * would first have to run there to move, and a SCHED_FIFO victim
	 * without RT throttling never lets them (kernels before 6.12 have no
	 * fair deadline server to make room). */
	if (in_syscall)
		syscall_calls = counter;
	pthread_t th;
	pthread_attr_t ga;
	pthread_attr_init(&ga);
	if (hk_cpu >= 0) {
		cpu_set_t hs;
		CPU_ZERO(&hs);
		CPU_SET(hk_cpu, &hs);
		pthread_attr_setaffinity_np(&ga, sizeof(hs), &hs);
	}
	if (tlb || storm)
		pthread_create(&th, &ga, tlb_thread, (void *)(long)storm);
	if (jit)
		pthread_create(&th, &ga, jit_thread, NULL);
	if (mb)
		pthread_create(&th, &ga, membarrier_thread, NULL);
	if (perf)
		pthread_create(&th, &ga, perf_thread, NULL);
	if (wake) {
		if (pipe(wake_pipe)) {
			perror("noisegen: --wake: pipe");
			return 2;
		}
		pthread_create(&th, &ga, wakee_thread, NULL);
		pthread_create(&th, &ga, waker_thread, NULL);
	}
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &spin))
			pthread_create(&th, &ga, spin_thread, (void *)(long)c);

	enum { ZERO_READ = 64 << 20 };
	char *zbuf = NULL;
	int zfd = -1;
	if (in_syscall) {
		zfd = open("/dev/zero", O_RDONLY);
		zbuf = mmap(NULL, ZERO_READ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
			    -1, 0);
		if (zfd < 0 || zbuf == MAP_FAILED) {
			perror("noisegen: --syscall");
			return 2;
		}
	}
	char *area = NULL;
	size_t area_pages = (size_t)1 << 21, next_page = 0; /* 8 GiB of address space: 21 s at one fault per 10 us */
	if (fault)
		area = mmap(NULL, area_pages * 4096, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cputimer) {
		struct sigaction sa = { .sa_handler = on_timer };
		sigaction(SIGPROF, &sa, NULL);
		struct itimerval iv = { { 0, 100000 }, { 0, 100000 } };
		if (setitimer(ITIMER_PROF, &iv, NULL)) {
			perror("noisegen: setitimer");
			return 2;
		}
	}
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

	if (!in_syscall)
		wait_go();
	uint64_t start = now_ns(), last_fault = start;
	uint64_t end = duration > 0 ? start + (uint64_t)(duration * 1e9) : UINT64_MAX;
	while (sleep_victim && now_ns() < end)
		usleep(100000);
	for (; !sleep_victim;) {
		if (in_syscall) {
			/* Nothing else in user space: a few hundred ns there
			 * per call of milliseconds. */
			if (read(zfd, zbuf, ZERO_READ) < 0) {
				perror("noisegen: read /dev/zero");
				return 2;
			}
			__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
		} else {
			for (int i = 0; i < 4096; i++)
				__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
		}
		uint64_t t = now_ns();
		if (t >= end) {
			fprintf(stderr, "noisegen: done at +%.3f s (t=%llu start=%llu)\n", (t - start) / 1e9,
				(unsigned long long)t, (unsigned long long)start);
			break;
		}
		if (area && t - last_fault >= period_us * 1000ull) {
			/* A read of an untouched anonymous page faults and maps
			 * the shared zero page: a fault every time, and no memory
			 * (a write would allocate a page per fault). */
			(void)*(volatile char *)&area[(next_page++ % area_pages) * 4096];
			last_fault = t;
		}
	}
	stop = 1;
	return 0;
}
