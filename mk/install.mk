# make install / make uninstall. Included by the Makefile.
#
#   make install                                  under /usr/local
#   make install PREFIX=/usr DESTDIR=/tmp/stage   staged, as a package build does
#
# Installs sbin/mcwatchd, bin/mcctl, lib/libmcshim.so.1.0.0 with its soname
# and development links, include/mcshim.h, lib/pkgconfig/mcshim.pc, the man
# pages, the example configuration (as the configuration too, unless one is
# there already: it is never overwritten) and the systemd unit, its paths
# rewritten for PREFIX. Every directory can be overridden (BINDIR, LIBDIR...).

BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/mcwatch
# /usr's configuration lives in /etc; any other prefix keeps its own.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install

# The file behind the soname, and its version (the soname's major number).
SHLIB_REAL := $(SONAME).0.0
MCSHIM_VERSION := $(shell sed -n 's/.*kVersion = "\(.*\)".*/\1/p' common/version.hpp)
MAN_PAGES := $(wildcard man/*.[0-9])

.PHONY: install uninstall

install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR) \
	    $(sort $(foreach page,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(page)))))
	$(INSTALL) -m 0755 $(BUILD)/mcwatchd $(DESTDIR)$(SBINDIR)/mcwatchd
	$(INSTALL) -m 0755 $(BUILD)/mcctl $(DESTDIR)$(BINDIR)/mcctl
	$(INSTALL) -m 0644 $(BUILD)/libmcshim.so $(DESTDIR)$(LIBDIR)/$(SHLIB_REAL)
	ln -sfn $(SHLIB_REAL) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libmcshim.so
	$(INSTALL) -m 0644 libshim/include/mcshim.h $(DESTDIR)$(INCLUDEDIR)/mcshim.h
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	    'Name: mcshim' \
	    'Description: where a memcached key goes, given mcwatchd'"'"'s view of the servers' \
	    'URL: man:mcshim(3)' \
	    'Version: $(MCSHIM_VERSION)' \
	    'Libs: -L$${libdir} -lmcshim' \
	    'Cflags: -I$${includedir}' >$(DESTDIR)$(LIBDIR)/pkgconfig/mcshim.pc
	chmod 0644 $(DESTDIR)$(LIBDIR)/pkgconfig/mcshim.pc
	for page in $(MAN_PAGES); do \
	    section=$${page##*.}; \
	    $(INSTALL) -m 0644 $$page $(DESTDIR)$(MANDIR)/man$$section/ || exit 1; \
	done
	$(INSTALL) -m 0644 etc/mcwatchd.conf $(DESTDIR)$(DOCDIR)/mcwatchd.conf.example
	[ -e $(DESTDIR)$(SYSCONFDIR)/mcwatchd.conf ] || $(INSTALL) -m 0644 etc/mcwatchd.conf $(DESTDIR)$(SYSCONFDIR)/mcwatchd.conf
	sed -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	    -e 's|/usr/local/etc/|$(SYSCONFDIR)/|g' etc/mcwatchd.service >$(DESTDIR)$(UNITDIR)/mcwatchd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mcwatchd.service

# The configuration stays: it is the operator's (remove it by hand).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/mcwatchd $(DESTDIR)$(BINDIR)/mcctl \
	    $(DESTDIR)$(LIBDIR)/$(SHLIB_REAL) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libmcshim.so \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/mcshim.pc $(DESTDIR)$(INCLUDEDIR)/mcshim.h \
	    $(DESTDIR)$(DOCDIR)/mcwatchd.conf.example $(DESTDIR)$(UNITDIR)/mcwatchd.service \
	    $(foreach page,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(page)))/$(notdir $(page)))
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/mcwatchd.conf ]; then \
	    echo "kept $(DESTDIR)$(SYSCONFDIR)/mcwatchd.conf (yours to remove)"; fi
