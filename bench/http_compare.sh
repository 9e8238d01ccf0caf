#!/bin/bash
# HttpServer side by side with gevent.pywsgi and raw Deno.serve: runs the shared anchor
# (../shared/anchors/http/run.sh: wrk -t1 -c100 on /hello and /sleep/10 against each server in
# turn) with bench/http_server.ts as the library's server, then prints the ratios.
#
#     bench/http_compare.sh [--log] [--timeout=MS] [--spawn=N] [--json]
#
# Options go to bench/http_server.ts (access log on, a per-request deadline, a spawn limit).
# --json prints one JSON object instead (what bench/report.ts reads; wrk's lines go to stderr):
# {"results":[{"server","route","rps","p99Ms"}...]}. WRK_S=SECONDS shortens each wrk run.
# Needs wrk and gevent: apt-get install -y wrk python3-gevent.
set -u
here=$(cd "$(dirname "$0")" && pwd)
anchor=${ANCHOR:-$(dirname "$(dirname "$here")")/shared/anchors/http/run.sh}
json=0
args=()
for a in "$@"; do if [ "$a" = --json ]; then json=1; else args+=("$a"); fi; done
out=$("$anchor" npx -y deno@2.9.6 run --allow-net "$here/http_server.ts" ${args[@]+"${args[@]}"})
ms='
  function ms(v) {
    if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000;
    if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0;
    if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000;
    return v + 0;
  }'
if [ "$json" = 1 ]; then
  echo "$out" >&2
  awk "$ms"'
    BEGIN { printf "{\"results\":[" }
    NF >= 4 {
      split($3, r, "="); split($4, p, "=");
      if (r[2] == "") r[2] = "null";
      printf "%s{\"server\":\"%s\",\"route\":\"%s\",\"rps\":%s,\"p99Ms\":%s}",
        (n++ ? "," : ""), $1, $2, r[2], (p[2] == "" ? "null" : ms(p[2]));
    }
    END { print "]}" }' <<<"$out"
  exit 0
fi
echo "$out"
echo
awk "$ms"'
  {
    split($3, r, "="); split($4, p, "=");
    rps[$1, $2] = r[2]; p99[$1, $2] = ms(p[2]); routes[$2] = 1;
  }
  END {
    print "| route | HttpServer / raw Deno.serve rps | p99 HttpServer / raw | HttpServer / gevent rps |";
    print "| --- | --- | --- | --- |";
    for (route in routes) {
      if (rps["deno-raw", route] == 0 || rps["lib", route] == "") continue;
      printf "| %s | %.2fx | %.2fx | %.1fx |\n", route, rps["lib", route] / rps["deno-raw", route],
        p99["lib", route] / p99["deno-raw", route], rps["lib", route] / rps["gevent", route];
    }
  }' <<<"$out"
