/**
 * Side-by-side benchmark: the workloads of gevent's `bench.py`, run on this library, on raw
 * promises and on gevent itself, with the ratios and the targets of issue 2.
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc bench/compare.ts [workload...] [--runs=N] [--json] [--no-gevent]
 * deno run -A --v8-flags=--expose-gc bench/compare.ts --alloc   # bytes allocated per operation
 * ```
 *
 * Every measurement runs in a fresh process (this script re-runs itself with `--child`), so no
 * run inherits the JIT state, the hub or the heap of another; runs of the three
 * implementations are interleaved so background noise spreads over all of them. Timed
 * workloads do a warm-up at a tenth of the size in the same process first (gevent's script has
 * none: CPython does not JIT), then a full collection, then the timed run. The table shows the
 * median of the runs and, in parentheses, the lowest and highest run.
 *
 * gevent runs as `/usr/bin/python3 <anchors>/gevent/bench.py NAME`, where `<anchors>` is
 * `../shared/anchors` beside the repository (override with `--anchors=DIR`). When gevent
 * cannot be run (`apt-get install -y python3-gevent` installs it), the script says so and uses
 * the reference medians in `<anchors>/gevent/results.json`, measured on the same kind of
 * machine.
 *
 * `--alloc` replaces the times by the bytes each JavaScript implementation allocates per
 * operation (run at a tenth of the size in a young generation big enough that no collection
 * runs meanwhile): a deterministic figure that tracks most of the time spent, where the times
 * of a busy 2-core machine are noisy.
 *
 * `--child WORKLOAD lib|raw [WARMUP] [time|alloc]` runs one measurement in this process and
 * prints it as JSON: what every subprocess runs, and the handy form to profile, e.g.
 * `deno run --cpu-prof --v8-flags=--expose-gc bench/compare.ts --child spawn_join lib`.
 *
 * To add a workload, add an entry to {@linkcode WORKLOADS}: a runner per implementation that
 * returns the metric (seconds or bytes), the name of gevent's counterpart, and the target.
 *
 * @module
 */

import { Event, type Greenlet, joinAll, sleep, spawn } from "../mod.ts";
import { fullGc, heapPerTask, settle } from "./_measure.ts";

// ---------------------------------------------------------------------------------------------
// Measurement helpers (run inside a child process)

/** Size of the warm-up run, as a fraction of the timed run (`--warmup=`): 0.1 by default. */
let warmupFraction = 0.1;

/**
 * `--alloc`: instead of timing, count the bytes allocated per operation by a run at a tenth of
 * the size, in a young generation large enough that no collection runs meanwhile (the child
 * is started with a big semi-space). Deterministic, so useful on a noisy machine.
 */
let allocMode = false;

/**
 * Runs `fn(n * warmupFraction)` as a warm-up, collects garbage, then times `fn(n)` in seconds
 * (or, in `--alloc` mode, returns the bytes allocated per operation by `fn(n / 10)`).
 */
async function timed(n: number, fn: (n: number) => Promise<void>): Promise<number> {
  if (warmupFraction > 0) await fn(Math.max(1, Math.floor(n * warmupFraction)));
  await settle(10);
  fullGc();
  if (allocMode) {
    const size = Math.floor(n / 10);
    const before = Deno.memoryUsage().heapUsed;
    await fn(size);
    return (Deno.memoryUsage().heapUsed - before) / size;
  }
  const t0 = performance.now();
  await fn(n);
  return (performance.now() - t0) / 1000;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Workload check failed: ${what}`);
}

/** Spawns `n` greenlets that block on one Event; `release()` sets it and joins them. */
async function blockGreenlets(n: number, useAsync: boolean): Promise<{ release(): Promise<void> }> {
  const ev = new Event();
  let started = 0;
  // One shared function, like gevent's spawn(ev.wait): no closure per greenlet.
  const waitOnEvent = useAsync
    ? async () => {
      started++;
      await ev.wait();
      return true;
    }
    : () => {
      started++;
      return ev.wait();
    };
  const gs = new Array<Greenlet<boolean>>(n);
  for (let i = 0; i < n; i++) gs[i] = spawn(waitOnEvent);
  while (started < n) await sleep(1);
  return {
    async release() {
      ev.set();
      await joinAll(gs);
      check(gs.every((g) => g.value === true), "every wait() resolved true");
    },
  };
}

/** Starts `n` async calls that await one promise; `release()` resolves it and awaits them. */
async function blockRawTasks(n: number): Promise<{ release(): Promise<void> }> {
  const gate = Promise.withResolvers<void>();
  let started = 0;
  const waitOnGate = async () => {
    started++;
    await gate.promise;
    return true;
  };
  const ps = new Array<Promise<boolean>>(n);
  for (let i = 0; i < n; i++) ps[i] = waitOnGate();
  await settle(1);
  check(started === n, "every task is waiting");
  return {
    async release() {
      gate.resolve();
      const values = await Promise.all(ps);
      check(values.every((v) => v === true), "every task finished");
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Workloads

/** The sizes of gevent's bench.py. */
const N = 100_000;
const SLEEP0_TOTAL = 1_000_000;
const SLEEP0_WORKERS = 100;

type Impl = "lib" | "raw" | "gevent";
const IMPLS: readonly Impl[] = ["lib", "raw", "gevent"];
const IMPL_TITLES: Record<Impl, string> = {
  lib: "@x/gevent",
  raw: "raw promises",
  gevent: "gevent",
};

/** What a workload's target asks of the medians (all optional, all must hold). */
interface Target {
  /** Human-readable statement of the target. */
  text: string;
  /** `gevent / lib` must be at least this. */
  minVsGevent?: number;
  /** `lib / raw` must be at most this. */
  maxVsRaw?: number;
  /** The library's own figure must be at most this. */
  maxLib?: number;
}

/** One workload: lower is better for every metric. */
interface Workload {
  /** Name on the command line and in the output. */
  name: string;
  /** What it does, for the table's legend. */
  title: string;
  /** Unit of every runner's result. */
  unit: "s" | "B";
  /** gevent's counterpart: `bench.py` NAME and the field of its JSON line holding the metric. */
  gevent?: { name: string; field: string };
  /** One runner per JavaScript implementation; each returns the metric. */
  run: Record<Exclude<Impl, "gevent">, () => Promise<number>>;
  /** The target of issue 2, if any. */
  target?: Target;
}

// A trivial async function, the same for the library and for raw promises.
// deno-lint-ignore require-await -- the point is an async call, as in the raw baseline
const trivial = async (): Promise<number> => 1;

const WORKLOADS: readonly Workload[] = [
  {
    name: "spawn_join",
    title: "spawn + joinAll of 100,000 trivial greenlets (raw: Promise.all over 100,000 calls)",
    unit: "s",
    gevent: { name: "spawn_join", field: "seconds" },
    run: {
      lib: () =>
        timed(N, async (n) => {
          const gs = new Array<Greenlet<number>>(n);
          for (let i = 0; i < n; i++) gs[i] = spawn(trivial);
          await joinAll(gs);
          check(gs[n - 1].value === 1 && gs[0].successful(), "every greenlet returned 1");
        }),
      raw: () =>
        timed(N, async (n) => {
          const ps = new Array<Promise<number>>(n);
          for (let i = 0; i < n; i++) ps[i] = trivial();
          const values = await Promise.all(ps);
          check(values[n - 1] === 1, "every call returned 1");
        }),
    },
    target: { text: ">=20x gevent, <=5x raw", minVsGevent: 20, maxVsRaw: 5 },
  },
  {
    name: "sleep0",
    title: "1,000,000 sleep(0) over 100 greenlets (raw: `await null` in 100 async loops)",
    unit: "s",
    gevent: { name: "sleep0", field: "seconds" },
    run: {
      lib: () =>
        timed(SLEEP0_TOTAL, async (total) => {
          const per = Math.floor(total / SLEEP0_WORKERS);
          let count = 0;
          const worker = async () => {
            for (let i = 0; i < per; i++) {
              await sleep(0);
              count++;
            }
          };
          const gs = [];
          for (let w = 0; w < SLEEP0_WORKERS; w++) gs.push(spawn(worker));
          await joinAll(gs);
          check(count === per * SLEEP0_WORKERS, "every sleep(0) returned");
        }),
      raw: () =>
        timed(SLEEP0_TOTAL, async (total) => {
          const per = Math.floor(total / SLEEP0_WORKERS);
          let count = 0;
          const worker = async () => {
            for (let i = 0; i < per; i++) {
              await null;
              count++;
            }
          };
          const ps = [];
          for (let w = 0; w < SLEEP0_WORKERS; w++) ps.push(worker());
          await Promise.all(ps);
          check(count === per * SLEEP0_WORKERS, "every yield returned");
        }),
    },
    target: { text: ">=6x gevent", minVsGevent: 6 },
  },
  {
    name: "event_pingpong",
    title: "Event ping-pong, 100,000 round trips (raw: two loops trading promise resolvers)",
    unit: "s",
    gevent: { name: "event_pingpong", field: "seconds" },
    run: {
      lib: () =>
        timed(N, async (n) => {
          // The exact shape of bench.py's bench_event_pingpong.
          const ping = new Event();
          const pong = new Event();
          const a = async () => {
            for (let i = 0; i < n; i++) {
              pong.clear();
              ping.set();
              await pong.wait();
            }
          };
          const b = async () => {
            for (let i = 0; i < n; i++) {
              await ping.wait();
              ping.clear();
              pong.set();
            }
          };
          await joinAll([spawn(b), spawn(a)], { raiseError: true });
        }),
      raw: () =>
        timed(N, async (n) => {
          let toB = Promise.withResolvers<void>();
          let toA = Promise.withResolvers<void>();
          let trips = 0;
          const a = async () => {
            for (let i = 0; i < n; i++) {
              toA = Promise.withResolvers<void>();
              toB.resolve();
              await toA.promise;
              trips++;
            }
          };
          const b = async () => {
            for (let i = 0; i < n; i++) {
              await toB.promise;
              toB = Promise.withResolvers<void>();
              toA.resolve();
            }
          };
          await Promise.all([b(), a()]);
          check(trips === n, "every round trip completed");
        }),
    },
    target: { text: ">=10x gevent", minVsGevent: 10 },
  },
  {
    name: "rss_blocked",
    title: "heap bytes per greenlet blocked on one Event, 100,000 of them, spawned as " +
      "`spawn(() => ev.wait())` like gevent's `spawn(ev.wait)` " +
      "(raw: an async function awaiting one promise; gevent: RSS)",
    unit: "B",
    gevent: { name: "rss_blocked", field: "bytes_per_greenlet" },
    run: {
      lib: () => heapPerTask(N, (n) => blockGreenlets(n, false)),
      raw: () => heapPerTask(N, blockRawTasks),
    },
    target: { text: "<=1,024 B per greenlet", maxLib: 1024 },
  },
  {
    name: "rss_blocked_async",
    title:
      "as rss_blocked, but each greenlet runs `async () => { await ev.wait(); return true; }` " +
      "(informational: the usual way to write a greenlet)",
    unit: "B",
    gevent: { name: "rss_blocked", field: "bytes_per_greenlet" },
    run: {
      lib: () => heapPerTask(N, (n) => blockGreenlets(n, true)),
      raw: () => heapPerTask(N, blockRawTasks),
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Child mode: one measurement, one JSON line

async function child(
  workloadName: string,
  impl: string,
  warmup: string,
  mode: string,
): Promise<void> {
  warmupFraction = Number(warmup);
  allocMode = mode === "alloc";
  const w = WORKLOADS.find((x) => x.name === workloadName);
  if (w === undefined || (impl !== "lib" && impl !== "raw")) {
    throw new Error(`Unknown child measurement: ${workloadName} ${impl}`);
  }
  const value = await w.run[impl]();
  console.log(JSON.stringify({ workload: w.name, impl, value }));
}

// ---------------------------------------------------------------------------------------------
// Parent mode

interface Options {
  workloads: Workload[];
  runs: number;
  json: boolean;
  gevent: boolean;
  anchors: string;
  /** Warm-up size as a fraction of the timed size (JavaScript implementations only). */
  warmup: number;
  /** Count bytes allocated per operation instead of timing (timed workloads only). */
  alloc: boolean;
}

function usage(): string {
  return `Usage: deno run -A --v8-flags=--expose-gc bench/compare.ts [workload...] [options]

Workloads: ${WORKLOADS.map((w) => w.name).join(", ")} (default: all)
Options:
  --runs=N       fresh processes per implementation and workload (default 3)
  --json         print machine-readable results instead of the table
  --no-gevent    do not run gevent; use the reference figures in results.json
  --warmup=F     warm-up run of F times the size before each timed run (default 0.1;
                 1 measures a warmed-up heap, 0 a cold start)
  --alloc        instead of timing, print the bytes each implementation allocates per
                 operation (greenlet, switch, round trip) at a tenth of the size, with no
                 collection during the run; deterministic, unlike times on a busy machine
  --anchors=DIR  where gevent/bench.py and gevent/results.json live
                 (default: ../shared/anchors beside the repository)
  --child WORKLOAD lib|raw [WARMUP] [time|alloc]
                 run one measurement here and print it as JSON (for --cpu-prof)`;
}

function parseArgs(args: string[]): Options {
  const defaultAnchors = decodeURIComponent(
    new URL("../../shared/anchors", import.meta.url).pathname,
  );
  const opts: Options = {
    workloads: [],
    runs: 3,
    json: false,
    gevent: true,
    anchors: defaultAnchors,
    warmup: 0.1,
    alloc: false,
  };
  for (const arg of args) {
    if (arg === "--json") opts.json = true;
    else if (arg === "--alloc") opts.alloc = true;
    else if (arg === "--no-gevent") opts.gevent = false;
    else if (arg.startsWith("--runs=")) {
      const runs = Number(arg.slice("--runs=".length));
      if (!Number.isInteger(runs) || runs < 1) {
        throw new RangeError(`'--runs' must be a positive integer: current value is ${arg}`);
      }
      opts.runs = runs;
    } else if (arg.startsWith("--warmup=")) {
      const warmup = Number(arg.slice("--warmup=".length));
      if (!(warmup >= 0 && warmup <= 1)) {
        throw new RangeError(`'--warmup' must be a number from 0 to 1: current value is ${arg}`);
      }
      opts.warmup = warmup;
    } else if (arg.startsWith("--anchors=")) opts.anchors = arg.slice("--anchors=".length);
    else if (arg === "--help" || arg === "-h") {
      console.log(usage());
      Deno.exit(0);
    } else {
      const w = WORKLOADS.find((x) => x.name === arg);
      if (w === undefined) throw new TypeError(`Unknown workload or option: ${arg}\n\n${usage()}`);
      opts.workloads.push(w);
    }
  }
  if (opts.workloads.length === 0) opts.workloads = [...WORKLOADS];
  if (opts.alloc) opts.workloads = opts.workloads.filter((w) => w.unit === "s");
  return opts;
}

const decoder = new TextDecoder();

/** Runs a command and parses the JSON object on the last line of its output. */
async function runJson(cmd: string, args: string[]): Promise<Record<string, unknown>> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 600_000);
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
      signal: controller.signal,
    }).output();
    const stdout = decoder.decode(out.stdout).trim();
    const last = stdout.split("\n").at(-1) ?? "";
    if (!out.success || !last.startsWith("{")) {
      const err = decoder.decode(out.stderr).trim().split("\n").slice(-5).join("\n");
      throw new Error(`${cmd} ${args.join(" ")} failed (code ${out.code}):\n${err}`);
    }
    return JSON.parse(last);
  } finally {
    clearTimeout(timer);
  }
}

const python = "/usr/bin/python3";

async function geventProbe(opts: Options): Promise<string | undefined> {
  if (!opts.gevent) return "gevent not run (--no-gevent)";
  try {
    await Deno.stat(`${opts.anchors}/gevent/bench.py`);
  } catch {
    return `gevent not run: ${opts.anchors}/gevent/bench.py not found`;
  }
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import gevent; print(gevent.__version__)"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) {
      return `gevent not run: ${python} cannot import gevent ` +
        "(install it with `apt-get install -y python3-gevent`)";
    }
  } catch (error) {
    return `gevent not run: ${python} is not available (${(error as Error).message})`;
  }
  return undefined;
}

async function referenceFigures(anchors: string): Promise<Record<string, { median: number }>> {
  try {
    return JSON.parse(await Deno.readTextFile(`${anchors}/gevent/results.json`));
  } catch {
    return {};
  }
}

/** `git describe --always --dirty` of the repository, or "unknown". */
async function gitRevision(): Promise<string> {
  try {
    const out = await new Deno.Command("git", {
      args: ["describe", "--always", "--dirty"],
      cwd: decodeURIComponent(new URL("..", import.meta.url).pathname),
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? decoder.decode(out.stdout).trim() : "unknown";
  } catch {
    return "unknown";
  }
}

async function measure(w: Workload, impl: Impl, opts: Options): Promise<number> {
  if (impl === "gevent") {
    const result = await runJson(python, [`${opts.anchors}/gevent/bench.py`, w.gevent!.name]);
    return Number(result[w.gevent!.field]);
  }
  const result = await runJson(Deno.execPath(), [
    "run",
    opts.alloc
      ? "--v8-flags=--expose-gc,--min-semi-space-size=256,--max-semi-space-size=256"
      : "--v8-flags=--expose-gc",
    import.meta.filename!,
    "--child",
    w.name,
    impl,
    String(opts.warmup),
    opts.alloc ? "alloc" : "time",
  ]);
  return Number(result.value);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export interface Cell {
  median: number;
  values: number[];
  /** `measured`, or `results.json` for gevent's reference figures. */
  source: "measured" | "results.json";
}

/** One workload's row of the JSON output (`--json`). */
export interface ResultRow {
  workload: string;
  title: string;
  unit: "s" | "B";
  lib?: Cell;
  raw?: Cell;
  gevent?: Cell;
  /** gevent's median in results.json (the reference machine), for context. */
  geventReference?: number;
  /** gevent / lib: how many times faster (or smaller) the library is than gevent. */
  vsGevent?: number;
  /** lib / raw: how many times slower (or bigger) the library is than raw promises. */
  vsRaw?: number;
  target?: string;
  met?: boolean;
  errors: string[];
}

function judge(t: Target, row: ResultRow): boolean | undefined {
  const checks: (boolean | undefined)[] = [];
  if (t.minVsGevent !== undefined) {
    checks.push(row.vsGevent === undefined ? undefined : row.vsGevent >= t.minVsGevent);
  }
  if (t.maxVsRaw !== undefined) {
    checks.push(row.vsRaw === undefined ? undefined : row.vsRaw <= t.maxVsRaw);
  }
  if (t.maxLib !== undefined) {
    checks.push(row.lib === undefined ? undefined : row.lib.median <= t.maxLib);
  }
  if (checks.includes(false)) return false;
  if (checks.includes(undefined)) return undefined;
  return true;
}

function fmtValue(unit: "s" | "B", v: number): string {
  if (unit === "B") return `${Math.round(v).toLocaleString("en-US")} B`;
  if (v < 1) return `${(v * 1000).toFixed(1)} ms`;
  return `${v.toFixed(3)} s`;
}

function fmtCell(unit: "s" | "B", c: Cell | undefined): string {
  if (c === undefined) return "n/a";
  const m = fmtValue(unit, c.median);
  if (c.source === "results.json") return `${m} (ref)`;
  if (c.values.length < 2) return m;
  const lo = Math.min(...c.values);
  const hi = Math.max(...c.values);
  const strip = (s: string) => s.replace(/ (ms|s|B)$/, "");
  return `${m} (${strip(fmtValue(unit, lo))}-${fmtValue(unit, hi)})`;
}

function fmtRatio(r: number | undefined): string {
  if (r === undefined) return "n/a";
  return r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

/** The result table; `allocOnly` keeps the columns that make sense for `--alloc`. */
function table(rows: ResultRow[], allocOnly = false): string {
  const columns: [string, (r: ResultRow) => string][] = [
    ["workload", (r) => r.workload],
    ["@x/gevent", (r) => fmtCell(r.unit, r.lib)],
    ["raw promises", (r) => fmtCell(r.unit, r.raw)],
    ["gevent", (r) => fmtCell(r.unit, r.gevent)],
    ["vs gevent (gevent/lib)", (r) => fmtRatio(r.vsGevent)],
    ["vs raw (lib/raw)", (r) => fmtRatio(r.vsRaw)],
    ["target", (r) => r.target ?? ""],
    ["met?", (r) => r.met === undefined ? (r.target ? "?" : "") : r.met ? "yes" : "NO"],
  ];
  const shown = allocOnly
    ? columns.filter(([h]) => !/gevent \(|^gevent$|target|met/.test(h))
    : columns;
  const head = shown.map(([h]) => h);
  const body = rows.map((r) => shown.map(([, cell]) => cell(r)));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)]
    .join("\n");
}

async function parent(opts: Options): Promise<void> {
  // Progress goes to stderr, with --json too (the JSON alone is on stdout).
  const log = (text: string) => console.error(text);
  const geventNote = await geventProbe(opts);
  const reference = await referenceFigures(opts.anchors);
  if (geventNote !== undefined) {
    // Printed even with --json (on stderr), so nobody mistakes reference figures for a run.
    console.error(
      `NOTE: ${geventNote}; using the reference medians in ${opts.anchors}/gevent/results.json`,
    );
  }
  const revision = await gitRevision();
  let load: number[] | undefined;
  try {
    load = Deno.loadavg();
  } catch {
    load = undefined;
  }
  log(
    `deno ${Deno.version.deno} (v8 ${Deno.version.v8}), ${navigator.hardwareConcurrency} cpus` +
      (load ? `, load average ${load.map((x) => x.toFixed(2)).join(" ")}` : "") +
      `; library at ${revision}; ${opts.runs} fresh process(es) per cell, warm-up ${opts.warmup}`,
  );

  const samples = new Map<string, number[]>();
  const errors = new Map<string, string[]>();
  const key = (w: Workload, impl: Impl) => `${w.name}/${impl}`;
  const skipGevent = geventNote !== undefined || opts.alloc;
  for (let run = 0; run < opts.runs; run++) {
    // Workloads sharing one gevent counterpart share its measurement within a round.
    const geventRound = new Map<string, number>();
    for (const w of opts.workloads) {
      for (const impl of IMPLS) {
        if (impl === "gevent" && (w.gevent === undefined || skipGevent)) continue;
        try {
          let v: number;
          if (impl === "gevent" && geventRound.has(w.gevent!.name)) {
            v = geventRound.get(w.gevent!.name)!;
          } else {
            v = await measure(w, impl, opts);
            if (impl === "gevent") geventRound.set(w.gevent!.name, v);
          }
          if (!Number.isFinite(v)) throw new Error(`not a number: ${v}`);
          samples.set(key(w, impl), [...(samples.get(key(w, impl)) ?? []), v]);
          const shown = fmtValue(opts.alloc ? "B" : w.unit, v);
          log(`run ${run + 1}/${opts.runs} ${w.name} ${IMPL_TITLES[impl]}: ${shown}`);
        } catch (error) {
          const message = (error as Error).message;
          errors.set(w.name, [...(errors.get(w.name) ?? []), `${impl}: ${message}`]);
          log(`run ${run + 1}/${opts.runs} ${w.name} ${IMPL_TITLES[impl]}: FAILED ${message}`);
        }
      }
    }
  }

  const rows: ResultRow[] = opts.workloads.map((w) => {
    const cell = (impl: Impl): Cell | undefined => {
      const values = samples.get(key(w, impl));
      if (values !== undefined && values.length > 0) {
        return { median: median(values), values, source: "measured" };
      }
      const ref = impl === "gevent" && w.gevent && !opts.alloc
        ? reference[w.gevent.name]
        : undefined;
      if (ref !== undefined && typeof ref.median === "number") {
        return { median: ref.median, values: [ref.median], source: "results.json" };
      }
      return undefined;
    };
    const row: ResultRow = {
      workload: w.name,
      title: w.title,
      unit: opts.alloc ? "B" : w.unit,
      lib: cell("lib"),
      raw: cell("raw"),
      gevent: cell("gevent"),
      target: opts.alloc ? undefined : w.target?.text,
      errors: errors.get(w.name) ?? [],
    };
    if (opts.alloc) {
      if (row.lib && row.raw) row.vsRaw = row.lib.median / row.raw.median;
      return row;
    }
    const ref = w.gevent ? reference[w.gevent.name]?.median : undefined;
    if (typeof ref === "number") row.geventReference = ref;
    if (row.lib && row.gevent) row.vsGevent = row.gevent.median / row.lib.median;
    if (row.lib && row.raw) row.vsRaw = row.lib.median / row.raw.median;
    if (w.target) row.met = judge(w.target, row);
    return row;
  });

  if (opts.json) {
    console.log(JSON.stringify(
      {
        deno: Deno.version,
        cpus: navigator.hardwareConcurrency,
        loadavg: load,
        runs: opts.runs,
        warmup: opts.warmup,
        mode: opts.alloc ? "bytes allocated per operation" : "time / heap per task",
        revision,
        gevent: { measured: geventNote === undefined, note: geventNote },
        results: rows,
      },
      null,
      2,
    ));
    return;
  }
  console.log(table(rows, opts.alloc));
  console.log("");
  for (const w of opts.workloads) console.log(`- ${w.name}: ${w.title}`);
  if (opts.alloc) {
    console.log(
      "Cells: bytes allocated per operation (greenlet, switch or round trip) at a tenth of " +
        "the size, median of the runs (lowest-highest).",
    );
    for (const r of rows) for (const e of r.errors) console.log(`ERROR ${r.workload} ${e}`);
    if (rows.some((r) => r.errors.length > 0)) Deno.exitCode = 1;
    return;
  }
  console.log(
    "Cells: median of the runs (lowest-highest). Lower is better everywhere; " +
      "gevent's memory figure is RSS, ours and raw are V8 heap after gc.",
  );
  if (geventNote !== undefined) console.log(`NOTE: ${geventNote}; "(ref)" = results.json.`);
  else {
    const refs = rows.filter((r) => r.geventReference !== undefined && r.lib !== undefined).map(
      (r) =>
        `${r.workload} ${fmtValue(r.unit, r.geventReference!)} ` +
        `(${fmtRatio(r.geventReference! / r.lib!.median)} lib)`,
    );
    if (refs.length > 0) {
      console.log(`gevent reference medians (results.json, another machine): ${refs.join(", ")}`);
    }
  }
  for (const r of rows) for (const e of r.errors) console.log(`ERROR ${r.workload} ${e}`);
  if (rows.some((r) => r.errors.length > 0)) Deno.exitCode = 1;
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--child") {
    await child(args[1], args[2], args[3] ?? "0.1", args[4] ?? "time");
    // Greenlets left blocked (none, normally) must not keep the process alive.
    Deno.exit(0);
  } else {
    await parent(parseArgs(args));
  }
}
