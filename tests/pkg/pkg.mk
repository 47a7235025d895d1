# tests/pkg: installing.  `install` runs make install PREFIX=/usr into a
# throwaway DESTDIR from a build of its own and checks what it put there.
SUITES		+= 'install=sh tests/pkg/install.sh'
# `deb` builds the Debian packages and runs them on this machine (as root;
# skips with a message where it cannot).
SUITES		+= 'deb=sh tests/pkg/deb.sh'
