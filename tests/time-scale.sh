#!/bin/sh
# Prints the factor (a whole number) by which a shell test multiplies the
# bounds that only stop a stuck test, as time_scale() in
# tests/integration/hplib.py and tests/time_scale.h: HP_TIME_SCALE, else
# the larger of the 1- and 5-minute load averages per CPU, from 1 to 100
# (only a bogus reading is cut: a load of 135 on 2 CPUs was seen with
# two make check side by side).
awk -v n="$(nproc 2>/dev/null || echo 1)" -v f="${HP_TIME_SCALE:-0}" '{
	s = f > 0 ? f : ($1 > $2 ? $1 : $2) / n
	if (s < 1) s = 1
	if (s > 100) s = 100
	printf "%d\n", s + 0.999 }' /proc/loadavg
