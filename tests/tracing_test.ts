import "./_deadline.ts";
import assert from "node:assert/strict";
import { type OtlpSpan, SpanKind, startCollector } from "./_otlp_collector.ts";

// Greenlets carry the OpenTelemetry context of the code that spawned them (issue 11). A child
// Deno runs with its built-in telemetry exporting to a collector on loopback; its request
// handlers hand an outgoing `fetch` to a greenlet, started in each of the ways the library
// offers, and the spans must chain: request span -> fetch span -> the fetched server's span.

const MOD = new URL("../mod.ts", import.meta.url).href;

// Every front path answers with what its greenlet fetched from the target: `/from-<case>`.
const CASES = [
  "direct",
  "spawn",
  "greenlet",
  "later",
  "pool",
  "group",
  "nested",
  "http",
  "http-direct",
];

const CHILD = `
import { getHub, Greenlet, Group, HttpServer, monkey, Pool, spawn, spawnLater } from ${
  JSON.stringify(MOD)
};

const unpatched = globalThis.fetch;
if (Deno.args.includes("--patch-all")) monkey.patchAll(); // fetch goes through the library
console.log("fetch patched:", globalThis.fetch !== unpatched);

const quiet = { hostname: "127.0.0.1", port: 0, onListen() {} };
const target = Deno.serve(quiet, (req) => new Response(new URL(req.url).pathname));
const call = async (path: string) =>
  (await fetch("http://127.0.0.1:" + target.addr.port + path)).text();
const pool = new Pool(2);
const group = new Group();

const front = Deno.serve(quiet, async (req) => {
  const path = new URL(req.url).pathname;
  const to = "/from-" + path.slice(1);
  let text: string;
  switch (path) {
    case "/direct": text = await call(to); break; // no greenlet: the control
    case "/spawn": text = await spawn(call, to).result(); break;
    case "/greenlet": {
      // Created here, started from a hub callback, which runs outside every async context.
      const g = new Greenlet(call, to);
      getHub().loop.runCallback(() => g.start());
      text = await g.result();
      break;
    }
    case "/later": text = await spawnLater(1, call, to).result(); break;
    case "/pool": text = await (await pool.spawn(call, to)).result(); break;
    case "/group": text = await group.spawn(call, to).result(); break;
    case "/nested": text = await spawn(() => spawn(call, to).result()).result(); break;
    default: return new Response("no such case", { status: 404 });
  }
  return new Response(text);
});

// http.ts: each request runs in a greenlet of its own, which fetches itself (/http-direct)
// or spawns another greenlet for the fetch (/http).
const http = new HttpServer(["127.0.0.1", 0], async (req) => {
  const path = new URL(req.url).pathname;
  const to = "/from-" + path.slice(1);
  return new Response(path === "/http" ? await spawn(call, to).result() : await call(to));
}, { log: null });
http.start();

const ports: Record<string, number> = { http: http.address[1], "http-direct": http.address[1] };
for (const name of ${JSON.stringify(CASES)}) {
  const port = ports[name] ?? front.addr.port;
  const res = await fetch("http://127.0.0.1:" + port + "/" + name);
  console.log(name, res.status, await res.text());
}
await http.stop();
await front.shutdown();
await target.shutdown();
`;

interface ChildRun {
  stdout: string;
  stderr: string;
  code: number;
  spans: OtlpSpan[];
  posts: { path: string; contentType: string }[];
}

async function runTracedChild(
  protocol: "http/protobuf" | "http/json",
  args: string[] = [],
): Promise<ChildRun> {
  await using collector = startCollector();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", "--no-lock", CHILD, ...args],
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_SERVICE_NAME: "gevent-tracing-test",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.deepEqual(collector.errors, [], "the collector decoded every body");
  return {
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    code: out.code,
    spans: [...collector.spans],
    posts: [...collector.posts],
  };
}

function only(spans: OtlpSpan[], kind: number, path: string): OtlpSpan {
  const found = spans.filter((s) => s.kind === kind && s.attributes["url.path"] === path);
  assert.equal(
    found.length,
    1,
    `one ${kind === SpanKind.SERVER ? "server" : "client"} span for ${path}`,
  );
  return found[0];
}

function assertChained(run: ChildRun): void {
  assert.equal(run.code, 0, `the child failed:\n${run.stderr}`);
  for (const name of CASES) {
    assert.match(run.stdout, new RegExp(`^${name} 200 /from-${name}$`, "m"));
  }
  assert.ok(run.posts.some((p) => p.path === "/v1/traces"), "spans were exported");
  const ours = run.spans.filter((s) => s.resource["service.name"] === "gevent-tracing-test");
  assert.equal(ours.length, run.spans.length, "every span comes from the child");
  const broken: string[] = [];
  for (const name of CASES) {
    const request = only(ours, SpanKind.SERVER, `/${name}`);
    const call = only(ours, SpanKind.CLIENT, `/from-${name}`);
    const served = only(ours, SpanKind.SERVER, `/from-${name}`);
    assert.match(request.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(request.traceId, "0".repeat(32));
    // The target's span always hangs under the fetch (traceparent header): a decoding check.
    assert.equal(served.traceId, call.traceId, `${name}: traceparent reached the target`);
    assert.equal(served.parentSpanId, call.spanId, `${name}: traceparent reached the target`);
    if (call.traceId !== request.traceId || call.parentSpanId !== request.spanId) {
      broken.push(
        `${name}: fetch span ${call.traceId}/${call.spanId} has parent '${call.parentSpanId}', ` +
          `not the request span ${request.traceId}/${request.spanId}`,
      );
    }
  }
  assert.deepEqual(broken, [], "every fetch span is a child of its request's span");
}

Deno.test("a greenlet's fetch is a child span of the request that spawned it (http/protobuf)", async () => {
  const run = await runTracedChild("http/protobuf");
  assert.match(run.stdout, /^fetch patched: false$/m);
  assertChained(run);
});

Deno.test("a greenlet's fetch is a child span of the request that spawned it (http/json)", async () => {
  assertChained(await runTracedChild("http/json"));
});

Deno.test("a greenlet's fetch is a child span of its request's span after monkey.patchAll()", async () => {
  const run = await runTracedChild("http/protobuf", ["--patch-all"]);
  assert.match(run.stdout, /^fetch patched: true$/m);
  assertChained(run);
});
