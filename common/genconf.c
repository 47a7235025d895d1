/*
 * Build tool: prints the sample hotplexd.conf from the daemon's own table
 * of keys (config_sample()), so that the installed file cannot drift.
 */
#include <stdio.h>

#include "common/config.h"

int
main(void)
{
	config_sample(stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
