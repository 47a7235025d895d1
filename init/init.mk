# init/: the files an installed daemon needs beside its programs: the init
# script, the systemd unit, /etc/default/hotplexd, the pkg-config file.
# The paths in them are those of this build (Makefile), filled in here.
INIT_SUBST	= sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@SBINDIR@|$(SBINDIR)|g' \
		  -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
		  -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
INIT_FILES	= $(B)/init/hotplexd.init $(B)/init/hotplexd.service \
		  $(B)/init/hotplex.pc

$(B)/init/%: init/%.in $(PATHS_H)
	@mkdir -p $(dir $@)
	$(INIT_SUBST) $< >$@.tmp && mv $@.tmp $@
BINS	+= $(INIT_FILES)
