/* vmstat: the scenario the task isolation prctl series was written for.
 * A task on a nohz_full CPU mlocks memory and starts its loop; the
 * mlock left this CPU's VM statistics differentials non-zero, so the
 * vmstat shepherd sends the vmstat_update work to the CPU, interrupting
 * the loop. With vmstat_sync quiesced at activation, it does not come.
 *
 *   vmstat [-c CPU] [-f PRIO] [-t SECONDS] [-m MB] [-P] [-q] [-l] [-n] [-u] [-g CPU]
 *     -m MB  mlock this much memory first (default 16)
 *     -P     prepare a control: before the mlock, keep the tick running
 *            and yield for 3 stat intervals, so that no vmstat work is
 *            pending on the CPU when the loop starts (an earlier run may
 *            have left one parked)
 *     -q     configure vmstat_sync and lru_drain, and activate
 *     -l     persistent loop: every 100 ms munmap the previous pages, map
 *            new ones and mlock some (system calls that dirty the
 *            counters); then isol_quiesce_if_needed()
 *     -n     with -l: never call isol_quiesce_if_needed (the control)
 *     -u     with -l: fault half of the new pages in from user space
 *     -g CPU with -l: a thread on CPU compacts memory twice a second, each
 *            time between two of the loop's churns (lru_add_drain_all()
 *            queues work on every CPU whose batches hold pages)
 *
 * Prints "mlock at T", "loop start T" and "loop end T" in CLOCK_MONOTONIC seconds (the
 * lab's trace_clock is mono), so the host can tell which work landed in
 * the loop.
 */
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

static void prepare(void)
{
	FILE *f = fopen("/proc/sys/vm/stat_interval", "r");
	int interval = 1;
	if (f) {
		if (fscanf(f, "%d", &interval) != 1)
			interval = 1;
		fclose(f);
	}
	/* A CPU-time timer keeps the tick running on a nohz_full CPU; the
	 * work's deferrable timer fires only from the tick. */
	timer_t t;
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGURG };
	struct itimerspec its = { .it_value = { .tv_sec = 1000 } };
	if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &t) || timer_settime(t, 0, &its, NULL)) {
		perror("timer_create");
		exit(1);
	}
	double t0 = now_s();
	while (now_s() - t0 < 3.0 * interval) {
		double s = now_s();
		while (now_s() - s < 0.009)
			;
		usleep(1000);
	}
	timer_delete(t);
}

/* Unmap the previous iteration's pages, map new ones with MAP_POPULATE
 * and mlock half of them: system calls that dirty the counters (NR_MLOCK,
 * NR_ANON_MAPPED...); population and munmap drain this CPU's LRU batch
 * themselves. With `faults`, the other half is touched from user space
 * instead: page faults, which leave the pages in the batch. */
static void churn(int faults)
{
	static char *prev;
	size_t len = 4 * 4096;
	if (prev)
		munmap(prev, 2 * len);
	char *p = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (faults ? 0 : MAP_POPULATE), -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (mlock(p, len))
		perror("mlock");
	if (faults)
		for (size_t i = len; i < 2 * len; i += 4096)
			p[i] = 1;
	prev = p;
}

/* The loop publishes when it next churns and whether it is churning;
 * the compactor reads them with plain loads. */
static volatile double next_churn;
static volatile int in_churn, stop_compactor;
static int compactions;

/* Compaction starts with lru_add_drain_all(). While the loop is in its
 * churn, its own system calls hold pages in this CPU's batches for a
 * moment (MAP_POPULATE before mlock's drain): a drain from another CPU
 * then rightly queues work here, caused by the task's own kernel entry
 * (a lab run hit that window once in 40). The persistent mode's claim is
 * about the loop between churns, so compact only there: at least 40 ms
 * before the next churn, the loop idle in user space. */
static void *compactor(void *arg)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)(long)arg, &set);
	sched_setaffinity(0, sizeof(set), &set);
	while (!stop_compactor) {
		double n1 = next_churn;
		int busy = in_churn;
		double n2 = next_churn, left = n1 - now_s();
		if (n1 != n2 || busy || left < 0.04 || left > 0.07) {
			usleep(1000);
			continue;
		}
		int fd = open("/proc/sys/vm/compact_memory", O_WRONLY);
		if (fd < 0 || write(fd, "1", 1) != 1) {
			perror("compact_memory");
			exit(1);
		}
		close(fd);
		compactions++;
		usleep(400000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sample_opts o = { .cpu = -1, .seconds = 10 };
	int mb = 16, prep = 0, quiesce = 0, loop = 0, never = 0, faults = 0, gcpu = -1, c;
	while ((c = getopt(argc, argv, "c:f:t:m:Pqlnurg:")) != -1) {
		switch (c) {
		case 'c': o.cpu = atoi(optarg); break;
		case 'f': o.fifo = atoi(optarg); break;
		case 't': o.seconds = atof(optarg); break;
		case 'm': mb = atoi(optarg); break;
		case 'P': prep = 1; break;
		case 'q': quiesce = 1; break;
		case 'l': loop = 1; break;
		case 'n': never = 1; break;
		case 'u': faults = 1; break;
		case 'r': o.report = 1; break;
		case 'g': gcpu = atoi(optarg); break;
		default: return 2;
		}
	}
	sample_setup(&o);
	if (o.cpu >= 0)
		while (sched_getcpu() != o.cpu)
			sched_yield();
	if (prep)
		prepare();

	double tm = now_s();
	size_t len = (size_t)mb << 20;
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || mlock(buf, len)) {
		perror("mlock");
		return 1;
	}

	/* Before activation: creating a thread enters the kernel here. */
	pthread_t gen;
	next_churn = now_s() + 1e9;
	if (loop && gcpu >= 0 && pthread_create(&gen, NULL, compactor, (void *)(long)gcpu)) {
		perror("pthread_create");
		return 1;
	}

	if (quiesce) {
		struct isol_config cfg;
		isol_config_default(&cfg);
		/* The LRU too: a drain of this CPU's batches (khugepaged,
		 * compaction) would itself be work here, and would dirty the
		 * counters again. */
		cfg.quiesce_mask = supported(ISOL_QUIESCE_VMSTAT | ISOL_QUIESCE_LRU);
		/* The loop's own pages are locked by its mlock; mlockall's
		 * MCL_FUTURE would populate (and drain) every new mapping. */
		if (loop)
			cfg.flags |= ISOL_CFG_NO_MLOCK | ISOL_CFG_ENTRY_COUNTER;
		if (isol_configure(&cfg))
			die("isol_configure");
		if (isol_activate())
			die("isol_activate");
	}
	/* Nothing between here and the loop may enter the kernel: a write
	 * to the pipe would dirty the counters again. */
	double t0 = now_s(), next = t0 + 0.1;
	next_churn = next;
	uint64_t n = 0;
	int churns = 0, requiesced = 0;
	while (now_s() - t0 < o.seconds) {
		n++;
		/* Also lets the compactor's CPU run when it should under the
		 * lab's TCG, not only when this one enters the kernel. */
		cpu_relax();
		if (loop && now_s() >= next) {
			/* Busy before the next time moves (the compactor reads
			 * them the other way round). */
			in_churn = 1;
			next += 0.1;
			next_churn = next;
			churn(faults);
			churns++;
			if (!never) {
				int r = isol_quiesce_if_needed();
				if (r < 0)
					die("isol_quiesce_if_needed");
				requiesced += r;
			}
			in_churn = 0;
		}
	}
	double t1 = now_s();
	if (loop && gcpu >= 0) {
		stop_compactor = 1;
		pthread_join(gen, NULL);
	}
	printf("mlock at %.6f\nloop start %.6f\nloop end %.6f\n", tm, t0, t1);
	printf("vmstat: iterations=%llu churns=%d requiesced=%d compactions=%d\n",
	       (unsigned long long)n, churns, requiesced, compactions);
	if (o.report && quiesce)
		print_report();
	return 0;
}
