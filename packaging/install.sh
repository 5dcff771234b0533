#!/usr/bin/env bash
# Installs gc from a release build: the programs, the systemd unit, the manual pages, the shell
# completions, the example plugins, a default configuration and logrotate rules.
#
#   cargo build --release --locked
#   sudo packaging/install.sh
#
# Settings (environment variables):
#   PREFIX      where programs, pages and completions go (default /usr/local)
#   DESTDIR     a staging root prefixed to every path, for packages and tests (default: none).
#               With DESTDIR set, nothing outside it is touched: no account, no systemctl.
#   SYSCONFDIR  where gc/gc-server.toml and logrotate.d/ go (default /etc: the unit reads
#               /etc/gc/gc-server.toml)
#   UNITDIR     the systemd unit's directory (default PREFIX/lib/systemd/system)
#   BUILD_DIR   where cargo put the programs (default target/release in this repository)
#   DIST_DIR    the manual pages, completions and C example plugin, as gc-packaging renders
#               them (default: rendered now by BUILD_DIR/gc-packaging into BUILD_DIR/dist)
#
# Run for real as root (no DESTDIR), it also creates the system account `gc` and the
# directories /var/lib/gc and /var/log/gc (mode 0700, owned by gc), and reloads systemd. It
# neither enables nor starts the service: docs/operations.md §11 says what to do next.
# packaging/uninstall.sh undoes it (it keeps the configuration, the data and the account).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
SYSCONFDIR="${SYSCONFDIR:-/etc}"
UNITDIR="${UNITDIR:-$PREFIX/lib/systemd/system}"
BUILD_DIR="${BUILD_DIR:-$repo/target/release}"

die() {
	echo "install.sh: error: $*" >&2
	exit 1
}
say() {
	echo "install.sh: $*"
}

for program in gc-server gc-client; do
	[ -x "$BUILD_DIR/$program" ] ||
		die "$BUILD_DIR/$program is missing: build first (cargo build --release --locked), or set BUILD_DIR"
done
if [ -z "${DIST_DIR:-}" ]; then
	[ -x "$BUILD_DIR/gc-packaging" ] ||
		die "$BUILD_DIR/gc-packaging is missing: build first (cargo build --release --locked), or set DIST_DIR"
	DIST_DIR="$BUILD_DIR/dist"
	"$BUILD_DIR/gc-packaging" "$DIST_DIR" >/dev/null
fi
[ -d "$DIST_DIR/man/man1" ] && [ -d "$DIST_DIR/completions" ] ||
	die "$DIST_DIR does not hold what gc-packaging renders (man/man1, completions, mods)"

root="$DESTDIR"
bindir="$root$PREFIX/bin"
mandir="$root$PREFIX/share/man/man1"
docdir="$root$PREFIX/share/doc/gc"
plugindir="$root$PREFIX/lib/gc/plugins"
confdir="$root$SYSCONFDIR/gc"

# Programs.
install -d -m 0755 "$bindir"
install -m 0755 "$BUILD_DIR/gc-server" "$BUILD_DIR/gc-client" "$bindir/"

# The unit, pointing at the programs where they now are (the file names /usr/local).
install -d -m 0755 "$root$UNITDIR"
sed -e "s|/usr/local/bin/|$PREFIX/bin/|g" -e "s|/usr/local/share/doc/gc/|$PREFIX/share/doc/gc/|g" \
	-e "s|/etc/gc/|$SYSCONFDIR/gc/|g" \
	"$here/gc-server.service" >"$root$UNITDIR/gc-server.service"
chmod 0644 "$root$UNITDIR/gc-server.service"

# Manual pages and completions, under the names each shell looks for.
install -d -m 0755 "$mandir"
install -m 0644 "$DIST_DIR"/man/man1/*.1 "$mandir/"
install -d -m 0755 "$root$PREFIX/share/bash-completion/completions" \
	"$root$PREFIX/share/zsh/site-functions" "$root$PREFIX/share/fish/vendor_completions.d"
for program in gc-server gc-client; do
	install -m 0644 "$DIST_DIR/completions/bash/$program" \
		"$root$PREFIX/share/bash-completion/completions/$program"
	install -m 0644 "$DIST_DIR/completions/zsh/_$program" \
		"$root$PREFIX/share/zsh/site-functions/_$program"
	install -m 0644 "$DIST_DIR/completions/fish/$program.fish" \
		"$root$PREFIX/share/fish/vendor_completions.d/$program.fish"
done

# Example plugins, by the side that loads them. None is active: copy the ones you want into
# the mods directory (the server's /var/lib/gc/mods, a user's ~/.local/share/gc-client/mods).
install -d -m 0755 "$plugindir/server" "$plugindir/client"
install -m 0644 "$DIST_DIR"/mods/libshout.so "$plugindir/client/"
# The Rust examples, when the build made them (cargo build --release builds the workspace).
for lib in libword_filter.so libgreeter.so; do
	if [ -f "$BUILD_DIR/$lib" ]; then install -m 0644 "$BUILD_DIR/$lib" "$plugindir/server/"; fi
done
if [ -f "$BUILD_DIR/libword_filter.so" ]; then
	install -m 0644 "$repo/mods/word-filter/word-filter.txt" "$plugindir/server/"
fi
if [ -f "$BUILD_DIR/libemoji.so" ]; then install -m 0644 "$BUILD_DIR/libemoji.so" "$plugindir/client/"; fi

# Documentation.
install -d -m 0755 "$docdir"
install -m 0644 "$repo/README.md" "$repo"/docs/*.md "$docdir/"

# Configuration: a default once; an operator's file is never replaced.
install -d -m 0755 "$confdir" "$root$SYSCONFDIR/logrotate.d"
if [ -e "$confdir/gc-server.toml" ]; then
	say "kept $confdir/gc-server.toml (the default is $here/gc-server.toml)"
else
	install -m 0640 "$here/gc-server.toml" "$confdir/gc-server.toml"
fi
install -m 0644 "$here/gc-server.logrotate" "$root$SYSCONFDIR/logrotate.d/gc-server"

if [ -n "$DESTDIR" ]; then
	say "installed into $DESTDIR (no account made, systemd not told)"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	say "installed under $PREFIX; not root: no account or system directories made"
	exit 0
fi

# For real, as root: the account, its directories, the configuration readable by it.
if ! getent passwd gc >/dev/null; then
	nologin="$(command -v nologin || echo /usr/sbin/nologin)"
	useradd --system --user-group --home-dir /var/lib/gc --no-create-home \
		--shell "$nologin" --comment "General Communications server" gc
	say "made the system account gc"
fi
install -d -m 0700 -o gc -g gc /var/lib/gc /var/log/gc
chgrp gc "$confdir/gc-server.toml"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload
fi
say "installed. Next: edit $confdir/gc-server.toml, then systemctl enable --now gc-server"
