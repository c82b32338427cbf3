#!/bin/bash
# Runs inside the systemd-nspawn container that packaging/check.sh boots from
# a throwaway overlay root with the omnid package installed (as root, from
# omnid-boot-test.service, After=omnid.service). Writes `ok NAME` or
# `FAIL NAME` lines to /root/boot-results.txt, details to
# /root/boot-test.log; the unit powers the container off when it ends.
set -u
OUT=/root/boot-results.txt
LOG=/root/boot-test.log
: > "$OUT"
: > "$LOG"
URL=http://127.0.0.1:8080
TOKEN=$(cat /root/token)

t() {
  local name=$1
  shift
  echo "--- $name" >> "$LOG"
  # A subshell with errexit, outside any `if`: every command must succeed.
  (set -e; "$@") >> "$LOG" 2>&1
  if [ $? -eq 0 ]; then
    echo "ok $name" >> "$OUT"
  else
    echo "FAIL $name" >> "$OUT"
    systemctl status omnid --no-pager >> "$LOG" 2>&1
    journalctl -u omnid --no-pager -n 30 >> "$LOG" 2>&1
  fi
}
prop() { systemctl show omnid -p "$1" --value; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
validate() {
  code -H 'Content-Type: application/json' "$@" -d '{"code":"x","context":{}}' "$URL/api/validate"
}
main_pid() { prop MainPID; }
status_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | awk '{print $1}'; }
wait_ready() {
  local i
  for i in $(seq 1 100); do
    [ "$(code "$URL/api/readiness")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

started() {
  [ "$(prop ActiveState)/$(prop SubState)" = active/running ]
  # READY=1 came with STATUS= (Type=notify reached "running" through it).
  prop StatusText | grep -q '^listening on '
  [ "$(prop Type)" = notify ]
  [ "$(prop WatchdogUSec)" = 30s ]
}

dynamic_user() {
  local pid uid
  pid=$(main_pid)
  uid=$(status_field "$pid" Uid)
  echo "main pid $pid uid $uid user $(prop User)"
  [ "$uid" -ne 0 ]
  [ "$(prop DynamicUser)" = yes ]
  [ "$(status_field "$pid" NoNewPrivs)" = 1 ]
  [ "$(status_field "$pid" CapEff)" = 0000000000000000 ]
  # The unit's own filter (SystemCallFilter=) is on the supervisor.
  [ "$(status_field "$pid" Seccomp)" = 2 ]
  # The tokens copy made by ExecStartPre=+ belongs to the service user only.
  [ "$(stat -c '%u %a' /run/omnid/tokens)" = "$uid 400" ]
  # The state directory (the SQLite policy store) is the service user's own.
  [ "$(prop StateDirectory)" = omnid ]
  [ "$(stat -L -c '%u %a' /var/lib/omnid)" = "$uid 700" ]
  journalctl -u omnid --no-pager | grep -q "sandbox: seccomp on, no_new_privs on, uid $uid gid"
}

http() {
  [ "$(code "$URL/api/health")" = 200 ]
  [ "$(code "$URL/api/readiness")" = 200 ]
  [ "$(validate)" = 401 ]
  [ "$(validate -H "Authorization: Bearer $TOKEN")" = 200 ]
}

# A policy stored through the API lands in the StateDirectory's SQLite file
# (owned by the dynamic user) and is evaluated by name.
POLICY='INTENT: t\nACTOR:\n- Primary: a\nCONTEXT:\n- Domain: d\nRULE:\n- IF Battery < 20%% THEN ReturnToHome\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n'
stored_policy() {
  [ "$(code -H "Authorization: Bearer $TOKEN" "$URL/api/v1/policies/boot")" = 200 ]
  curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"context":{"Battery":15}}' "$URL/api/v1/policies/boot/evaluate" | grep -q '"ReturnToHome"'
}
store() {
  local uid
  printf "$POLICY" > /root/boot.omni
  [ "$(code -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: text/plain' \
        --data-binary @/root/boot.omni "$URL/api/v1/policies/boot")" = 201 ]
  uid=$(status_field "$(main_pid)" Uid)
  [ "$(stat -c '%u' /var/lib/private/omnid/policies.db)" = "$uid" ]
  stored_policy
}

workers() {
  local pid uid w n=0 main_filters
  pid=$(main_pid)
  uid=$(status_field "$pid" Uid)
  main_filters=$(status_field "$pid" Seccomp_filters)
  for w in $(pgrep -P "$pid"); do
    echo "worker $w: uid $(status_field "$w" Uid) filters $(status_field "$w" Seccomp_filters) oom $(cat "/proc/$w/oom_score_adj")"
    [ "$(status_field "$w" Uid)" = "$uid" ]
    [ "$(status_field "$w" NoNewPrivs)" = 1 ]
    # Their own filter, stacked on the unit's.
    [ "$(status_field "$w" Seccomp_filters)" -gt "$main_filters" ]
    [ "$(cat "/proc/$w/oom_score_adj")" = 1000 ]
    n=$((n + 1))
  done
  [ "$n" -ge 1 ]
}

worker_killed() {
  local pid w
  pid=$(main_pid)
  w=$(pgrep -P "$pid" | head -n 1)
  kill -KILL "$w"
  sleep 0.5
  wait_ready
  [ "$(prop ActiveState)" = active ]
  [ "$(main_pid)" = "$pid" ]
  [ "$(prop NRestarts)" = 0 ]
  curl -s --max-time 5 "$URL/metrics" | grep -E '^omnid_worker_restarts_total\{reason="crash"\} [1-9]'
}

reload_tokens() {
  # A token added to /etc/omnid/tokens works after `systemctl reload`.
  local pid token2=reload-$RANDOM$RANDOM-0123456789abcdef0123456789abcdef
  pid=$(main_pid)
  [ "$(validate -H "Authorization: Bearer $token2")" = 401 ]
  printf '%s' "$token2" | omnid --hash-token beta >> /etc/omnid/tokens
  systemctl reload omnid
  sleep 1
  wait_ready
  [ "$(validate -H "Authorization: Bearer $token2")" = 200 ]
  [ "$(main_pid)" = "$pid" ]
  journalctl -u omnid --no-pager | grep -q 'configuration reloaded'
}

https_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$@"; }
served_serial() {
  openssl s_client -connect 127.0.0.1:8080 </dev/null 2>/dev/null | openssl x509 -noout -serial
}
self_signed() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$2/key.pem" -out "$2/cert.pem" 2>/dev/null
  chmod 0600 "$2/key.pem"
}

tls_reload() {
  # TLS from /etc/omnid/tls/ (root-only), which the unit copies to
  # /run/omnid/tls/ for the service user; `systemctl reload` swaps in a new
  # certificate without a restart.
  local pid uid d=/etc/omnid/tls first i
  mkdir -p "$d" /root/tls-old
  self_signed omnid-boot-1 "$d"
  cp "$d/cert.pem" /root/tls-old/cert.pem
  mkdir -p /run/systemd/system/omnid.service.d
  printf '[Service]\nEnvironment=OMNID_TLS_CERT_FILE=/run/omnid/tls/cert.pem OMNID_TLS_KEY_FILE=/run/omnid/tls/key.pem\n' \
    > /run/systemd/system/omnid.service.d/tls.conf
  systemctl daemon-reload
  systemctl restart omnid
  for i in $(seq 1 100); do
    [ "$(https_code "$d/cert.pem" https://127.0.0.1:8080/api/readiness)" = 200 ] && break
    sleep 0.1
  done
  pid=$(main_pid)
  uid=$(status_field "$pid" Uid)
  [ "$(stat -c '%u %a' /run/omnid/tls/key.pem)" = "$uid 400" ]
  [ "$(https_code "$d/cert.pem" -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
        -d '{"code":"x","context":{}}' https://127.0.0.1:8080/api/validate)" = 200 ]
  # Plain HTTP to the TLS port: 400.
  [ "$(code "$URL/api/health")" = 400 ]
  first=$(served_serial)
  self_signed omnid-boot-2 "$d"
  systemctl reload omnid
  for i in $(seq 1 50); do
    journalctl -u omnid --no-pager | grep -q 'TLS material reloaded' && break
    sleep 0.1
  done
  journalctl -u omnid --no-pager | grep -q 'TLS material reloaded'
  [ "$(main_pid)" = "$pid" ]
  echo "served serial $first -> $(served_serial)"
  [ "$(served_serial)" != "$first" ]
  [ "$(https_code "$d/cert.pem" https://127.0.0.1:8080/api/health)" = 200 ]
  [ "$(https_code /root/tls-old/cert.pem https://127.0.0.1:8080/api/health)" = 000 ]
  rm -rf /run/systemd/system/omnid.service.d "$d" /root/tls-old
  systemctl daemon-reload
  systemctl restart omnid
  wait_ready
}

socket_activation() {
  # The example socket unit: systemd listens, omnid serves its socket.
  # omnid must let go of the address before systemd can listen on it.
  cp /usr/share/doc/omnid/examples/omnid.socket /etc/systemd/system/omnid.socket
  systemctl daemon-reload
  systemctl stop omnid
  systemctl enable --now omnid.socket
  systemctl start omnid
  wait_ready
  [ "$(systemctl show omnid.socket -p ActiveState --value)" = active ]
  journalctl -u omnid --no-pager | grep -q 'socket activation: serving the sockets systemd passed'
  [ "$(validate -H "Authorization: Bearer $TOKEN")" = 200 ]
  systemctl disable --now omnid.socket
  rm /etc/systemd/system/omnid.socket
  systemctl daemon-reload
  systemctl restart omnid
  wait_ready
}

watchdog() {
  # With a 2 s watchdog the service survives only if omnid keeps sending
  # WATCHDOG=1 (every second); each ping moves WatchdogTimestamp.
  mkdir -p /run/systemd/system/omnid.service.d
  printf '[Service]\nWatchdogSec=2s\n' > /run/systemd/system/omnid.service.d/watchdog.conf
  systemctl daemon-reload
  systemctl restart omnid
  local pid t1 t2
  pid=$(main_pid)
  t1=$(prop WatchdogTimestampMonotonic)
  sleep 5
  t2=$(prop WatchdogTimestampMonotonic)
  echo "watchdog timestamps $t1 -> $t2"
  [ "$(prop ActiveState)" = active ]
  [ "$(main_pid)" = "$pid" ]
  [ "$(prop NRestarts)" = 0 ]
  [ "$t2" -gt "$t1" ]
  rm -rf /run/systemd/system/omnid.service.d
  systemctl daemon-reload
  systemctl restart omnid
  [ "$(prop WatchdogUSec)" = 30s ]
  wait_ready
}

upgrade() {
  # Reinstalling runs the upgrade path: prerm stops the service, postinst
  # starts it again; the tokens added so far are kept.
  local pid
  pid=$(main_pid)
  dpkg -i /root/omnid.deb
  [ "$(prop ActiveState)" = active ]
  [ "$(main_pid)" != "$pid" ]
  wait_ready
  [ "$(validate -H "Authorization: Bearer $TOKEN")" = 200 ]
  # Stored policies survive the upgrade (a new dynamic uid included).
  stored_policy
}

stop() {
  local t0 t1
  t0=$(date +%s)
  systemctl stop omnid
  t1=$(date +%s)
  [ "$(prop ActiveState)" = inactive ]
  [ "$(prop Result)" = success ]
  [ "$(prop ExecMainStatus)" = 0 ]
  [ $((t1 - t0)) -lt 10 ]
  journalctl -u omnid --no-pager | grep -q '"message":"stopped","exit_code":0'
  systemctl start omnid
  wait_ready
}

remove() {
  dpkg -r omnid
  [ "$(prop ActiveState)" = inactive ]
  [ ! -e /usr/bin/omnid ]
  [ -e /etc/omnid/omnid.toml ]
  ! curl -s --max-time 2 "$URL/api/health"
}

purge() {
  [ -d /var/lib/private/omnid ]
  dpkg -P omnid
  [ ! -e /etc/omnid ]
  [ ! -e /var/lib/omnid ] && [ ! -e /var/lib/private/omnid ]
  [ "$(systemctl show omnid -p LoadState --value)" = not-found ]
  [ ! -e /etc/systemd/system/multi-user.target.wants/omnid.service ]
}

t started started
t dynamic-user dynamic_user
t http http
t store store
t workers workers
t worker-killed worker_killed
t reload-tokens reload_tokens
t tls-reload tls_reload
t socket-activation socket_activation
t watchdog watchdog
t upgrade upgrade
t stop stop
t remove remove
t purge purge
echo "ok done" >> "$OUT"
exit 0
