/**
 * Side-by-side benchmark of the toolbox (queues, locks, pools), as issue 5 asks: the workloads
 * run on this library, on raw promises and on `p-map` in one process, and on gevent (its
 * `bench.py`, one process per workload); the script prints the figures, the ratios and the
 * targets.
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc bench/compare_toolbox.ts [workload...] [--rounds=N] [--no-gevent] [--json]
 * ```
 *
 * Each JavaScript workload first runs once at a tenth of its size (warm-up), then `--rounds`
 * times (default 3) with the implementations interleaved, a full collection before each run
 * when `gc()` is exposed; the table shows medians. gevent runs as
 * `/usr/bin/python3 <anchors>/gevent/bench.py NAME`, with `<anchors>` = `../shared/anchors`
 * beside the repository (`--anchors=DIR` overrides it). When gevent cannot be run (install it
 * with `apt-get install -y python3-gevent`), the script says so and uses the reference medians
 * of `<anchors>/gevent/results.json` instead.
 *
 * The workload functions are exported for `bench/queue_bench.ts` and `bench/pool_bench.ts`.
 *
 * @module
 */

import pMap from "p-map";
import { joinAll, Pool, Queue, Semaphore, spawn } from "../mod.ts";

declare const gc: (() => void) | undefined;

const ITEMS = 1_000_000;
const IMAP_ITEMS = 100_000;
const IMAP_POOL = 100;
const SEM_PAIRS = 5_000_000;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Workload check failed: ${what}`);
}

function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 10));
}

/** Seconds taken by `fn(n)`, after a settle and (if available) a full collection. */
async function seconds(n: number, fn: (n: number) => Promise<void>): Promise<number> {
  await settle();
  if (typeof gc === "function") {
    gc();
    gc();
  }
  const t0 = performance.now();
  await fn(n);
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------
// The workloads: the shape of gevent's bench.py.

/** A producer putting 0..n-1 and a consumer summing them, as bench.py's `_bench_queue`. */
export async function libQueue(maxsize: number | undefined, n: number): Promise<void> {
  const q = new Queue<number>(maxsize);
  const consumer = spawn(async () => {
    let s = 0;
    for (let i = 0; i < n; i++) s += await q.get();
    return s;
  });
  const producer = spawn(async () => {
    for (let i = 0; i < n; i++) await q.put(i);
  });
  await joinAll([producer, consumer], { raiseError: true });
  check(consumer.value === n * (n - 1) / 2, "the consumer got every item");
}

/** The least a bounded queue of one needs with bare promises: a slot and two resolvers. */
export async function rawBounded1(n: number): Promise<void> {
  let slot: number | undefined;
  let full = false;
  let notEmpty: PromiseWithResolvers<void> | undefined;
  let notFull: PromiseWithResolvers<void> | undefined;
  const put = async (x: number): Promise<void> => {
    while (full) await (notFull = Promise.withResolvers()).promise;
    slot = x;
    full = true;
    notEmpty?.resolve();
  };
  const get = async (): Promise<number> => {
    while (!full) await (notEmpty = Promise.withResolvers()).promise;
    const x = slot!;
    full = false;
    notFull?.resolve();
    return x;
  };
  let s = 0;
  const consumer = (async () => {
    for (let i = 0; i < n; i++) s += await get();
  })();
  const producer = (async () => {
    for (let i = 0; i < n; i++) await put(i);
  })();
  await Promise.all([producer, consumer]);
  check(s === n * (n - 1) / 2, "the consumer got every item");
}

const DONE: Promise<void> = Promise.resolve();

/**
 * The floor of the unbounded queue: bare promises doing the same awaits and nothing else, one
 * `await` of a settled promise per put and one of a fresh `Promise.resolve(item)` per get.
 */
export async function rawUnbounded(n: number): Promise<void> {
  let s = 0;
  const consumer = (async () => {
    for (let i = 0; i < n; i++) s += await Promise.resolve(i);
  })();
  const producer = (async () => {
    for (let i = 0; i < n; i++) await DONE;
  })();
  await Promise.all([producer, consumer]);
  check(s === n * (n - 1) / 2, "the consumer got every item");
}

const identity = (x: number): number => x;

export async function libImap(n: number): Promise<void> {
  const pool = new Pool(IMAP_POOL);
  let total = 0;
  let count = 0;
  for await (const r of pool.imap(identity, range(n))) {
    total += r;
    count++;
  }
  check(count === n && total === n * (n - 1) / 2, "imap yielded every result in order");
}

/** An ordered map with at most `IMAP_POOL` calls at once, in bare promises. */
export async function rawImap(n: number): Promise<void> {
  const results = new Array<number>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await identity(i);
    }
  };
  const workers = [];
  for (let w = 0; w < IMAP_POOL; w++) workers.push(worker());
  await Promise.all(workers);
  let total = 0;
  for (const r of results) total += r;
  check(total === n * (n - 1) / 2, "every call returned");
}

export async function pMapImap(n: number): Promise<void> {
  const results = await pMap(range(n), identity, { concurrency: IMAP_POOL });
  let total = 0;
  for (const r of results) total += r;
  check(results.length === n && total === n * (n - 1) / 2, "p-map returned every result");
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export async function libSemaphore(n: number): Promise<void> {
  const sem = new Semaphore(1);
  const g = spawn(async () => {
    for (let i = 0; i < n; i++) {
      await sem.acquire();
      sem.release();
    }
  });
  await g.join();
  check(g.successful() && sem.counter === 1, "every acquire succeeded");
}

export async function rawSemaphore(n: number): Promise<void> {
  let counter = 1;
  const acquire = (): Promise<boolean> => {
    counter--;
    return Promise.resolve(true);
  };
  for (let i = 0; i < n; i++) {
    await acquire();
    counter++;
  }
  check(counter === 1, "every acquire succeeded");
}

interface Workload {
  name: string;
  title: string;
  n: number;
  gevent?: string;
  impls: Record<string, (n: number) => Promise<void>>;
  target: string;
  /** Whether the target holds, given the medians in seconds (and gevent's, if known). */
  met(m: Record<string, number>, gevent: number | undefined): boolean | undefined;
}

const WORKLOADS: Workload[] = [
  {
    name: "queue_bounded1",
    title: "Queue(1) producer/consumer, 1,000,000 items",
    n: ITEMS,
    gevent: "queue_bounded1",
    impls: { lib: (n) => libQueue(1, n), raw: rawBounded1 },
    target: ">=10x gevent",
    met: (m, g) => g === undefined ? undefined : g / m.lib >= 10,
  },
  {
    name: "queue_unbounded",
    title: "unbounded Queue, 1,000,000 items, one await put and one await get each " +
      "(raw: the same awaits without a queue)",
    n: ITEMS,
    gevent: "queue_unbounded",
    impls: { lib: (n) => libQueue(undefined, n), raw: rawUnbounded },
    target: ">=3x gevent",
    met: (m, g) => g === undefined ? undefined : g / m.lib >= 3,
  },
  {
    name: "pool_imap",
    title: "Pool(100).imap over 100,000 items (raw: 100 promise workers; p-map concurrency 100)",
    n: IMAP_ITEMS,
    gevent: "pool_imap",
    impls: { lib: libImap, raw: rawImap, "p-map": pMapImap },
    target: ">=10x gevent and faster than p-map",
    met: (m, g) => g === undefined ? undefined : g / m.lib >= 10 && m.lib < m["p-map"],
  },
  {
    name: "semaphore",
    title: "Semaphore acquire/release uncontended, 5,000,000 pairs",
    n: SEM_PAIRS,
    impls: { lib: libSemaphore, raw: rawSemaphore },
    target: ">=5,000,000 pairs/s",
    met: (m) => SEM_PAIRS / m.lib >= 5_000_000,
  },
];

// ---------------------------------------------------------------------------------------------
// gevent

const python = "/usr/bin/python3";
const decoder = new TextDecoder();

async function geventProblem(anchors: string): Promise<string | undefined> {
  try {
    await Deno.stat(`${anchors}/gevent/bench.py`);
  } catch {
    return `${anchors}/gevent/bench.py not found`;
  }
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import gevent"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!out.success) {
      return `${python} cannot import gevent (apt-get install -y python3-gevent installs it)`;
    }
  } catch (error) {
    return `${python} is not available (${(error as Error).message})`;
  }
  return undefined;
}

async function runGevent(anchors: string, name: string): Promise<number> {
  const out = await new Deno.Command(python, {
    args: [`${anchors}/gevent/bench.py`, name],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const last = decoder.decode(out.stdout).trim().split("\n").at(-1) ?? "";
  if (!out.success || !last.startsWith("{")) {
    throw new Error(`gevent ${name} failed: ${decoder.decode(out.stderr).trim().slice(-300)}`);
  }
  return Number(JSON.parse(last).seconds);
}

async function referenceFigures(anchors: string): Promise<Record<string, { median: number }>> {
  try {
    return JSON.parse(await Deno.readTextFile(`${anchors}/gevent/results.json`));
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Main

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function fmt(s: number | undefined): string {
  if (s === undefined) return "n/a";
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(3)} s`;
}

function ratio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return "n/a";
  return r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

async function main(args: string[]): Promise<void> {
  let rounds = 3;
  let useGevent = true;
  let json = false;
  let anchors = decodeURIComponent(new URL("../../shared/anchors", import.meta.url).pathname);
  const only: string[] = [];
  for (const arg of args) {
    if (arg.startsWith("--rounds=")) rounds = Number(arg.slice(9));
    else if (arg === "--no-gevent") useGevent = false;
    else if (arg === "--json") json = true;
    else if (arg.startsWith("--anchors=")) anchors = arg.slice(10);
    else if (WORKLOADS.some((w) => w.name === arg)) only.push(arg);
    else throw new TypeError(`Unknown workload or option: ${arg}`);
  }
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new RangeError(`'--rounds' must be a positive integer: current value is ${rounds}`);
  }
  const problem = useGevent ? await geventProblem(anchors) : "--no-gevent";
  const reference = await referenceFigures(anchors);
  if (problem !== undefined && !json) {
    console.log(`gevent not run: ${problem}; using the reference figures of results.json`);
  }
  if (typeof gc !== "function" && !json) {
    console.log("note: run with --v8-flags=--expose-gc to collect garbage between runs");
  }

  const rows = [];
  for (const w of WORKLOADS) {
    if (only.length > 0 && !only.includes(w.name)) continue;
    const names = Object.keys(w.impls);
    for (const name of names) await w.impls[name](Math.floor(w.n / 10));
    const samples: Record<string, number[]> = {};
    for (const name of names) samples[name] = [];
    for (let r = 0; r < rounds; r++) {
      for (const name of names) samples[name].push(await seconds(w.n, w.impls[name]));
    }
    const m: Record<string, number> = {};
    for (const name of names) m[name] = median(samples[name]);
    let gevent: number | undefined;
    let geventSource = "n/a";
    if (w.gevent !== undefined) {
      if (problem === undefined) {
        gevent = await runGevent(anchors, w.gevent);
        geventSource = "measured";
      } else if (reference[w.gevent] !== undefined) {
        gevent = reference[w.gevent].median;
        geventSource = "results.json";
      }
    }
    rows.push({
      workload: w.name,
      title: w.title,
      medians: m,
      samples,
      gevent,
      geventSource,
      vsGevent: gevent === undefined ? undefined : gevent / m.lib,
      vsReference: w.gevent === undefined || reference[w.gevent] === undefined
        ? undefined
        : reference[w.gevent].median / m.lib,
      vsRaw: m.lib / m.raw,
      vsPMap: m["p-map"] === undefined ? undefined : m["p-map"] / m.lib,
      perSecond: w.n / m.lib,
      target: w.target,
      met: w.met(m, gevent),
    });
  }

  if (json) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  console.log(`\nDeno ${Deno.version.deno}, ${rounds} rounds, medians\n`);
  const head = [
    "workload",
    "@x/gevent",
    "raw promises",
    "p-map",
    "gevent",
    "vs gevent",
    "vs ref",
    "lib/raw",
    "items/s",
    "target",
    "met",
  ];
  const lines = [head];
  for (const r of rows) {
    lines.push([
      r.workload,
      fmt(r.medians.lib),
      fmt(r.medians.raw),
      fmt(r.medians["p-map"]),
      r.geventSource === "results.json" ? `${fmt(r.gevent)} (ref)` : fmt(r.gevent),
      ratio(r.vsGevent),
      ratio(r.vsReference),
      ratio(r.vsRaw),
      `${(r.perSecond / 1e6).toFixed(2)} M`,
      r.target,
      r.met === undefined ? "?" : r.met ? "yes" : "NO",
    ]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const render = (l: string[]) => `| ${l.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(render(lines[0]));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const l of lines.slice(1)) console.log(render(l));
  console.log("");
  console.log("vs gevent: gevent / @x/gevent, both measured now; vs ref: the same against the");
  console.log("reference median of results.json; lib/raw: @x/gevent / raw promises.");
  for (const r of rows) {
    const extra = r.vsPMap === undefined ? "" : `; p-map / lib = ${ratio(r.vsPMap)}`;
    console.log(`${r.workload}: ${r.title}${extra}`);
  }
}

if (import.meta.main) await main(Deno.args);
