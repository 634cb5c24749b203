/* computation: enter isolation, compute, leave isolation, then write the
 * result out (the task isolation patch's task_isol_computation.c).
 *
 *   computation [-c CPU] [-f PRIO] [-n LIMIT] [-o FILE] [-r]
 */
#include "common.h"

/* Count primes below limit: pure user-space work. */
static uint64_t primes(uint64_t limit)
{
	uint64_t count = 0;
	for (uint64_t n = 2; n < limit; n++) {
		int prime = 1;
		for (uint64_t d = 2; d * d <= n; d++)
			if (n % d == 0) {
				prime = 0;
				break;
			}
		count += prime;
	}
	return count;
}

int main(int argc, char **argv)
{
	struct sample_opts o = { .cpu = -1 };
	uint64_t limit = 2000000;
	const char *out = NULL;
	int c;
	while ((c = getopt(argc, argv, "c:f:n:o:r")) != -1) {
		switch (c) {
		case 'c': o.cpu = atoi(optarg); break;
		case 'f': o.fifo = atoi(optarg); break;
		case 'n': limit = strtoull(optarg, NULL, 0); break;
		case 'o': out = optarg; break;
		case 'r': o.report = 1; break;
		default: return 2;
		}
	}
	sample_setup(&o);

	struct isol_config cfg;
	isol_config_default(&cfg);
	cfg.quiesce_mask = ISOL_QUIESCE_VMSTAT;
	if (isol_configure(&cfg))
		die("isol_configure");
	if (isol_activate())
		die("isol_activate");
	double t0 = now_s();
	uint64_t result = primes(limit);
	double dt = now_s() - t0;
	if (o.report)
		print_report();
	print_breaks("computation");
	if (isol_deactivate())
		die("isol_deactivate");

	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f) {
		perror(out);
		return 1;
	}
	fprintf(f, "computation: primes below %llu: %llu in %.3f s\n",
		(unsigned long long)limit, (unsigned long long)result, dt);
	if (out)
		fclose(f);
	return 0;
}
