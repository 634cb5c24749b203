/* userloop: configure and activate isolation, then loop in user space
 * (the task isolation patch's task_isol_userloop.c).
 *
 *   userloop [-c CPU] [-f PRIO] [-t SECONDS] [-r]
 *            [-S]        make a syscall half way (persistent: not a break):
 *                        prctl(PR_SET_NAME, "userloop-sc"), whose effect
 *                        (the new comm) an observer can wait for
 *            [-s]        strict mode, the task's own syscalls break too;
 *                        the break signal is SIGUSR1, caught and reported
 *            [-o]        with -s: only the task's own entries break it
 *            [-P]        arm a POSIX CPU-time timer first (keeps the tick)
 *            [-F]        inherit active isolation; fork a child that loops
 *            [-T MS]     arm a CLOCK_MONOTONIC timer firing in MS ms and
 *                        quiesce timers: activation waits it out, or names
 *                        it if it cannot within the tick timeout
 *            [-u]        loop until SIGUSR2 arrives (caught), not for -t
 *                        seconds (-S still calls at -t/2): an observer
 *                        however slow sees the task isolated, then ends it
 *            [-L]        log from the loop (isol_logf: no syscall) every
 *                        2^22 iterations; the drain thread writes it out
 *            [-W]        watch the status page from the loop (plain loads,
 *                        no syscall): prints what it saw at the end
 *            [-X]        a thread on CPU 0 maps and unmaps a page in a loop
 *                        once isolation is active: each unmap sends the
 *                        isolated CPU a TLB-flush IPI (prints its tid as
 *                        "storm: tid=T")
 *            [-R N]      with -s -X: N activations raced against the storm
 *                        (running throughout), each followed by up to 50 ms
 *                        of loop, the status page read, then left; prints
 *                        "races: ..." with the IPIs that raced activation
 *                        (not breaks) and the breaks by an IPI queued
 *                        before the activation (false breaks: none)
 */
#include "common.h"
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sys/resource.h>

static volatile sig_atomic_t got_signal, got_stop;
static int until_stopped;

static void on_stop(int sig)
{
	(void)sig;
	got_stop = 1;
}

static void on_break(int sig)
{
	(void)sig;
	got_signal = 1;
}

static volatile int storm_go, storm_stop, racing;
static volatile pid_t storm_tid;

/* Housekeeping side: pinned to CPU 0 before isolation starts (it was made
 * before the main thread moved), so it never runs on the isolated CPU. */
static void *storm(void *arg)
{
	(void)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("storm: sched_setaffinity");
		exit(1);
	}
	storm_tid = (pid_t)syscall(SYS_gettid);
	/* Racing: in the background of CPU 0, where the watcher answers
	 * each activation (the storm would otherwise take half its time). */
	if (racing)
		setpriority(PRIO_PROCESS, 0, 19);
	while (!storm_go && !storm_stop) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	while (!storm_stop && (racing || !got_signal)) {
		char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		p[0] = 1;
		munmap(p, 4096);
	}
	return NULL;
}

/* -W: the page as the loop last read it, and how often its count moved. */
static int watch_page, log_loop;
static struct isol_status page_seen = { .size = sizeof(page_seen) };
static uint64_t page_changes;

static uint64_t spin(double seconds, int syscall_half_way)
{
	double t0 = now_s(), half = t0 + seconds / 2, end = t0 + seconds;
	uint64_t n = 0;
	int done = 0;
	double t;
	while (((t = now_s()) < end || (until_stopped && !got_stop)) && !got_signal) {
		n++;
		if (log_loop && (n & ((1u << 22) - 1)) == 0)
			isol_logf("userloop: iteration %llu", (unsigned long long)n);
		if (watch_page) {
			uint32_t before = page_seen.breaks;
			if (isol_status_read(&page_seen) == 0 && page_seen.breaks != before)
				page_changes++;
		}
		if (syscall_half_way && !done && t >= half) {
			syscall(SYS_prctl, PR_SET_NAME, "userloop-sc", 0, 0, 0);
			done = 1;
		}
	}
	return n;
}

/* -R: the race between activation and IPIs already on their way. */
static void races(int rounds)
{
	unsigned long long raced = 0, broken = 0, ipi_breaks = 0, false_breaks = 0;

	for (int i = 0; i < rounds; i++) {
		struct isol_status st = { .size = sizeof(st) };
		got_signal = 0;
		if (isol_activate())
			die("isol_activate");
		double t0 = now_s();
		while (!got_signal && now_s() - t0 < 0.05)
			;
		/* System calls: a break now if none came in the loop. */
		if (isol_status_page() || isol_status_read(&st))
			die("isol_status_page");
		if (isol_deactivate())
			die("isol_deactivate");
		if ((i + 1) % 50 == 0)
			fprintf(stderr, "races: %d rounds done\n", i + 1);
		raced += st.pre_activation;
		if (!st.active_ns || st.break_ns < st.active_ns)
			continue; /* no break in this activation */
		broken++;
		if (!(st.break_flags & ISOL_BREAK_IPI))
			continue;
		ipi_breaks++;
		if (st.sender_sent_ns < st.active_ns) {
			false_breaks++;
			printf("races: false break in round %d: sent %llu, active %llu\n", i,
			       (unsigned long long)st.sender_sent_ns, (unsigned long long)st.active_ns);
		}
	}
	printf("races: rounds=%d raced=%llu broken=%llu ipi_breaks=%llu false_breaks=%llu\n",
	       rounds, raced, broken, ipi_breaks, false_breaks);
}

int main(int argc, char **argv)
{
	struct sample_opts o = { .cpu = -1, .seconds = 2 };
	int sys = 0, strict = 0, own = 0, ptimer = 0, forks = 0, tlb = 0, c;
	pthread_t storm_thread;
	long timer_ms = -1;
	int race_rounds = 0;
	while ((c = getopt(argc, argv, "c:f:t:rSsoPFT:XWuLR:")) != -1) {
		switch (c) {
		case 'c': o.cpu = atoi(optarg); break;
		case 'f': o.fifo = atoi(optarg); break;
		case 't': o.seconds = atof(optarg); break;
		case 'r': o.report = 1; break;
		case 'S': sys = 1; break;
		case 's': strict = 1; break;
		case 'o': own = 1; break;
		case 'P': ptimer = 1; break;
		case 'F': forks = 1; break;
		case 'T': timer_ms = atol(optarg); break;
		case 'X': tlb = 1; break;
		case 'W': watch_page = 1; break;
		case 'L': log_loop = 1; break;
		case 'R': race_rounds = atoi(optarg); racing = 1; break;
		case 'u': until_stopped = 1; signal(SIGUSR2, on_stop); break;
		default: return 2;
		}
	}
	if (tlb && pthread_create(&storm_thread, NULL, storm, NULL)) {
		perror("pthread_create");
		return 1;
	}
	sample_setup(&o);
	if (ptimer) {
		timer_t t;
		/* A signal-notifying timer: SIGEV_NONE ones are never armed,
		 * so they would not keep the tick. It fires in 1000 s. */
		struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
		signal(SIGUSR2, SIG_IGN);
		struct itimerspec its = { .it_value = { .tv_sec = 1000 } };
		if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &t) || timer_settime(t, 0, &its, NULL)) {
			perror("timer_create");
			return 1;
		}
	}

	if (timer_ms >= 0) {
		timer_t t;
		struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
		signal(SIGUSR2, SIG_IGN);
		struct itimerspec its = { .it_value = { .tv_sec = timer_ms / 1000,
							.tv_nsec = (timer_ms % 1000) * 1000000 } };
		if (timer_create(CLOCK_MONOTONIC, &ev, &t) || timer_settime(t, 0, &its, NULL)) {
			perror("timer_create");
			return 1;
		}
	}

	struct isol_config cfg;
	isol_config_default(&cfg);
	cfg.quiesce_mask = supported(ISOL_QUIESCE_VMSTAT | ISOL_QUIESCE_LRU);
	if (timer_ms >= 0)
		cfg.quiesce_mask |= ISOL_QUIESCE_TIMERS;
	if (strict) {
		cfg.flags |= ISOL_CFG_STRICT | ISOL_CFG_STRICT_SYSCALLS;
		if (own)
			cfg.flags |= ISOL_CFG_STRICT_OWN_ONLY;
		cfg.strict_signal = SIGUSR1;
		signal(SIGUSR1, on_break);
	}
	if (forks)
		cfg.inherit_mask = ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE;
	if (isol_configure(&cfg))
		die("isol_configure");
	if (race_rounds) {
		storm_go = 1;
		races(race_rounds);
		storm_stop = 1;
		pthread_join(storm_thread, NULL);
		return 0;
	}
	if (isol_activate())
		die("isol_activate");
	/* No output until the loop is over: a write to a terminal is work
	 * for the kernel (tty flush) that can land on this CPU. */

	if (forks) {
		pid_t child = fork();
		if (child == 0) {
			printf("child: pid=%d active=%d\n", getpid(), isol_is_active());
			fflush(stdout);
			uint64_t n = spin(o.seconds, 0);
			printf("child: iterations=%llu\n", (unsigned long long)n);
			print_breaks("child");
			return 0;
		}
		int st;
		waitpid(child, &st, 0);
		if (o.report)
			print_report(); /* which watcher registered the parent */
		printf("userloop: child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		isol_deactivate();
		return 0;
	}

	if (watch_page && isol_status_page())
		die("isol_status_page");
	if (log_loop && isol_log_init(0))
		die("isol_log_init");
	storm_go = 1;
	uint64_t n = spin(o.seconds, sys);
	if (tlb) {
		storm_stop = 1;
		pthread_join(storm_thread, NULL);
		printf("storm: tid=%d\n", (int)storm_tid);
	}
	/* The page once the storm has stopped: the count the library gives
	 * next (the loop's last read may precede the storm's last IPIs). */
	struct isol_status page_final = { .size = sizeof(page_final) };
	if (watch_page && isol_status_read(&page_final) == 0)
		printf("page: final breaks=%u\n", page_final.breaks);
	/* Everything below makes syscalls: report after the loop. */
	if (log_loop)
		isol_log_flush();
	if (o.report)
		print_report();
	if (got_signal)
		printf("userloop: strict signal received\n");
	printf("userloop: iterations=%llu\n", (unsigned long long)n);
	if (watch_page) {
		static const char *states[] = { "none", "pending", "active", "broken", "ended" };
		printf("page: state=%s breaks=%u changes_seen=%llu cpu=%u chain:", states[page_seen.state % 5],
		       page_seen.breaks, (unsigned long long)page_changes, page_seen.break_cpu);
		for (uint32_t i = 0; i < page_seen.nchain; i++)
			printf("%s %s", i ? " |" : "", page_seen.chain[i]);
		printf("\n");
		if (page_seen.has_sender)
			printf("page: sender cpu=%u pid=%u comm=%s\n", page_seen.sender_cpu,
			       page_seen.sender_pid, page_seen.sender_comm);
	}
	print_breaks("userloop");
	if (isol_deactivate())
		die("isol_deactivate");
	return 0;
}
