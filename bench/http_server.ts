// The HTTP benchmark server for ../shared/anchors/http/run.sh: the same routes as its raw
// Deno.serve anchor (deno_raw.ts), served by HttpServer with a greenlet per request.
// Usage: deno run --allow-net bench/http_server.ts [--log] [--timeout=MS] [--spawn=N] PORT
//   /hello     -> "hello world"
//   /sleep/MS  -> sleeps MS milliseconds (the library's sleep, a blocking call), then the same
// The access log is off unless --log is given (gevent's anchor runs with log=None).
import { HttpServer } from "../http.ts";
import { sleep } from "../hub.ts";

const args = Deno.args;
const port = Number(args[args.length - 1]);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const timeout = flag("timeout") === undefined ? undefined : Number(flag("timeout"));
const spawn = flag("spawn") === undefined ? undefined : Number(flag("spawn"));

const server = new HttpServer(["127.0.0.1", port], async (req) => {
  const path = new URL(req.url).pathname;
  if (path.startsWith("/sleep/")) await sleep(Number(path.slice(7)));
  return new Response("hello world", { headers: { "content-type": "text/plain" } });
}, { log: args.includes("--log") ? undefined : null, timeout, spawn });
await server.serveForever();
