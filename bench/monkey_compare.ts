/**
 * Patched vs original, side by side in one process: what `monkey.patchAll()` costs unaware
 * code running inside a greenlet (outside greenlets the patched functions pass straight
 * through).
 *
 * Workloads, all on loopback, each run by one greenlet:
 * - `fetch`: a local HTTP/1.1 request (keep-alive) and reading its 4-byte body with `text()`;
 * - `Deno.connect`: a 64-byte echo round trip (`write` then `read`) on one connection;
 * - `Deno.resolveDns`: an `A` query with an explicit `nameServer` (so both sides send it).
 *
 * ```sh
 * deno run -A bench/monkey_compare.ts [--rounds=150] [--http=100] [--echo=1000] [--dns=50] [--json]
 * ```
 *
 * Loopback timings on a shared machine vary by 10-20% from one run to the next, far more
 * than the overhead measured, so the workload is cut into small batches and the original and
 * patched batches alternate (the order flips every round) over many rounds, after a warm-up
 * of each; the table shows the median time per operation of each side and the ratio
 * patched / original (target: at most 1.10), in wall-clock time and in CPU time of the whole
 * process (client and server; steadier on a busy machine). The "vs fetch with an AbortSignal"
 * row compares the patched fetch with an original one that passes a fresh signal per request:
 * Deno's own cost of a cancellable fetch (a cancel handle and a dependent signal per request)
 * is most of the patched fetch's overhead on loopback. The control row runs the original against itself
 * the same way: its distance from 1.000 is the noise of the measurement.
 *
 * `--json` prints one JSON object instead of the table (what `bench/report.ts` reads): per row
 * the medians in microseconds per operation and the ratio patched / original, wall and CPU.
 *
 * @module
 */

import process from "node:process";
import { type Greenlet, spawn } from "../greenlet.ts";
import { getOriginal, patchAll, unpatchAll } from "../monkey.ts";
import { startHttpServer } from "../tests/_http_server.ts";
import { startDnsServer } from "../tests/_dns_server.ts";

function option(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

const ROUNDS = option("rounds", 150);
const HTTP_N = option("http", 100);
const ECHO_N = option("echo", 1000);
const DNS_N = option("dns", 50);
const JSON_MODE = Deno.args.includes("--json");
/** The table goes to stdout, or to stderr (as progress) when `--json` is given. */
const say = JSON_MODE ? console.error : console.log;

/** Wall-clock and CPU (user + system, server side included) microseconds per operation. */
interface Sample {
  wall: number;
  cpu: number;
}

/** Runs `fn` in a greenlet and returns microseconds per operation. */
async function timed(n: number, fn: () => Promise<void>): Promise<Sample> {
  const g: Greenlet<Sample> = spawn(async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const wall = (performance.now() - t0) * 1000 / n;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / n };
  });
  return await g.get() as Sample;
}

const http = startHttpServer();
const url = `${http.origin}/fast`;
async function httpWork(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(url);
    if (await res.text() !== "fast") throw new Error("bad body");
  }
}

// A raw echo server on the original functions, outside every greenlet.
const listener = getOriginal(Deno, "listen")({ hostname: "127.0.0.1", port: 0 });
const echoLoop = (async () => {
  for await (const conn of listener) {
    (async () => {
      const buf = new Uint8Array(4096);
      try {
        for (let n; (n = await conn.read(buf)) !== null;) {
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
      } catch {
        // Closed.
      } finally {
        conn.close();
      }
    })();
  }
})();
async function echoWork(n: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  conn.setNoDelay(true);
  const msg = new Uint8Array(64).fill(7);
  const buf = new Uint8Array(64);
  try {
    for (let i = 0; i < n; i++) {
      await conn.write(msg);
      let got = 0;
      while (got < 64) {
        const k = await conn.read(buf.subarray(got));
        if (k === null) throw new Error("echo closed");
        got += k;
      }
    }
  } finally {
    conn.close();
  }
}

const dns = await startDnsServer({ records: { "svc.test": { A: ["10.0.0.7"] } } });
async function dnsWork(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await Deno.resolveDns("svc.test", "A", { nameServer: dns.nameserver });
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The original side of the "cancellable" row: every request carries its own signal. */
async function httpSignalWork(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(url, { signal: new AbortController().signal });
    if (await res.text() !== "fast") throw new Error("bad body");
  }
}

type Work = (n: number) => Promise<void>;
/** [name, original side, patched side (undefined: the original again, unpatched), ops]. */
const rows: [string, Work, Work | undefined, number][] = [
  ["control: fetch vs itself", httpWork, undefined, HTTP_N],
  ["fetch + text(), local HTTP", httpWork, httpWork, HTTP_N],
  ["  vs fetch with an AbortSignal", httpSignalWork, httpWork, HTTP_N],
  ["Deno.connect 64-byte echo", echoWork, echoWork, ECHO_N],
  ["Deno.resolveDns A (nameServer)", dnsWork, dnsWork, DNS_N],
];

say(`${ROUNDS} rounds of alternating batches (median), one greenlet per batch`);
say(
  `${"workload".padEnd(31)} ${"wall us/op: original".padStart(21)} ${"patched".padStart(8)} ${
    "ratio".padStart(6)
  }  ${"cpu us/op: original".padStart(19)} ${"patched".padStart(8)} ${"ratio".padStart(6)}`,
);
const results: {
  name: string;
  ops: number;
  control: boolean;
  wall: { original: number; patched: number; ratio: number };
  cpu: { original: number; patched: number; ratio: number };
}[] = [];
try {
  for (const [name, work, patchedWork, n] of rows) {
    const patchAllIf = (): void => patchedWork === undefined ? undefined : patchAll();
    const other = patchedWork ?? work;
    const original: Sample[] = [];
    const patched: Sample[] = [];
    await timed(n, () => work(n));
    patchAllIf();
    await timed(n, () => other(n));
    unpatchAll();
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first, so neither always runs on a warmer (or dirtier) heap.
      if (r % 2 === 0) original.push(await timed(n, () => work(n)));
      patchAllIf();
      try {
        patched.push(await timed(n, () => other(n)));
      } finally {
        unpatchAll();
      }
      if (r % 2 === 1) original.push(await timed(n, () => work(n)));
    }
    const cells = (key: keyof Sample, width: number): string => {
      const o = median(original.map((x) => x[key]));
      const p = median(patched.map((x) => x[key]));
      return `${o.toFixed(1).padStart(width)} ${p.toFixed(1).padStart(8)} ${
        (p / o).toFixed(3).padStart(6)
      }`;
    };
    say(`${name.padEnd(31)} ${cells("wall", 21)}  ${cells("cpu", 19)}`);
    const figures = (key: keyof Sample) => {
      const o = median(original.map((x) => x[key]));
      const p = median(patched.map((x) => x[key]));
      return { original: o, patched: p, ratio: p / o };
    };
    results.push({
      name: name.trim(),
      ops: n,
      control: patchedWork === undefined,
      wall: figures("wall"),
      cpu: figures("cpu"),
    });
  }
  if (JSON_MODE) {
    console.log(JSON.stringify({ rounds: ROUNDS, unit: "us/op", rows: results }));
  }
} finally {
  await http.close();
  listener.close();
  await echoLoop;
  await dns.close();
}
