/* oneshot: quiesce once at activation, loop, and on each external event
 * make a few syscalls to handle it without being quiesced again (the task
 * isolation patch's task_isol_oneshot.c).
 *
 *   oneshot [-c CPU] [-f PRIO] [-t SECONDS] [-e EVENTS] [-r]
 *           [-p]   persistent instead, for contrast: re-quiesced after each
 *                  event's system calls (isol_quiesce_if_needed)
 *
 * Events arrive at even intervals (a stand-in for a packet or a message).
 */
#include "common.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	struct sample_opts o = { .cpu = -1, .seconds = 2 };
	int events = 4, persistent = 0, c;
	while ((c = getopt(argc, argv, "c:f:t:e:rp")) != -1) {
		switch (c) {
		case 'c': o.cpu = atoi(optarg); break;
		case 'f': o.fifo = atoi(optarg); break;
		case 't': o.seconds = atof(optarg); break;
		case 'e': events = atoi(optarg); break;
		case 'r': o.report = 1; break;
		case 'p': persistent = 1; break;
		default: return 2;
		}
	}
	sample_setup(&o);

	struct isol_config cfg;
	isol_config_default(&cfg);
	cfg.quiesce_mask = supported(ISOL_QUIESCE_VMSTAT | ISOL_QUIESCE_LRU);
	if (!persistent)
		cfg.oneshot_mask = cfg.quiesce_mask; /* every action: one-shot mode */
	else
		cfg.flags |= ISOL_CFG_ENTRY_COUNTER; /* the check is one load */
	if (isol_configure(&cfg))
		die("isol_configure");
	if (isol_activate())
		die("isol_activate");

	double t0 = now_s(), step = o.seconds / (events + 1);
	int handled = 0, requiesced = 0, idle = 0;
	while (now_s() - t0 < o.seconds) {
		if (handled < events && now_s() - t0 >= step * (handled + 1)) {
			/* Handle the event: syscalls, not breaks. */
			syscall(SYS_getpid);
			syscall(SYS_sched_yield);
			/* A persistent task is quiesced again here because it
			 * made system calls; a one-shot task is not. */
			int r = isol_quiesce_if_needed();
			if (r < 0)
				die("isol_quiesce_if_needed");
			requiesced += r;
			/* No system call since: nothing to do (one load). */
			r = isol_quiesce_if_needed();
			if (r < 0)
				die("isol_quiesce_if_needed");
			idle += r;
			handled++;
		}
	}
	if (o.report)
		print_report();
	printf("oneshot: events=%d requiesced=%d idle_requiesced=%d\n", handled, requiesced, idle);
	print_breaks("oneshot");
	if (isol_deactivate())
		die("isol_deactivate");
	return 0;
}
