#!/bin/bash
# Scale-out past one process: two HttpServer processes (bench/http_server.ts) behind nginx,
# configured by examples/deploy/nginx.conf, all on loopback. Runs wrk through nginx, and
# straight at one backend for comparison, on /hello and /sleep/10.
#
#     bench/http_nginx.sh        (needs nginx and wrk: apt-get install -y nginx-light wrk)
#
# On a 2-core machine wrk, nginx and both backends share the cores: the figures show that the
# setup works and what the proxy hop costs, not how far it scales.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
D=(npx -y deno@2.9.6)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
front=${FRONT_PORT:-18280}
back1=$((front + 1))
back2=$((front + 2))
tmp=$(mktemp -d)
pids=()

cleanup() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done
  echo "nothing listens on port $1" >&2
  return 1
}

bench() { # label url-base
  for route in /hello /sleep/10; do
    out=$(wrk -t1 -c100 -d"${WRK_S:-5}"s --latency "$2$route" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
    echo "$1 $route rps=$rps p99=$p99${non2xx:+ non-2xx=$non2xx}"
  done
}

for port in "$back1" "$back2"; do
  setsid "${D[@]}" run --allow-net "$here/http_server.ts" "$port" >/dev/null 2>&1 &
  pids+=($!)
done
sed -e "s/127\.0\.0\.1:8001/127.0.0.1:$back1/; s/127\.0\.0\.1:8002/127.0.0.1:$back2/" \
  -e "s/listen 8080/listen 127.0.0.1:$front/" \
  "$root/examples/deploy/nginx.conf" >"$tmp/nginx.conf"
wait_port "$back1" && wait_port "$back2" || exit 1
"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" \
  -g "pid $tmp/nginx.pid; daemon on;" || exit 1
wait_port "$front" || exit 1

curl -s "http://127.0.0.1:$front/hello" >/dev/null || { echo "nginx does not answer" >&2; exit 1; }
bench "nginx->2 backends" "http://127.0.0.1:$front"
bench "1 backend direct " "http://127.0.0.1:$back1"
