#!/usr/bin/env bash
# Install the system packages interpedia's tests and tools need (Debian 12 bookworm):
#   - PostgreSQL 15 server + headers, and pgvector built from Debian trixie's source package
#     (bookworm has no pgvector binary package; trixie's binaries would drag in a newer libc),
#   - chromium + chromium-driver (Playwright e2e tests), bible-kjv(-text) and python3.11-doc
#     (demo corpus), wrk (load bench), nodejs + npm when there is no npm (the pages' d3).
# Idempotent: when everything is present it only runs dpkg-query and a file test (well under 2 s),
# and `apt-get update` runs only when something is missing.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PG_MAJOR=15
PG_BINDIR="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BINDIR}/pg_config"
# Where PGXS installs for Debian's PG 15 (pg_config --sharedir / --pkglibdir); fixed so the
# check works before postgresql-server-dev-15 (which ships pg_config) is installed.
PG_SHAREDIR="/usr/share/postgresql/${PG_MAJOR}"
PG_PKGLIBDIR="/usr/lib/postgresql/${PG_MAJOR}/lib"
TRIXIE_SRC_LIST="/etc/apt/sources.list.d/interpedia-trixie-src.sources"

PACKAGES=(
  "postgresql-${PG_MAJOR}"
  "postgresql-client-${PG_MAJOR}"
  "postgresql-server-dev-${PG_MAJOR}"
  build-essential
  dpkg-dev
  chromium
  chromium-driver
  bible-kjv-text
  bible-kjv
  python3.11-doc
  wrk
)

log() { printf 'install-system: %s\n' "$*" >&2; }

# Packages from PACKAGES that are not fully installed (one dpkg-query call).
missing_packages() {
  local status
  status="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)"
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    if ! grep -qE "^${pkg//./\\.} ii " <<<"$status"; then
      printf '%s\n' "$pkg"
    fi
  done
}

pgvector_installed() {
  [[ -f "${PG_SHAREDIR}/extension/vector.control" && -f "${PG_PKGLIBDIR}/vector.so" ]]
}

mapfile -t MISSING < <(missing_packages)
# npm installs the pages' d3 from package-lock.json (make install). Debian's nodejs + npm only when no npm is
# here at all: a Node.js from elsewhere (nodesource's nodejs carries its own npm) conflicts with Debian's npm.
if ! command -v npm >/dev/null 2>&1; then
  MISSING+=(nodejs npm)
fi
NEED_PGVECTOR=0
pgvector_installed || NEED_PGVECTOR=1

if [[ ${#MISSING[@]} -eq 0 && $NEED_PGVECTOR -eq 0 ]]; then
  log "everything already installed (PostgreSQL ${PG_MAJOR}, pgvector, chromium, corpora, wrk)"
  exit 0
fi

if [[ ${#MISSING[@]} -gt 0 ]]; then
  log "missing packages: ${MISSING[*]}"
fi
if [[ $NEED_PGVECTOR -eq 1 ]]; then
  log "missing: pgvector for PostgreSQL ${PG_MAJOR} (${PG_SHAREDIR}/extension/vector.control)"
fi

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    log "not root; re-running with sudo"
    exec sudo -n DEBIAN_FRONTEND=noninteractive bash "$0" "$@"
  fi
  log "ERROR: root is needed to install the above (apt-get, make install)."
  log "Run as root, e.g.: sudo bash $0"
  exit 1
fi

APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

WORKDIR=""
cleanup() {
  if [[ -n "$WORKDIR" ]]; then rm -rf "$WORKDIR"; fi
  # The trixie deb-src entry is only needed for `apt-get source`; dropping it keeps later
  # `apt-get update` runs on this machine from fetching trixie's Sources index.
  rm -f "$TRIXIE_SRC_LIST"
}
trap cleanup EXIT

if [[ $NEED_PGVECTOR -eq 1 ]]; then
  log "adding deb-src (source only) entry for trixie: ${TRIXIE_SRC_LIST}"
  cat >"$TRIXIE_SRC_LIST" <<'EOF'
# Added by interpedia scripts/install-system.sh to build pgvector from source.
# Source packages only: a binary trixie entry would upgrade libc and much more.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

log "apt-get update"
apt-get update -q -o DPkg::Lock::Timeout=300 >&2

if [[ ${#MISSING[@]} -gt 0 ]]; then
  log "apt-get install ${MISSING[*]}"
  apt-get install "${APT_OPTS[@]}" "${MISSING[@]}" >&2
fi

if [[ $NEED_PGVECTOR -eq 1 ]]; then
  WORKDIR="$(mktemp -d /tmp/interpedia-pgvector.XXXXXX)"
  # apt drops to the _apt user for downloads; let it write here to avoid the "unsandboxed" warning.
  chmod 0755 "$WORKDIR"
  chown _apt "$WORKDIR" 2>/dev/null || true
  log "apt-get source pgvector/trixie (in ${WORKDIR})"
  (cd "$WORKDIR" && apt-get source -q pgvector/trixie >&2)
  SRCDIR="$(find "$WORKDIR" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
  if [[ -z "$SRCDIR" ]]; then
    log "ERROR: apt-get source pgvector produced no pgvector-* directory in ${WORKDIR}"
    exit 1
  fi
  log "building $(basename "$SRCDIR") against PostgreSQL ${PG_MAJOR}"
  # OPTFLAGS="" avoids -march=native (as Debian's own no-native patch does).
  make -C "$SRCDIR" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" -j"$(nproc)" >&2
  make -C "$SRCDIR" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" install >&2
  if ! pgvector_installed; then
    log "ERROR: pgvector build finished but ${PG_SHAREDIR}/extension/vector.control is missing"
    exit 1
  fi
  log "pgvector installed: $(grep -E '^default_version' "${PG_SHAREDIR}/extension/vector.control")"
fi

log "done"
