/**
 * Resolver benchmarks: cached `gethostbyname` lookups per second, and 1,000 concurrent
 * lookups against a loopback DNS server with latency, each beside its raw baseline.
 *
 * ```sh
 * deno bench -A bench/resolver_bench.ts            # Deno.bench groups with baselines
 * deno run -A bench/resolver_bench.ts [--latency=50] # the figures of issue 3, as a table
 * ```
 *
 * `--max-concurrent=N` sets the resolver's `maxConcurrent` (default 256);
 * `--recv-buffer-size=N` is passed to the server process (see `DnsServerOptions`).
 *
 * Targets (issue 3): cached lookups >= 1,000,000/s; 1,000 concurrent lookups complete with
 * no error in about the server's latency. The loopback server (`tests/_dns_server.ts`, on
 * `node:dgram`) and `Deno.resolveDns` itself bound the second figure: the raw baseline runs
 * the same 1,000 queries with `Promise.all` and no greenlets.
 *
 * @module
 */

import { getHub } from "../hub.ts";
import { joinAll, spawn } from "../greenlet.ts";
import { Resolver } from "../resolver.ts";
import * as socket from "../socket.ts";
import { startDnsServer } from "../tests/_dns_server.ts";
import { _deno } from "../_platform.ts";

const NAMES = ["www.google.com", "www.example.com", "www.python.org"];
const RECORDS = {
  "www.google.com": { A: ["74.125.79.106"] },
  "www.example.com": { A: ["208.77.188.166"] },
  "www.python.org": { A: ["82.94.164.162"] },
};
const CACHED_OPS = 100_000;

function option(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

/** Cached lookups through `resolver.gethostbyname` (or `socket.gethostbyname`). */
async function cachedLookups(
  ops: number,
  viaSocket: boolean,
  b?: Deno.BenchContext,
): Promise<number> {
  await using server = await startDnsServer({ records: RECORDS });
  const resolver = new Resolver({ nameservers: [server.nameserver], cache: true });
  const hub = getHub();
  const saved = hub.resolver;
  hub.resolver = resolver;
  try {
    for (const name of NAMES) await resolver.gethostbyname(name); // fill the cache
    const lookup = viaSocket ? socket.gethostbyname : (h: string) => resolver.gethostbyname(h);
    b?.start();
    const t0 = performance.now();
    for (let i = 0; i < ops; i++) await lookup(NAMES[i % 3]);
    const seconds = (performance.now() - t0) / 1000;
    b?.end();
    return ops / seconds;
  } finally {
    hub.resolver = saved;
    resolver.close();
  }
}

/** The raw baseline of a cached lookup: a Map hit and a resolved promise. */
async function mapLookups(ops: number): Promise<number> {
  const cache = new Map(NAMES.map((n, i) => [n, { expires: Infinity, value: [String(i)] }]));
  const lookup = (h: string): Promise<string> => {
    const hit = cache.get(h)!;
    return Promise.resolve(hit.expires > performance.now() ? hit.value[0] : "");
  };
  const t0 = performance.now();
  for (let i = 0; i < ops; i++) await lookup(NAMES[i % 3]);
  return ops / ((performance.now() - t0) / 1000);
}

interface Burst {
  ms: number;
  errors: number;
}

interface ServerProcess {
  nameserver: { ipAddr: string; port: number };
  close(): Promise<void>;
}

/**
 * Starts the loopback DNS server (answering `hostN.test`) in a process of its own, so that
 * the 1,000 lookups of this process do not slow its event loop down.
 */
async function startServerProcess(latency: number): Promise<ServerProcess> {
  const script = new URL("../tests/_dns_server.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      script,
      "--synthetic",
      `--latency=${latency}`,
      ...Deno.args.filter((a) => a.startsWith("--recv-buffer-size=")),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  const { port } = JSON.parse(value!);
  return {
    nameserver: { ipAddr: "127.0.0.1", port },
    async close(): Promise<void> {
      await child.stdin.close();
      while (!(await reader.read()).done) {
        // Drain until the child exits.
      }
      await child.status;
    },
  };
}

/** 1,000 concurrent lookups of distinct names, in greenlets, through the hub's resolver. */
async function libBurst(count: number, latency: number, b?: Deno.BenchContext): Promise<Burst> {
  const server = await startServerProcess(latency);
  const maxConcurrent = option("max-concurrent", 256);
  const resolver = new Resolver({ nameservers: [server.nameserver], maxConcurrent });
  const hub = getHub();
  const saved = hub.resolver;
  hub.resolver = resolver;
  try {
    b?.start();
    const t0 = performance.now();
    const jobs = Array.from(
      { length: count },
      (_, i) => spawn(socket.gethostbyname, `host${i}.test`),
    );
    await joinAll(jobs);
    const ms = performance.now() - t0;
    b?.end();
    return { ms, errors: jobs.filter((j) => !j.successful()).length };
  } finally {
    hub.resolver = saved;
    resolver.close();
    await server.close();
  }
}

/** The raw baseline: the same queries with `Deno.resolveDns` and `Promise.allSettled`. */
async function rawBurst(count: number, latency: number, b?: Deno.BenchContext): Promise<Burst> {
  const server = await startServerProcess(latency);
  try {
    b?.start();
    const t0 = performance.now();
    const results = await Promise.allSettled(
      Array.from(
        { length: count },
        (_, i) => _deno.resolveDns(`host${i}.test`, "A", { nameServer: server.nameserver }),
      ),
    );
    const ms = performance.now() - t0;
    b?.end();
    return { ms, errors: results.filter((r) => r.status === "rejected").length };
  } finally {
    await server.close();
  }
}

Deno.bench({
  name: "Map hit + resolved promise (x100,000)",
  group: "cached gethostbyname",
  baseline: true,
  n: 5,
  warmup: 1,
  async fn() {
    await mapLookups(CACHED_OPS);
  },
});

Deno.bench({
  name: "Resolver.gethostbyname, cached (x100,000)",
  group: "cached gethostbyname",
  n: 5,
  warmup: 1,
  async fn(b) {
    await cachedLookups(CACHED_OPS, false, b);
  },
});

Deno.bench({
  name: "socket.gethostbyname, cached (x100,000)",
  group: "cached gethostbyname",
  n: 5,
  warmup: 1,
  async fn(b) {
    await cachedLookups(CACHED_OPS, true, b);
  },
});

Deno.bench({
  name: "Deno.resolveDns x1,000, Promise.allSettled",
  group: "1,000 concurrent lookups, 50 ms latency",
  baseline: true,
  n: 2,
  warmup: 1,
  async fn(b) {
    await rawBurst(1000, 50, b);
  },
});

Deno.bench({
  name: "socket.gethostbyname x1,000 greenlets, joinAll",
  group: "1,000 concurrent lookups, 50 ms latency",
  n: 2,
  warmup: 1,
  async fn(b) {
    await libBurst(1000, 50, b);
  },
});

async function main(): Promise<void> {
  const latency = option("latency", 50);
  const ops = option("ops", 1_000_000);
  await cachedLookups(ops / 10, false); // warm-up
  const direct = await cachedLookups(ops, false);
  const viaSocket = await cachedLookups(ops, true);
  const map = await mapLookups(ops);
  await rawBurst(100, 0); // warm-up
  await libBurst(100, 0);
  const raw = await rawBurst(1000, latency);
  const lib = await libBurst(1000, latency);
  const f = (x: number): string => Math.round(x).toLocaleString("en-US");
  console.log(`| resolver workload | @x/gevent | raw baseline | ratio |`);
  console.log(`| --- | --- | --- | --- |`);
  console.log(
    `| cached gethostbyname, lookups/s | ${f(direct)} (Resolver), ${f(viaSocket)} (socket) | ` +
      `${f(map)} (Map hit + resolved promise) | ${(direct / map).toFixed(2)} |`,
  );
  console.log(
    `| 1,000 concurrent lookups, ${latency} ms latency | ${f(lib.ms)} ms, ${lib.errors} errors | ` +
      `${f(raw.ms)} ms, ${raw.errors} errors (Deno.resolveDns + Promise.allSettled) | ` +
      `${(lib.ms / raw.ms).toFixed(2)} |`,
  );
  console.log();
  console.log(
    `cached lookups >= 1,000,000/s: ${direct >= 1e6 ? "met" : "MISSED"} (${f(direct)}/s)`,
  );
  console.log(
    `1,000 concurrent lookups without error: ${lib.errors === 0 ? "met" : "MISSED"}; ` +
      `${f(lib.ms)} ms for a server latency of ${latency} ms`,
  );
}

if (import.meta.main && !Deno.args.includes("--no-main")) await main();
