#!/usr/bin/env bash
# Installs the machine-level pieces acmems' tests, demo and benchmarks need, idempotently:
# Debian packages (BIND 9, Knot DNS, PowerDNS with sqlite3, nginx, PostgreSQL 15, openssl, curl, wget, headless Chromium, Prometheus' promtool, the ACME clients lego and Caddy) and Pebble 2.10 (from Debian unstable,
# unpacked into .cache/bin without touching the machine's apt sources).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.cache/bin"
mkdir -p "$bin"

# Every package of tests/realservices.py TOOLS (tests/unit/test_setup.py checks it), wrk included:
# the load tests of `make test` run it too.
pkgs="bind9 bind9-utils bind9-dnsutils nginx apache2 haproxy openssl curl wget dash wrk systemd postgresql-15 postgresql-client-15 chromium-headless-shell prometheus knot pdns-server pdns-backend-sqlite3 lego caddy"
# `setup-system.sh --bench`: also the alternatives make bench compares with
[ "${1:-}" = "--bench" ] && pkgs="$pkgs certbot"
need_pkgs=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Debian's build reports "Pebble version: dev", so the version we fetched is kept in a stamp file.
if [ -x "$bin/pebble" ] && grep -q '^2\.10' "$bin/pebble.version" 2>/dev/null; then
  exit 0
fi
echo "setup: fetching pebble 2.10 from Debian unstable"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
uri=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
fi
echo "deb $uri sid main" > "$d/sources.list"
opts=(-o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o "Debug::NoLocking=1")
apt-get "${opts[@]}" update -qq
(cd "$d" && apt-get "${opts[@]}" download pebble >/dev/null)
dpkg-deb -x "$d"/pebble_*.deb "$d/x"
deb=$(basename "$d"/pebble_*.deb)
ver=${deb#pebble_}; ver=${ver%%+*}; ver=${ver%%_*}
case "$ver" in 2.1[0-9]*|2.[2-9][0-9]*) ;; *) echo "setup: expected pebble >= 2.10, got $ver" >&2; exit 1;; esac
install -m 0755 "$d/x/usr/bin/pebble" "$bin/pebble"
echo "$ver" > "$bin/pebble.version"
echo "setup: pebble $ver installed in $bin"
