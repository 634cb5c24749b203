/* Shared by the samples (ported from the task isolation patch's
 * samples/task_isolation/): options, pinning, reporting. */
#ifndef ISOL_SAMPLE_COMMON_H
#define ISOL_SAMPLE_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <isol.h>

struct sample_opts {
	int cpu;           /* -c: pin here first (-1: keep the affinity) */
	int fifo;          /* -f: SCHED_FIFO priority (0: leave the policy) */
	double seconds;    /* -t: how long to loop */
	int report;        /* -r: print the activation report (JSON) */
};

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, isol_last_error());
	exit(1);
}

static inline double now_s(void)
{
	struct timespec ts;
	/* vDSO: no kernel entry. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What a polling loop puts in its body. Under the lab's single-threaded
 * TCG it also ends the vCPU's turn: a bare loop holds the emulator for
 * its whole slice, and the other CPU then runs only in bursts. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* Common options; returns the index of the first unparsed argument. */
static inline void sample_setup(const struct sample_opts *o)
{
	/* Real-time first, then move: the task never runs on the isolated
	 * CPU as a fair task, which would start that CPU's fair deadline
	 * server (its timers fire there for a while after). */
	if (o->fifo > 0) {
		struct sched_param p = { .sched_priority = o->fifo };
		if (sched_setscheduler(0, SCHED_FIFO, &p)) {
			perror("sched_setscheduler");
			exit(1);
		}
	}
	if (o->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			perror("sched_setaffinity");
			exit(1);
		}
	}
}

/* The quiesce actions of `want` that this backend has (a kernel with the
 * task isolation patch quiesces vmstat only, and refuses the rest). */
static inline uint64_t supported(uint64_t want)
{
	struct isol_features f;
	if (isol_features(&f))
		die("isol_features");
	return want & f.quiesce_mask;
}

static inline void print_report(void)
{
	char buf[8192];
	isol_report_json(buf, sizeof(buf));
	printf("report: %s\n", buf);
}

/* "breaks=N last=CAUSE" for the closing line; then the whole break as
 * the library gives it: "chain: A | B | ..." and, for an IPI, "sender:
 * cpu=N pid=P comm=C context=X function=F callsite=S stack=F1<F2<...". */
static inline void print_breaks(const char *who)
{
	struct isol_break b;
	int r = isol_last_break(&b);
	if (r < 0) {
		printf("%s: breaks=unknown (%s)\n", who, isol_last_error());
		return;
	}
	if (r == 0) {
		printf("%s: breaks=0\n", who);
		return;
	}
	printf("%s: breaks=%u last=\"%s\" cpu=%u\n", who, b.count, b.cause, b.cpu);

	struct isol_break_record rec = { .size = sizeof(rec) };
	if (isol_last_break_record(&rec) != 1) {
		printf("%s: no break record (%s)\n", who, isol_last_error());
		return;
	}
	printf("%s: chain:", who);
	for (uint32_t i = 0; i < rec.nchain; i++)
		printf("%s %s", i ? " |" : "", rec.chain[i]);
	printf("%s\n", rec.truncated ? " | ..." : "");
	if (rec.has_sender) {
		printf("%s: sender: cpu=%u pid=%u comm=%s context=%s function=%s callsite=%s stack=",
		       who, rec.sender_cpu, rec.sender_pid, rec.sender_comm, rec.sender_context,
		       rec.sender_function, rec.sender_callsite);
		for (uint32_t i = 0; i < rec.sender_nframes; i++)
			printf("%s%s", i ? "<" : "", rec.sender_stack[i]);
		printf("\n");
	}
}

#endif
