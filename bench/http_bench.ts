// The per-request cost of a greenlet per request, in process (no sockets): a handler called
// as Deno.serve calls it, raw and wrapped by httpHandler(). The difference is what HttpServer
// adds to every request; bench/http_compare.sh measures the same over real HTTP.
//
//     deno bench bench/http_bench.ts
import { httpHandler } from "../http.ts";

const request = new Request("http://127.0.0.1/hello");
const info = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
  completed: Promise.resolve(),
} as Deno.ServeHandlerInfo;
const hello = () => new Response("hello world", { headers: { "content-type": "text/plain" } });
const asyncHello = async () => await Promise.resolve(hello());

const wrappedAsync = httpHandler(asyncHello, { log: null });
const wrappedSync = httpHandler(hello, { log: null });
const wrappedDeadline = httpHandler(asyncHello, { log: null, timeout: 30_000 });

Deno.bench("raw async handler", { group: "async", baseline: true }, async () => {
  await asyncHello();
});
Deno.bench("httpHandler(async handler)", { group: "async" }, async () => {
  await wrappedAsync(request, info);
});
Deno.bench("httpHandler(async handler), timeout", { group: "async" }, async () => {
  await wrappedDeadline(request, info);
});

Deno.bench("raw sync handler", { group: "sync", baseline: true }, () => {
  hello();
});
Deno.bench("httpHandler(sync handler)", { group: "sync" }, () => {
  wrappedSync(request, info);
});

globalThis.addEventListener("unload", () => {
  for (const h of [wrappedAsync, wrappedSync, wrappedDeadline]) h.stop();
});
