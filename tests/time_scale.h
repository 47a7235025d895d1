/*
 * The bounds of the C tests on a loaded machine, as time_scale() in
 * tests/integration/hplib.py and SCALE in tests/sandbox/run.sh: a bound
 * that only stops a stuck test (a socket timeout, a loop's give-up timer)
 * is multiplied by how much longer than on an idle machine things take
 * now, so that another make check beside this one costs time, not
 * failures.  HP_TIME_SCALE sets it; else the larger of the 1- and 5-minute
 * load averages per CPU (the 1-minute one drops in a lull between two
 * suites beside us), from 1 to TIME_SCALE_MAX.
 */
#ifndef HP_TESTS_TIME_SCALE_H
#define HP_TESTS_TIME_SCALE_H

#include <stdlib.h>
#include <unistd.h>

/*
 * Only a bogus reading is cut: at 2 CPUs and a load of 135 (seen in
 * flake rounds) a CPU-bound step takes ~67 times as long.
 */
#define TIME_SCALE_MAX	100.0

static inline double
time_scale(void)
{
	const char	*v = getenv("HP_TIME_SCALE");
	double		 load[2], s;
	long		 ncpu;

	if (v != NULL && (s = strtod(v, NULL)) > 0)
		return s < 1 ? 1 : s;
	if (getloadavg(load, 2) != 2)
		return 1;
	if ((ncpu = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
		ncpu = 1;
	s = (load[0] > load[1] ? load[0] : load[1]) / (double)ncpu;
	if (s < 1)
		return 1;
	return s > TIME_SCALE_MAX ? TIME_SCALE_MAX : s;
}

/* Seconds (an idle machine's bound) scaled for now, whole. */
static inline long
time_scaled_s(long seconds)
{
	return (long)(seconds * time_scale() + 0.999);
}

#endif /* HP_TESTS_TIME_SCALE_H */
