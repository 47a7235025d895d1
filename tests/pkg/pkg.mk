# tests/pkg: installing.  `install` runs make install PREFIX=/usr into a
# throwaway DESTDIR from a build of its own and checks what it put there.
SUITES		+= 'install=sh tests/pkg/install.sh'
