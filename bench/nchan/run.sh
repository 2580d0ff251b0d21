#!/bin/sh
# Start nginx + nchan in the FOREGROUND (daemon off: this process becomes the nginx master,
# with 1 worker) on 127.0.0.1:PORT, with a private prefix directory. Adapted from the shared
# bench harness (peers/nchan/run.sh) and tests/nchan/start-nchan.sh.
#
# Usage: run.sh PORT PREFIX_DIR
#        run.sh --check        exit 0 if nginx and the nchan module are installed
#
# Needs (Debian): apt-get install -y nginx-light libnginx-mod-nchan
# Stop: kill the PID of this process (the master; the worker exits with it).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"

NGINX="$(command -v nginx 2>/dev/null || true)"
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || true
[ -n "$NGINX" ] || { echo "nginx not installed (apt-get install -y nginx-light libnginx-mod-nchan)" >&2; exit 3; }

# The nchan module: nginx's compiled-in modules path, then the Debian modules-available
# snippet, then the usual places.
module=""
moddir="$("$NGINX" -V 2>&1 | sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p')"
for cand in "${moddir:+$moddir/ngx_nchan_module.so}" \
            /usr/lib/nginx/modules/ngx_nchan_module.so \
            /usr/lib64/nginx/modules/ngx_nchan_module.so \
            /usr/share/nginx/modules/ngx_nchan_module.so; do
    if [ -n "$cand" ] && [ -f "$cand" ]; then module="$cand"; break; fi
done
if [ -z "$module" ] && [ -f /usr/share/nginx/modules-available/mod-nchan.conf ]; then
    rel="$(sed -n 's/^[[:space:]]*load_module[[:space:]]\{1,\}\([^;]*\);.*/\1/p' /usr/share/nginx/modules-available/mod-nchan.conf)"
    case "$rel" in /*) module="$rel";; *) module="/usr/share/nginx/$rel";; esac
    [ -f "$module" ] || module=""
fi
[ -n "$module" ] || { echo "ngx_nchan_module.so not found (apt-get install -y libnginx-mod-nchan)" >&2; exit 3; }

if [ "${1:-}" = "--check" ]; then
    echo "$NGINX $module"
    exit 0
fi

port="${1:?usage: run.sh PORT PREFIX_DIR}"
prefix="${2:?usage: run.sh PORT PREFIX_DIR}"
mkdir -p "$prefix/logs" "$prefix/tmp"
prefix="$(cd "$prefix" && pwd)"
sed -e "s#@MODULE@#$module#g" -e "s#@PREFIX@#$prefix#g" -e "s#@PORT@#$port#g" \
    "$here/nginx.conf" > "$prefix/nginx.conf"
exec "$NGINX" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" -g 'daemon off;'
