#!/usr/bin/env bash
# packaging/check.sh: builds omnid's packages and checks every packaging
# artefact under packaging/ (see docs/operations.md). Run from anywhere, as
# root, on Debian 12:  bash packaging/check.sh
#
#   1 build      cargo build --release --locked -p omni-supervisor
#   2 config     omnid --check-config on packaging/omnid.toml (+ tokens.example)
#   3 unit       systemd-analyze verify + security --offline on the unit
#   4 non-root   the binary with the packaged config as an unprivileged user
#                (what DynamicUser= does): sandbox, auth, reload, drain
#   5 deb        cargo deb, then the package's contents
#   6 lintian    no error and no warning that is not overridden with a reason
#   7 dpkg       install / reinstall / remove / purge in a throwaway root
#   8 systemd    the installed package booted under systemd (nspawn): the
#                real unit with DynamicUser, notify, watchdog, reload,
#                upgrade, stop, remove and purge
#   9 k8s        kubernetes-validate (pinned versions) + consistency checks
#                (checkov on the manifests and the Dockerfile: .ci/contract.sh)
#  10 docs       docs/operations.md and docs/runbook.md match the binary
#
# The throwaway root: an overlay filesystem whose lower layer is the host's
# `/` (read-only to it) and whose upper layer is a tmpfs, mounted in a
# private mount namespace (`unshare --mount`). dpkg runs in a chroot (or a
# systemd-nspawn container) of that overlay, so it sees the real dependency
# database and runs the real maintainer scripts, while every write lands in
# the tmpfs, which disappears with the namespace. The host's dpkg database
# is checksummed before and after to prove it was not touched.
#
# Idempotent; installs only what is missing (apt-get, pip, cargo install).
# Prints `packaging checks: N passed, M failed` and exits non-zero on any
# failure. Artefacts: target/debian/omnid_*.deb.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
export CARGO_TERM_COLOR=never DEBIAN_FRONTEND=noninteractive RUST_BACKTRACE=0
# Pinned: the validator release and the Kubernetes API version it checks.
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.33.0
START=$(date +%s)
WORK=$(mktemp -d /tmp/omnid-packaging.XXXXXX)
chmod 755 "$WORK"
SMOKE_PID=

cleanup() {
  if [ -n "$SMOKE_PID" ] && kill -0 "$SMOKE_PID" 2>/dev/null; then
    kill -KILL "$SMOKE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
die() { say "check.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (dpkg, unshare and systemd-nspawn need it)"

# ---- tools (installed only when missing) ----------------------------------
say "=== tools ($(( $(date +%s) - START ))s)"
need_apt=()
command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v objcopy >/dev/null 2>&1 || need_apt+=(binutils)
command -v deb-systemd-helper >/dev/null 2>&1 || need_apt+=(init-system-helpers)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
  say "cargo install cargo-deb"
  cargo install cargo-deb --locked --version '^3.8' --quiet
fi
kv_installed() {
  python3 -m pip show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"
}
if ! kv_installed; then
  say "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  python3 -m pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages \
         "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# ---- check runner ----------------------------------------------------------
PASSED=0
FAILED=0
FAILED_NAMES=()
# run_check NAME FUNCTION: runs FUNCTION in a subshell with errexit, its
# output in $WORK/NAME.log (shown when it fails).
run_check() {
  local name=$1 fn=$2 t0 rc
  t0=$(date +%s)
  say "=== $name ($(( t0 - START ))s)"
  set +e
  ( set -euo pipefail; "$fn" ) >"$WORK/$name.log" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    PASSED=$((PASSED + 1))
    say "ok   $name ($(( $(date +%s) - t0 ))s): $(tail -n 1 "$WORK/$name.log" | cut -c1-100)"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    say "FAIL $name ($(( $(date +%s) - t0 ))s); last lines of its log:"
    tail -n 60 "$WORK/$name.log" | sed 's/^/    /'
  fi
  return 0
}
finish() {
  say ""
  if [ $FAILED -gt 0 ]; then say "failed: ${FAILED_NAMES[*]}"; fi
  say "total time: $(( $(date +%s) - START ))s"
  say "packaging checks: $PASSED passed, $FAILED failed"
  [ $FAILED -eq 0 ]
}
fail() { say "FAILED: $*"; return 1; }

OMNID=$REPO/target/release/omnid
# The drain timeout of the packaged configuration, in seconds.
drain_s() { python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb")).get("drain_timeout_ms",30000)//1000)' "$1"; }

# ---- 1. build ----------------------------------------------------------------
check_build() {
  cargo build --release --locked -p omni-supervisor
  "$OMNID" --version
}
run_check build check_build
if [ $FAILED -gt 0 ]; then
  say "the build failed: nothing else can be checked"
  finish
  exit 1
fi

# ---- 2. packaged configuration ----------------------------------------------
check_config() {
  # The example lines of tokens.example, uncommented, must be a valid file.
  sed -n 's/^# \([A-Za-z0-9._-]\{1,64\}[[:space:]]\{1,\}[0-9a-f]\{64\}\)[[:space:]]*$/\1/p' \
    packaging/tokens.example > "$WORK/tokens"
  [ "$(wc -l < "$WORK/tokens")" -ge 1 ] || fail "tokens.example has no example line"
  OMNID_AUTH_TOKENS_FILE="$WORK/tokens" "$OMNID" --check-config --config packaging/omnid.toml \
    > "$WORK/effective.toml"
  python3 - "$WORK/effective.toml" <<'EOF'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
want = {
    ("auth", "enabled"): True,
    ("sandbox",): "on",
    ("log", "format"): "json",
    ("worker", "namespaces"): False,
    ("rate_limit", "enabled"): True,
    # One replica's store: SQLite in the unit's StateDirectory.
    ("store", "path"): "/var/lib/omnid/policies.db",
    ("store", "url"): "",
}
if "playground" in c:  # the key exists in builds with the browser playground
    want[("playground",)] = False
for path, v in want.items():
    got = c
    for p in path:
        got = got[p]
    assert got == v, f"{'.'.join(path)} = {got!r}, want {v!r}"
assert c["auth"]["tokens_file"], "auth.tokens_file is empty"
print("effective configuration: auth on, sandbox on, JSON logs, namespaces off, store in /var/lib/omnid")
EOF
  # Without its tokens file the packaged configuration must be refused.
  if OMNID_AUTH_TOKENS_FILE="$WORK/no-such-file" "$OMNID" --check-config \
       --config packaging/omnid.toml >/dev/null 2>&1; then
    fail "--check-config accepted a missing tokens file"
  fi
  # The shipped path is /etc/omnid/tokens (the unit copies it for the service).
  grep -q '^tokens_file = "/etc/omnid/tokens"$' packaging/omnid.toml
}
run_check config check_config

# ---- 3. systemd unit ---------------------------------------------------------
UNIT=packaging/systemd/omnid.service
check_unit() {
  # verify needs ExecStart's binary to exist: a copy of the unit runs the
  # binary just built instead of /usr/bin/omnid (the installed unit itself is
  # verified in the throwaway root by the dpkg check).
  mkdir -p "$WORK/unit"
  sed "s#/usr/bin/omnid#$OMNID#g" "$UNIT" > "$WORK/unit/omnid.service"
  systemd-analyze verify --man=no "$WORK/unit/omnid.service"
  # The optional socket unit (shipped as an example) activates that service.
  cp packaging/systemd/optional/omnid.socket "$WORK/unit/omnid.socket"
  systemd-analyze verify --man=no "$WORK/unit/omnid.socket"
  # Exposure score (0 best, 10 worst); 1.5 today. Fail if hardening regresses.
  systemd-analyze security --offline=yes --threshold=25 --no-pager "$WORK/unit/omnid.service" \
    | tail -n 1
  # Directives the service relies on (SERVICE.md section 7).
  local d
  for d in 'Type=notify' 'NotifyAccess=main' 'KillMode=control-group' 'OOMPolicy=continue' \
           'SystemCallArchitectures=native' 'DynamicUser=yes' 'NoNewPrivileges=yes' \
           'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
           'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'Restart=on-failure' \
           'RestrictNamespaces=yes' 'StateDirectory=omnid'; do
    grep -qx "$d" "$UNIT" || fail "missing $d"
  done
  for d in WatchdogSec MemoryMax TasksMax LimitNOFILE; do
    grep -q "^$d=" "$UNIT" || fail "missing $d="
  done
  # The workers need seccomp(2) and capset(2) (the systemd check proves the
  # whole filter in a booted container).
  grep -Eq '^SystemCallFilter=[^~].*\bseccomp\b' "$UNIT" || fail "SystemCallFilter lacks seccomp"
  if grep -q '^SystemCallFilter=~.*@privileged' "$UNIT"; then
    local last
    last=$(grep '^SystemCallFilter=' "$UNIT" | tail -n 1)
    case $last in
      SystemCallFilter=~*) fail "~@privileged denies capset: allow it again after that line" ;;
    esac
    grep -qw capset <<<"$last" || fail "~@privileged denies capset: allow it again after that line"
  fi
  if grep -E '^SystemCallFilter=~' "$UNIT" | grep -Eq '\b(seccomp|capset|prlimit64)\b'; then
    fail "SystemCallFilter denies something the workers need"
  fi
  # ProtectSystem=strict leaves only the StateDirectory writable: the
  # packaged store.path must be in it.
  local state
  state=$(sed -n 's/^StateDirectory=//p' "$UNIT")
  grep -qx "path = \"/var/lib/$state/policies.db\"" packaging/omnid.toml \
    || fail "store.path is not in /var/lib/$state, the unit's StateDirectory"
  if grep -Eq '^(ReadOnlyPaths|InaccessiblePaths|TemporaryFileSystem)=.*/var/lib' "$UNIT"; then
    fail "the unit hides or freezes /var/lib, where the store is"
  fi
  # RestrictNamespaces=yes: the packaged config must not ask for namespaces.
  grep -qx 'namespaces = false' packaging/omnid.toml || fail "worker.namespaces must be false"
  # TimeoutStopSec > drain + 10 s of worker shutdown + 2 s of connection close.
  local stop drain
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$UNIT")
  drain=$(drain_s packaging/omnid.toml)
  [ -n "$stop" ] && [ "$stop" -gt $((drain + 12)) ] || fail "TimeoutStopSec=$stop <= drain $drain s + 12 s"
  echo "unit ok: TimeoutStopSec=${stop}s > drain ${drain}s + 12s"
}
run_check unit check_unit

# ---- 4. non-root run of the packaged configuration ---------------------------
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
check_nonroot() {
  # What DynamicUser= gives the service: an unprivileged uid, no capability.
  mkdir -p "$WORK/nonroot/bin"
  install -m 0755 "$OMNID" "$WORK/nonroot/bin/omnid"
  install -m 0644 packaging/omnid.toml "$WORK/nonroot/omnid.toml"
  local token=smoke-$RANDOM$RANDOM-0123456789abcdef0123456789abcdef log=$WORK/nonroot/omnid.log
  printf '%s' "$token" | "$OMNID" --hash-token acme > "$WORK/nonroot/tokens"
  chmod 0644 "$WORK/nonroot/tokens"
  : > "$log"
  # The packaged store.path is the unit's StateDirectory; here a directory
  # of the same mode that uid 65534 owns.
  install -d -m 0700 -o 65534 -g 65534 "$WORK/nonroot/state"
  OMNID_LISTEN=127.0.0.1:0 OMNID_WORKERS=2 OMNID_AUTH_TOKENS_FILE="$WORK/nonroot/tokens" \
    OMNID_STORE_PATH="$WORK/nonroot/state/policies.db" \
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
    "$WORK/nonroot/bin/omnid" --config "$WORK/nonroot/omnid.toml" >>"$log" 2>&1 &
  SMOKE_PID=$!
  local addr="" i
  for i in $(seq 1 200); do
    addr=$(sed -n 's/.*"message":"listening on \([0-9.:]*\)".*/\1/p' "$log" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$SMOKE_PID" 2>/dev/null || { cat "$log"; fail "omnid exited at start-up"; }
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log"; fail "omnid did not start listening"; }
  local url=http://$addr
  cat "$log"
  grep -q '"message":"sandbox: seccomp on, no_new_privs on, uid 65534 gid 65534' "$log" \
    || fail "sandbox summary does not show seccomp on as uid 65534"
  [ "$(http_code "$url/api/health")" = 200 ] || fail "/api/health"
  [ "$(http_code "$url/api/readiness")" = 200 ] || fail "/api/readiness"
  local body='{"code":"x","context":{}}'
  [ "$(http_code -H 'Content-Type: application/json' -d "$body" "$url/api/validate")" = 401 ] \
    || fail "validate without a token is not 401"
  [ "$(http_code -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
        -d "$body" "$url/api/validate")" = 200 ] || fail "validate with a token is not 200"
  # Workers: same unprivileged uid, no_new_privs, their own seccomp filter.
  local w n=0
  for w in $(pgrep -P "$SMOKE_PID"); do
    grep -q '^Uid:[[:space:]]*65534' "/proc/$w/status" || fail "worker $w is not uid 65534"
    grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$w/status" || fail "worker $w lacks no_new_privs"
    grep -q '^Seccomp:[[:space:]]*2' "/proc/$w/status" || fail "worker $w has no seccomp filter"
    n=$((n + 1))
  done
  # Two workers, plus the spare the packaged dedicated mode keeps ready
  # (pool.spare_workers = 1; it may still be starting).
  { [ $n -ge 2 ] && [ $n -le 3 ]; } || fail "expected 2 workers and at most one spare, found $n"
  curl -s --max-time 5 "$url/metrics" > "$WORK/metrics.txt"
  grep -q '^omnid_worker_restarts_total{reason="seccomp_violation"} 0' "$WORK/metrics.txt" \
    || fail "metrics lack the restart counters"
  # SIGHUP: reload and roll the workers; still ready afterwards.
  kill -HUP "$SMOKE_PID"
  for i in $(seq 1 50); do
    grep -q 'configuration reloaded' "$log" && break
    sleep 0.1
  done
  grep -q 'configuration reloaded' "$log" || fail "SIGHUP did not reload"
  sleep 1
  [ "$(http_code "$url/api/readiness")" = 200 ] || fail "not ready after the reload"
  # SIGTERM: drain and exit 0.
  kill -TERM "$SMOKE_PID"
  local rc=0
  wait "$SMOKE_PID" || rc=$?
  SMOKE_PID=
  [ $rc -eq 0 ] || fail "exit status $rc after SIGTERM"
  tail -n 3 "$log"
}
run_check nonroot check_nonroot

# ---- 5. Debian package -------------------------------------------------------
DEB=
check_deb() {
  # --dbgsym: the binary is stripped, its debug info goes to a separate
  # omnid-dbgsym .ddeb (the release profile has debug = 1).
  cargo deb -p omni-supervisor --no-build --dbgsym | tee "$WORK/deb.out"
  local deb
  deb=$(grep -E '/omnid_[^/]*\.deb$' "$WORK/deb.out" | tail -n 1)
  [ -f "$deb" ] || fail "no .deb produced"
  echo "$deb" > "$WORK/deb.path"
  dpkg-deb --info "$deb"
  dpkg-deb --contents "$deb" | tee "$WORK/deb.contents"
  local p
  for p in ./usr/bin/omnid ./usr/lib/systemd/system/omnid.service ./etc/omnid/omnid.toml \
           ./usr/share/doc/omnid/copyright ./usr/share/doc/omnid/changelog.Debian.gz \
           ./usr/share/doc/omnid/operations.md ./usr/share/doc/omnid/runbook.md \
           ./usr/share/doc/omnid/tokens.example ./usr/share/man/man1/omnid.1.gz \
           ./usr/share/doc/omnid/examples/omnid.socket \
           ./usr/share/lintian/overrides/omnid; do
    grep -q " $p\$" "$WORK/deb.contents" || fail "missing $p"
  done
  mkdir -p "$WORK/deb-control" "$WORK/deb-files"
  dpkg-deb --control "$deb" "$WORK/deb-control"
  dpkg-deb --extract "$deb" "$WORK/deb-files"
  [ "$(cat "$WORK/deb-control/conffiles")" = /etc/omnid/omnid.toml ] || fail "conffiles"
  cmp packaging/systemd/omnid.service "$WORK/deb-files/usr/lib/systemd/system/omnid.service"
  cmp packaging/omnid.toml "$WORK/deb-files/etc/omnid/omnid.toml"
  if readelf -S "$WORK/deb-files/usr/bin/omnid" | grep -q '\.debug_info'; then
    fail "usr/bin/omnid is not stripped"
  fi
  # The package version is the crate's, and the changelog's top entry agrees.
  local version crate
  version=$(dpkg-deb --field "$deb" Version)
  crate=$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json,sys; print([p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="omni-supervisor"][0])')
  [ "$version" = "$crate-1" ] || fail "package version $version, crate $crate"
  head -n 1 packaging/debian/changelog | grep -q "^omnid ($version) " \
    || fail "packaging/debian/changelog does not start with version $version"
}
run_check deb check_deb
[ -f "$WORK/deb.path" ] && DEB=$(cat "$WORK/deb.path")

# ---- 6. lintian -------------------------------------------------------------
check_lintian() {
  [ -n "$DEB" ] || fail "no package"
  # Errors and warnings fail; overrides (with reasons) are shipped in
  # packaging/debian/omnid.lintian-overrides. Info tags are shown only.
  lintian --fail-on error,warning --display-info "$DEB"
}
run_check lintian check_lintian

# ---- throwaway roots --------------------------------------------------------
# in_throwaway_root SCRIPT OUTDIR: runs bash SCRIPT in a private mount
# namespace with R=<overlay of / on a tmpfs> (the .deb copied to
# $R/tmp/omnid.deb) and OUT=OUTDIR, a host directory for results.
in_throwaway_root() {
  local script=$1 out=$2 t
  t=$(mktemp -d "$WORK/root.XXXXXX")
  mkdir -p "$out"
  unshare --mount --propagation private -- env T="$t" OUT="$out" DEB="$DEB" REPO="$REPO" \
    bash -euo pipefail -c '
      mount -t tmpfs -o mode=0755 tmpfs "$T"
      mkdir -p "$T/upper" "$T/work" "$T/root"
      mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
      R=$T/root
      install -m 0644 "$DEB" "$R/tmp/omnid.deb"
      export R
      source "$0"
    ' "$script"
}
host_fingerprint() {
  { sha256sum /var/lib/dpkg/status
    ls -ld /usr/bin/omnid /etc/omnid /lib/systemd/system/omnid.service \
      /etc/systemd/system/multi-user.target.wants/omnid.service 2>&1 || true
  }
}

# ---- 7. install / reinstall / remove / purge in a chroot -------------------
cat > "$WORK/dpkg-test.sh" <<'EOF'
# Runs inside in_throwaway_root: $R is the overlay root.
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
in_root() { chroot "$R" "$@"; }
fail() { echo "FAILED: $*"; exit 1; }
echo "--- dpkg -i"
in_root dpkg -i /tmp/omnid.deb
in_root dpkg-query -W -f='${Status} ${Version}\n' omnid | grep -q '^install ok installed '
for f in /usr/bin/omnid /lib/systemd/system/omnid.service /etc/omnid/omnid.toml \
         /usr/share/doc/omnid/copyright /usr/share/man/man1/omnid.1.gz; do
  [ -e "$R$f" ] || fail "missing $f"
done
[ "$(stat -c '%a %U' "$R/etc/omnid/tokens")" = "600 root" ] || fail "tokens file is not 0600 root"
[ -L "$R/etc/systemd/system/multi-user.target.wants/omnid.service" ] || fail "unit not enabled"
in_root omnid --version
# The installed configuration, with the tokens file postinst created.
in_root omnid --check-config --config /etc/omnid/omnid.toml > /dev/null
# The installed unit at its real path, with its real ExecStart binary.
in_root systemd-analyze verify --man=no /lib/systemd/system/omnid.service
echo "--- reinstall (the upgrade path) keeps local edits"
echo "# local edit" >> "$R/etc/omnid/omnid.toml"
echo "acme $(printf '%s' x | sha256sum | cut -d' ' -f1)" >> "$R/etc/omnid/tokens"
in_root dpkg -i --force-confold /tmp/omnid.deb
grep -q '^# local edit$' "$R/etc/omnid/omnid.toml" || fail "conffile edit lost"
grep -q '^acme ' "$R/etc/omnid/tokens" || fail "tokens file overwritten"
echo "--- dpkg -r"
in_root dpkg -r omnid
in_root dpkg-query -W -f='${Status}\n' omnid | grep -q '^deinstall ok config-files$'
[ ! -e "$R/usr/bin/omnid" ] || fail "binary left after remove"
[ ! -e "$R/lib/systemd/system/omnid.service" ] || fail "unit left after remove"
[ -e "$R/etc/omnid/omnid.toml" ] && [ -e "$R/etc/omnid/tokens" ] || fail "remove must keep configuration"
echo "--- dpkg -P"
in_root dpkg -P omnid
if in_root dpkg-query -W omnid >/dev/null 2>&1; then
  in_root dpkg-query -W -f='${Status}\n' omnid | grep -q '^unknown ok not-installed$' \
    || fail "package still known after purge"
fi
[ ! -e "$R/etc/omnid" ] || fail "/etc/omnid left after purge"
[ ! -e "$R/etc/systemd/system/multi-user.target.wants/omnid.service" ] || fail "enable symlink left"
[ ! -e "$R/etc/systemd/system/omnid.service" ] || fail "mask left after purge"
echo "install, reinstall, remove and purge: ok"
EOF
check_dpkg() {
  [ -n "$DEB" ] || fail "no package"
  local before after
  before=$(host_fingerprint)
  in_throwaway_root "$WORK/dpkg-test.sh" "$WORK/dpkg.out"
  after=$(host_fingerprint)
  [ "$before" = "$after" ] || fail "the host changed: $before / $after"
  echo "host dpkg database and paths unchanged"
}
run_check dpkg check_dpkg

# ---- 8. the installed package under systemd ------------------------------
cat > "$WORK/boot-setup.sh" <<'EOF'
# Runs inside in_throwaway_root: install the package, add a test token and
# the test service, boot the overlay with systemd-nspawn, collect results.
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
chroot "$R" dpkg -i /tmp/omnid.deb >/dev/null
# /tmp is a fresh tmpfs once the container boots: keep a copy for the upgrade test.
cp "$R/tmp/omnid.deb" "$R/root/omnid.deb"
token=boot-$RANDOM$RANDOM-0123456789abcdef0123456789abcdef
printf '%s' "$token" > "$R/root/token"
printf '%s' "$token" | chroot "$R" omnid --hash-token acme >> "$R/etc/omnid/tokens"
umount "$R/proc" "$R/dev"
# Container images (this one included) often carry a policy-rc.d that
# forbids deb-systemd-invoke to start or stop services; a real machine has
# none, and the upgrade/remove tests need the maintainer scripts to act.
rm -f "$R/usr/sbin/policy-rc.d"
# A machine id of its own, so the container's journal is its own.
cat /proc/sys/kernel/random/uuid | tr -d '-' > "$R/etc/machine-id"
install -m 0755 "$REPO/packaging/test/boot-test.sh" "$R/root/boot-test.sh"
cat > "$R/etc/systemd/system/omnid-boot-test.service" <<'UNIT'
[Unit]
Description=omnid packaging test (packaging/test/boot-test.sh)
Wants=omnid.service
After=omnid.service
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
TimeoutStartSec=240
ExecStart=/root/boot-test.sh
UNIT
ln -s /etc/systemd/system/omnid-boot-test.service \
  "$R/etc/systemd/system/multi-user.target.wants/omnid-boot-test.service"
rc=0
timeout 300 systemd-nspawn --quiet --directory="$R" --boot --register=no --keep-unit \
  --link-journal=no --private-network --console=pipe > "$OUT/console.log" 2>&1 || rc=$?
cp "$R/root/boot-results.txt" "$R/root/boot-test.log" "$OUT/" 2>/dev/null || true
echo "systemd-nspawn exit status $rc"
EOF
check_systemd() {
  [ -n "$DEB" ] || fail "no package"
  local out=$WORK/boot.out
  in_throwaway_root "$WORK/boot-setup.sh" "$out"
  if [ ! -s "$out/boot-results.txt" ]; then
    tail -n 40 "$out/console.log" || true
    fail "the container produced no results"
  fi
  cat "$out/boot-results.txt"
  if grep -qv '^ok ' "$out/boot-results.txt" \
     || ! grep -qx 'ok done' "$out/boot-results.txt"; then
    echo "--- boot-test.log"; cat "$out/boot-test.log" || true
    fail "a test inside the container failed"
  fi
}
run_check systemd check_systemd

# ---- 9. Kubernetes manifests ---------------------------------------------------
check_k8s() {
  cd packaging/k8s
  python3 -m kubernetes_validate --version
  # The schemas of the core API: every built-in resource, strictly (unknown
  # fields are errors). ServiceMonitor is a CRD: checked structurally below.
  python3 -m kubernetes_validate --strict --kubernetes-version "$K8S_VERSION" \
    namespace.yaml configmap.yaml deployment.yaml service.yaml pdb.yaml \
    networkpolicy.yaml secret.example.yaml store.secret.example.yaml sqlite/pvc.yaml
  # The ConfigMap's configuration must be valid for this omnid, with the
  # Deployment's environment (the store URL of the example Secret).
  python3 -c 'import yaml,sys; sys.stdout.write(yaml.safe_load(open("configmap.yaml"))["data"]["omnid.toml"])' \
    > "$WORK/k8s-omnid.toml"
  OMNID_WORKERS=2 OMNID_AUTH_TOKENS_FILE="$WORK/tokens" \
    OMNID_STORE_URL="$(python3 -c 'import yaml; print(yaml.safe_load(open("store.secret.example.yaml"))["stringData"]["url"])')" \
    "$OMNID" --check-config --config "$WORK/k8s-omnid.toml" > "$WORK/k8s-effective.toml"
  # Without the Secret (the sqlite/ overlay) the same file is valid too.
  OMNID_WORKERS=2 OMNID_AUTH_TOKENS_FILE="$WORK/tokens" \
    "$OMNID" --check-config --config "$WORK/k8s-omnid.toml" > /dev/null
  python3 - "$WORK/k8s-effective.toml" <<'EOF'
import sys, tomllib, yaml
eff = tomllib.load(open(sys.argv[1], "rb"))
dep = yaml.safe_load(open("deployment.yaml"))
svc = yaml.safe_load(open("service.yaml"))
pdb = yaml.safe_load(open("pdb.yaml"))
cm = yaml.safe_load(open("configmap.yaml"))
sm = yaml.safe_load(open("servicemonitor.yaml"))
kus = yaml.safe_load(open("kustomization.yaml"))
spec = dep["spec"]["template"]["spec"]
(c,) = spec["containers"]
def need(cond, msg):
    if not cond:
        sys.exit("k8s: " + msg)
need(eff["listen"] == "0.0.0.0:8080", "the ConfigMap must listen on 0.0.0.0:8080")
need(eff["probe_listen"] == "0.0.0.0:8081", "the ConfigMap's probe_listen must be 0.0.0.0:8081")
need(eff["auth"]["enabled"] and eff["sandbox"] == "on", "auth and sandbox must be on")
need(not eff["worker"]["namespaces"], "worker.namespaces must be false (no CAP_SYS_ADMIN)")
need(eff.get("playground", False) is False, "the playground must be off")
port = int(eff["listen"].rsplit(":", 1)[1])
probe_port = int(eff["probe_listen"].rsplit(":", 1)[1])
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
need(ports == {"http": port, "probe": probe_port}, "containerPorts != listen and probe_listen ports")
# The probes use the plain probe listener, which answers whatever TLS and
# auth.mode say, on the routes it serves.
for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                    ("readinessProbe", "/readyz")):
    need(c[probe]["httpGet"] == {"path": path, "port": "probe"}, f"{probe}: {path} on the probe port")
sc = c["securityContext"]
need(sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], "runAsNonRoot/readOnlyRootFilesystem")
need(sc["allowPrivilegeEscalation"] is False, "allowPrivilegeEscalation")
need(sc["capabilities"]["drop"] == ["ALL"], "capabilities drop ALL")
need(sc["seccompProfile"]["type"] == "RuntimeDefault", "container seccompProfile")
need(spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "pod seccompProfile")
need(spec["securityContext"]["runAsNonRoot"], "pod runAsNonRoot")
for k in ("requests", "limits"):
    need({"cpu", "memory"} <= set(c["resources"][k]), f"resources.{k}")
ann = dep["spec"]["template"]["metadata"]["annotations"]
need(ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(probe_port), "scrape annotations")
need(ann["prometheus.io/path"] == "/metrics", "scrape path (the probe listener serves /metrics)")
# preStop sleep + drain + worker stop (10 s) must fit in the grace period.
pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
need(spec["terminationGracePeriodSeconds"] > pre + eff["drain_timeout_ms"] // 1000 + 10,
     "terminationGracePeriodSeconds too short for the drain")
# Config and tokens mounted where the configuration expects them.
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in spec["volumes"]}
need(c["args"] == ["--config", mounts["config"] + "/omnid.toml"], "--config path")
need(vols["config"]["configMap"]["name"] == cm["metadata"]["name"], "ConfigMap name")
tok = vols["tokens"]["secret"]
raw = tomllib.loads(cm["data"]["omnid.toml"])
need(raw["auth"]["tokens_file"] == mounts["tokens"] + "/" + tok["items"][0]["path"], "tokens path")
need(tok["secretName"] == "omnid-tokens", "Secret name")
# The TLS Secret: optional (TLS off without it), where the ConfigMap's
# commented [tls] lines point.
tls = vols["tls"]["secret"]
need(tls["secretName"] == "omnid-tls" and tls.get("optional") is True, "the TLS Secret must be optional")
need(mounts["tls"] + "/tls.crt" in cm["data"]["omnid.toml"], "the ConfigMap's [tls] lines must name the TLS mount")
sel = dep["spec"]["selector"]["matchLabels"]
tmpl = dep["spec"]["template"]["metadata"]["labels"]
need(all(tmpl.get(k) == v for k, v in sel.items()), "selector does not match the pod labels")
need(svc["spec"]["selector"] == sel, "Service selector")
need(pdb["spec"]["selector"]["matchLabels"] == sel, "PDB selector")
need([(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]]
     == [("http", port, "http"), ("probe", probe_port, "probe")], "Service ports")
# ServiceMonitor (CRD, no schema in kubernetes-validate): the fields it uses.
need(sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor", "ServiceMonitor kind")
need(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
     "ServiceMonitor selector does not match the Service labels")
need(sm["spec"]["endpoints"][0]["port"] == "probe", "ServiceMonitor port (the probe listener)")
need(sm["spec"]["endpoints"][0]["path"] == "/metrics", "ServiceMonitor path")
need(set(kus["resources"]) == {"namespace.yaml", "configmap.yaml", "deployment.yaml", "service.yaml",
                               "pdb.yaml", "networkpolicy.yaml"},
     "kustomization resources")
# One namespace for everything, not `default`.
ns = yaml.safe_load(open("namespace.yaml"))
netpol = yaml.safe_load(open("networkpolicy.yaml"))
need(ns["kind"] == "Namespace" and kus["namespace"] == ns["metadata"]["name"], "kustomization namespace")
for name, doc in (("configmap", cm), ("deployment", dep), ("service", svc), ("pdb", pdb),
                  ("servicemonitor", sm), ("networkpolicy", netpol),
                  ("secret.example", yaml.safe_load(open("secret.example.yaml"))),
                  ("store.secret.example", yaml.safe_load(open("store.secret.example.yaml")))):
    need(doc["metadata"].get("namespace") == ns["metadata"]["name"], f"{name}: namespace")
# The NetworkPolicy: the pods, ingress to the service port only, no egress.
need(netpol["spec"]["podSelector"]["matchLabels"] == sel, "NetworkPolicy selector")
need(sorted(netpol["spec"]["policyTypes"]) == ["Egress", "Ingress"], "NetworkPolicy policyTypes")
egress = sorted((p["port"], p["protocol"]) for r in netpol["spec"].get("egress") or [] for p in r["ports"])
need(egress == [(53, "TCP"), (53, "UDP"), (5432, "TCP")],
     "NetworkPolicy egress must be PostgreSQL (5432/TCP) and DNS (53) only")
# The store: the URL from the Secret (never the ConfigMap), SQLite's path for
# the single-replica overlay on its volume.
store_secret = yaml.safe_load(open("store.secret.example.yaml"))
envs = {e["name"]: e for e in c["env"]}
ref = envs["OMNID_STORE_URL"]["valueFrom"]["secretKeyRef"]
need(ref["name"] == store_secret["metadata"]["name"] and ref["key"] in store_secret["stringData"],
     "OMNID_STORE_URL must come from the omnid-store Secret's url")
need(not ref.get("optional", False), "OMNID_STORE_URL must be required (replicas on SQLite would disagree)")
need(not raw.get("store", {}).get("url"), "the ConfigMap must not hold store.url (it has a password)")
# --check-config prints the URL with its password replaced.
need(eff["store"]["url"].startswith("postgres://") and "CHANGE-ME" not in eff["store"]["url"],
     "store.url not taken from OMNID_STORE_URL, or printed with its password")
sq_kus = yaml.safe_load(open("sqlite/kustomization.yaml"))
sq_pvc = yaml.safe_load(open("sqlite/pvc.yaml"))
sq = yaml.safe_load(open("sqlite/deployment-patch.yaml"))
need(sq_kus["resources"] == ["../", "pvc.yaml"] and sq_kus["namespace"] == ns["metadata"]["name"],
     "sqlite/kustomization.yaml resources")
need(sq_kus["patches"] == [{"path": "deployment-patch.yaml",
                            "target": {"kind": "Deployment", "name": dep["metadata"]["name"]}}],
     "sqlite/ patches")
# Apply the JSON patch to the base Deployment (no kustomize here): the ops
# it uses are replace, test, remove and add.
import copy
def walk(doc, path):
    parts = [p for p in path.split("/")[1:]]
    for p in parts[:-1]:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc, parts[-1]
patched = copy.deepcopy(dep)
for op in sq:
    parent, key = walk(patched, op["path"])
    if isinstance(parent, list):
        idx = len(parent) if key == "-" else int(key)
        if op["op"] == "add":
            parent.insert(idx, op["value"])
        elif op["op"] == "remove":
            parent.pop(idx)
        elif op["op"] == "test":
            need(parent[idx] == op["value"], f"sqlite/ patch: test {op['path']} failed")
        else:
            parent[idx] = op["value"]
    else:
        if op["op"] == "remove":
            del parent[key]
        elif op["op"] == "test":
            need(parent.get(key) == op["value"], f"sqlite/ patch: test {op['path']} failed")
        else:
            parent[key] = op["value"]
pspec = patched["spec"]
need(pspec["replicas"] == 1 and pspec["strategy"] == {"type": "Recreate"}, "sqlite/: one replica, Recreate")
(pc,) = pspec["template"]["spec"]["containers"]
need("OMNID_STORE_URL" not in {e["name"] for e in pc["env"]}, "sqlite/ must drop OMNID_STORE_URL")
pmounts = {m["name"]: m["mountPath"] for m in pc["volumeMounts"]}
pvols = {v["name"]: v for v in pspec["template"]["spec"]["volumes"]}
need(pvols["store"]["persistentVolumeClaim"]["claimName"] == sq_pvc["metadata"]["name"],
     "sqlite/: the volume is the PersistentVolumeClaim")
need(raw["store"]["path"].rsplit("/", 1)[0] == pmounts["store"], "sqlite/: store.path is not on the volume")
need(sq_pvc["metadata"]["namespace"] == ns["metadata"]["name"], "sqlite/pvc.yaml: namespace")
need([p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]] == [port, probe_port],
     "NetworkPolicy ingress must be the service and probe ports only")
# The image digest placeholder (or a real digest) in the kustomization.
(img,) = kus["images"]
need(c["image"].split(":")[0] == img["name"] and img["digest"].startswith("sha256:")
     and len(img["digest"]) == 71, "kustomization images: digest")
print("k8s manifests consistent with each other and with omnid")
EOF
}
run_check k8s check_k8s

# ---- 10. documentation -------------------------------------------------------
check_docs() {
  # Defaults as this binary prints them (no file, no OMNID_* variable).
  env -u OMNID_CONFIG $(env | sed -n 's/^\(OMNID_[A-Z0-9_]*\)=.*/-u \1/p') \
    "$OMNID" --check-config > "$WORK/defaults.toml"
  if [ ! -s "$WORK/metrics.txt" ]; then fail "no /metrics sample (the nonroot check failed)"; fi
  python3 - "$WORK/defaults.toml" "$WORK/metrics.txt" <<'EOF'
import re, sys, tomllib
defaults = tomllib.load(open(sys.argv[1], "rb"))
ops = open("docs/operations.md").read()
run = open("docs/runbook.md").read()
errors = []

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)

def leaves(t, prefix=()):
    for k, v in t.items():
        if not prefix and k in ("version", "tenants"):
            continue
        if isinstance(v, dict):
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v

rows = {}
for line in ops.splitlines():
    m = re.match(r"^\| `([a-z_.]+)` \| `(OMNID_[A-Z0-9_]+)` \| (.*?) \|", line)
    if m:
        rows[m.group(1)] = (m.group(2), m.group(3))
n = 0
for path, value in leaves(defaults):
    key = ".".join(path)
    env = "OMNID_" + "_".join(path).upper()
    n += 1
    if key not in rows:
        errors.append(f"docs/operations.md: no table row for `{key}`")
        continue
    if rows[key][0] != env:
        errors.append(f"docs/operations.md: `{key}` should name {env}")
    cell = rows[key][1]
    if key == "workers":
        if "CPU" not in cell:
            errors.append("docs/operations.md: the workers default is the number of CPUs")
    elif f"`{toml_value(value)}`" not in cell:
        errors.append(f"docs/operations.md: `{key}` default should be `{toml_value(value)}`, row says {cell}")
known = {".".join(p) for p, _ in leaves(defaults)}
for key in rows:
    if key not in known:
        errors.append(f"docs/operations.md: `{key}` is not a configuration key")

# Every metric family the binary exposes, and every restart reason.
families = sorted(set(re.findall(r"^# TYPE (\S+) ", open(sys.argv[2]).read(), re.M)))
assert families, "no metric families in the /metrics sample"
for f in families:
    if f"`{f}`" not in run:
        errors.append(f"docs/runbook.md: metric `{f}` is not described")
for r in ("timeout", "cpu_limit", "memory_limit", "seccomp_violation", "crash", "recycled"):
    if not re.search(rf"^#+ .*`{r}`", run, re.M):
        errors.append(f"docs/runbook.md: no section for the restart reason `{r}`")
for word in ("SIGHUP", "rollback", "systemctl reload omnid", "systemctl stop omnid"):
    if word not in run:
        errors.append(f"docs/runbook.md: does not mention {word}")
if errors:
    sys.exit("\n".join(errors))
print(f"docs: {n} configuration keys and {len(families)} metric families documented")
EOF
}
run_check docs check_docs

finish
