# tests/unit: every man page (man/*.[1-8]) lints clean with mandoc.
# The suite word holds a space, so it is quoted for the shell that runs
# tests/run-suites.
SUITES		+= 'manlint=sh tests/unit/manlint.sh'
