# man/ fragment
install-man:
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7 \
		$(DESTDIR)$(PREFIX)/share/man/man8
	for m in man/*.[1-8]; do s=$${m##*.}; \
		install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done
install-policy:
	install -d $(DESTDIR)/etc/hotplex/rules
	for r in policy/rules/*.rules; do [ -e "$$r" ] && \
		install -m 644 $$r $(DESTDIR)/etc/hotplex/rules/; done; true
.PHONY: install-man install-policy
