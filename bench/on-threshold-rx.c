// SPDX-License-Identifier: GPL-2.0
/*
 * on-threshold-rx: the receiving end of bench/on-threshold-lag.sh.
 *   on-threshold-rx           prints CLOCK_MONOTONIC ns once and exits
 *                             (a shell action's start time)
 *   on-threshold-rx --wait    prints "ready", then blocks SIGUSR1 and
 *                             SIGRTMIN and prints CLOCK_MONOTONIC ns at each
 *                             one received (sigwaitinfo: no handler
 *                             latency; SIGRTMIN queues, so with `continue`
 *                             every crossing's signal is one line)
 *   on-threshold-rx --rtmin   prints SIGRTMIN's number
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static unsigned long long mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--rtmin")) {
		printf("%d\n", SIGRTMIN);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "--wait")) {
		printf("%llu\n", mono());
		return 0;
	}
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGRTMIN);
	sigaddset(&s, SIGTERM);
	sigprocmask(SIG_BLOCK, &s, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&s, &si) < 0)
			continue;
		unsigned long long t = mono();
		if (si.si_signo == SIGTERM)
			return 0;
		printf("%llu\n", t);
	}
}
