#!/usr/bin/env bash
# Removes what packaging/install.sh installed, with the same PREFIX, DESTDIR, SYSCONFDIR and
# UNITDIR. It keeps what is the operator's: the configuration (SYSCONFDIR/gc), the data
# (/var/lib/gc: messages, accounts, the TLS identity clients have pinned), the logs
# (/var/log/gc) and the account `gc`; it says how to remove them.
#
# Run for real as root (no DESTDIR), it first stops and disables the service.
set -euo pipefail

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
SYSCONFDIR="${SYSCONFDIR:-/etc}"
UNITDIR="${UNITDIR:-$PREFIX/lib/systemd/system}"
root="$DESTDIR"

say() {
	echo "uninstall.sh: $*"
}

real=no
if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then real=yes; fi
if [ "$real" = yes ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl disable --now gc-server.service 2>/dev/null || true
fi

rm -f "$root$PREFIX/bin/gc-server" "$root$PREFIX/bin/gc-client"
rm -f "$root$UNITDIR/gc-server.service"
rm -f "$root$PREFIX"/share/man/man1/gc-server.1 "$root$PREFIX"/share/man/man1/gc-server-*.1 \
	"$root$PREFIX"/share/man/man1/gc-client.1
for program in gc-server gc-client; do
	rm -f "$root$PREFIX/share/bash-completion/completions/$program" \
		"$root$PREFIX/share/zsh/site-functions/_$program" \
		"$root$PREFIX/share/fish/vendor_completions.d/$program.fish"
done
rm -rf "$root$PREFIX/lib/gc/plugins" "$root$PREFIX/share/doc/gc"
rmdir "$root$PREFIX/lib/gc" 2>/dev/null || true
rm -f "$root$SYSCONFDIR/logrotate.d/gc-server"

if [ "$real" = yes ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload
fi
say "removed the programs, unit, pages, completions, plugins and docs"
say "kept $root$SYSCONFDIR/gc, /var/lib/gc, /var/log/gc and the account gc; to remove them too:"
say "  rm -r $root$SYSCONFDIR/gc /var/lib/gc /var/log/gc && userdel gc"
