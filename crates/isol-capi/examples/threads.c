/* threads: configure before pthread_create, and every thread has the
 * configuration, as clone(2) gives it under the task isolation patch
 * when the inheritance asks for it.
 *
 *   threads [-n THREADS] [-I none|conf|active] [-c CPU]
 *
 * With -I active the main thread activates first (on CPU -c, which it
 * must be allowed to use) and the threads are active too.
 * Prints one line per thread: "thread N: configured=1 active=0 quiesce=0x1".
 */
#include "common.h"
#include <pthread.h>

static void *worker(void *arg)
{
	struct isol_config cfg;
	int n = (int)(intptr_t)arg;
	int has = isol_get_config(&cfg);
	if (has < 0)
		die("isol_get_config");
	printf("thread %d: configured=%d active=%d quiesce=0x%llx inherit=%u\n", n, has,
	       isol_is_active(), has ? (unsigned long long)cfg.quiesce_mask : 0ULL,
	       has ? cfg.inherit_mask : 0);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sample_opts o = { .cpu = -1 };
	int threads = 4, c;
	const char *inherit = "conf";
	while ((c = getopt(argc, argv, "n:I:c:")) != -1) {
		switch (c) {
		case 'n': threads = atoi(optarg); break;
		case 'I': inherit = optarg; break;
		case 'c': o.cpu = atoi(optarg); break;
		default: return 2;
		}
	}
	sample_setup(&o);
	struct isol_config cfg;
	isol_config_default(&cfg);
	cfg.quiesce_mask = supported(ISOL_QUIESCE_VMSTAT);
	cfg.flags |= ISOL_CFG_NO_MLOCK;
	if (!strcmp(inherit, "conf"))
		cfg.inherit_mask = ISOL_INHERIT_CONF;
	else if (!strcmp(inherit, "active"))
		cfg.inherit_mask = ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE;
	if (isol_configure(&cfg))
		die("isol_configure");
	if (!strcmp(inherit, "active") && isol_activate())
		die("isol_activate");
	pthread_t t[64];
	if (threads > 64)
		threads = 64;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i)) {
			perror("pthread_create");
			return 1;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("threads: %d joined\n", threads);
	return 0;
}
