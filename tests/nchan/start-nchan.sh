#!/bin/bash
# Start a PRIVATE nginx + nchan (reference implementation for iomux's
# nchan-compatible protocol) on 127.0.0.1. Never touches the system nginx
# (its config, pid file, logs or service).
#
# Needs (Debian, as root):  apt-get update && apt-get install -y nginx-light libnginx-mod-nchan
#
# Usage: start-nchan.sh PREFIX_DIR [PORT] [SUB_TIMEOUT] [PING_INTERVAL]
#   PREFIX_DIR     private working dir (created; holds nginx.conf, nginx.pid, logs/, tmp/)
#   PORT           default 18080
#   SUB_TIMEOUT    nchan_subscriber_timeout, default 2s (0 = hold forever)
#   PING_INTERVAL  nchan_eventsource_ping_interval, default 1s (0 = no pings)
#   env BUFFER_LENGTH (default 10), MESSAGE_TIMEOUT (default 1h)
#
# nginx runs in the foreground mode (daemon off) in the background of this
# script; the script prints "PID <n>" (the nginx master pid, also written to
# PREFIX_DIR/nginx.pid) once the port accepts connections, then exits.
# Stop:  kill "$(cat PREFIX_DIR/nginx.pid)"     (graceful: kill -QUIT; the
#        worker exits with the master). Never use pkill/killall.
set -euo pipefail

prefix="${1:?usage: start-nchan.sh PREFIX_DIR [PORT] [SUB_TIMEOUT] [PING_INTERVAL]}"
port="${2:-18080}"
sub_timeout="${3:-2s}"
ping_interval="${4:-1s}"
buffer_length="${BUFFER_LENGTH:-10}"
message_timeout="${MESSAGE_TIMEOUT:-1h}"
here="$(cd "$(dirname "$0")" && pwd)"

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || {
    echo "nginx not installed: apt-get install -y nginx-light libnginx-mod-nchan" >&2; exit 1; }
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"

# Locate the nchan module: nginx's compiled-in modules path, then the Debian
# modules-available snippet, then a few usual places.
module=""
moddir="$("$NGINX" -V 2>&1 | sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p')"
for cand in "${moddir:+$moddir/ngx_nchan_module.so}" \
            /usr/lib/nginx/modules/ngx_nchan_module.so \
            /usr/lib64/nginx/modules/ngx_nchan_module.so \
            /usr/share/nginx/modules/ngx_nchan_module.so; do
    [ -n "$cand" ] && [ -f "$cand" ] && { module="$cand"; break; }
done
if [ -z "$module" ] && [ -f /usr/share/nginx/modules-available/mod-nchan.conf ]; then
    rel="$(sed -n 's/^[[:space:]]*load_module[[:space:]]\+\([^;]*\);.*/\1/p' /usr/share/nginx/modules-available/mod-nchan.conf)"
    case "$rel" in /*) module="$rel";; *) module="/usr/share/nginx/$rel";; esac
    [ -f "$module" ] || module=""
fi
[ -n "$module" ] || { echo "ngx_nchan_module.so not found (apt-get install -y libnginx-mod-nchan)" >&2; exit 1; }

mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
mkdir -p "$prefix/logs" "$prefix/tmp"

if [ -f "$prefix/nginx.pid" ] && kill -0 "$(cat "$prefix/nginx.pid")" 2>/dev/null; then
    echo "an nginx from this prefix is already running: PID $(cat "$prefix/nginx.pid")" >&2; exit 1
fi
rm -f "$prefix/nginx.pid"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "127.0.0.1:$port is already in use by another process" >&2; exit 1
fi

sed -e "s#@MODULE@#$module#g" -e "s#@PREFIX@#$prefix#g" -e "s#@PORT@#$port#g" \
    -e "s#@SUB_TIMEOUT@#$sub_timeout#g" -e "s#@PING_INTERVAL@#$ping_interval#g" \
    -e "s#@BUFFER_LENGTH@#$buffer_length#g" -e "s#@MESSAGE_TIMEOUT@#$message_timeout#g" \
    "$here/nginx.conf" > "$prefix/nginx.conf"

"$NGINX" -t -q -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
    -g 'daemon off;' || { echo "config test failed; see $prefix/logs/error.log" >&2; exit 1; }

# daemon off: $! is the nginx master itself. setsid: not killed with our shell.
setsid "$NGINX" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
    -g 'daemon off;' </dev/null >>"$prefix/logs/stdout.log" 2>&1 &
pid=$!
echo "$pid" > "$prefix/master.pid"

for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "nginx exited during startup; see $prefix/logs/error.log:" >&2
        tail -n 20 "$prefix/logs/error.log" >&2 || true
        exit 1
    fi
    # nginx writes its pid file only after binding the listen socket
    if [ "$(cat "$prefix/nginx.pid" 2>/dev/null)" = "$pid" ] &&
       (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "PID $pid"
        echo "nchan listening on http://127.0.0.1:$port/ (prefix $prefix); stop: kill $pid"
        exit 0
    fi
    sleep 0.1
done
echo "port $port did not answer within 10 s; stopping PID $pid" >&2
kill "$pid" 2>/dev/null || true
exit 1
