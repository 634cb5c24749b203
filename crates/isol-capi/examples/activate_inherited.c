/* activate_inherited: the snippet of the task isolation patch's
 * documentation, "activate task isolation if it has been previously
 * configured (by chisol for example)":
 *
 *   chisol -q vmstat_sync -I conf ./activate_inherited
 *
 * isol_get_config() is PR_ISOL_CFG_GET on a patched kernel, the
 * configuration chisol passed across exec elsewhere. Prints
 * "configured=0" or "activated backend=N quiesce=0x.." and the
 * process's /proc/self/task_isolation where there is one.
 */
#include "common.h"

int main(void)
{
	struct isol_config cfg;
	int has = isol_get_config(&cfg);
	if (has < 0)
		die("isol_get_config");
	if (!has) {
		printf("configured=0\n");
		return 0;
	}
	if (isol_activate())
		die("isol_activate");
	struct isol_features f;
	if (isol_features(&f))
		die("isol_features");
	printf("activated backend=%u quiesce=0x%llx inherit=%u active=%d\n", f.backend,
	       (unsigned long long)cfg.quiesce_mask, cfg.inherit_mask, isol_is_active());
	FILE *p = fopen("/proc/self/task_isolation", "r");
	if (p) {
		char line[128];
		while (fgets(line, sizeof(line), p))
			printf("task_isolation: %s", line);
		fclose(p);
	}
	if (isol_deactivate())
		die("isol_deactivate");
	return 0;
}
