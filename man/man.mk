# man/ fragment
MAN_PAGES	= $(wildcard man/*.[1-8])

install-man:
	for s in 1 3 5 7 8; do install -d $(DESTDIR)$(MANDIR)/man$$s; done
	for m in $(MAN_PAGES); do s=$${m##*.}; \
		install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
uninstall-man:
	for m in $(MAN_PAGES); do s=$${m##*.}; \
		rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done
# The rules are built in: these copies are for reference.
install-policy:
	install -d $(DESTDIR)$(DATADIR)/hotplex/rules
	for r in $(POLICY_RULES); do \
		install -m 644 $$r $(DESTDIR)$(DATADIR)/hotplex/rules/; done
uninstall-policy:
	for r in $(POLICY_RULES); do \
		rm -f $(DESTDIR)$(DATADIR)/hotplex/rules/$${r##*/}; done
	-rmdir $(DESTDIR)$(DATADIR)/hotplex/rules 2>/dev/null
.PHONY: install-man uninstall-man install-policy uninstall-policy
