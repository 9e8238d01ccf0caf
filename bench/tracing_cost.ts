/**
 * What carrying the OpenTelemetry context of the spawner costs per spawn (issue 11): the
 * spawn + joinAll workload of `bench/compare.ts` (100,000 trivial greenlets against
 * `Promise.all` over 100,000 async calls) run with Deno's telemetry off and on
 * (`OTEL_DENO=true`, exporting to a collector on loopback that this script starts).
 *
 * ```sh
 * deno task bench:tracing            # or: deno run -A bench/tracing_cost.ts [--runs=N]
 * ```
 *
 * Cases, besides the raw baseline:
 * - `spawn`: spawned at top level, where no span is active;
 * - `spawn in span`: spawned inside `startActiveSpan` (with telemetry on, every greenlet then
 *   starts inside the span's context: what the fix costs when it has work to do);
 * - `snapshot in span`: the same, each greenlet's function also wrapped by an
 *   `AsyncLocalStorage.snapshot()` taken at spawn: what capturing the whole async context per
 *   greenlet would add (the alternative that was not taken; with telemetry off, the only
 *   difference from `spawn in span`).
 *
 * Every measurement is a fresh process, taken as `bench/compare.ts` takes it (warm-up at a
 * tenth of the size, a full collection, one timed run): the script re-runs itself with
 * `--child off|on CASE`, off and on interleaved. The table shows the median over the runs of
 * ns per greenlet, of the ratio to the raw baseline of the same run and mode, and of the
 * ratio on/off between the two neighbouring processes of a run. A last line gives what a busy
 * machine blurs least: spawn in a span against spawn at top level, alternated in one process
 * (with telemetry off both are the same code: about 1).
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { type Greenlet, joinAll, spawn } from "../mod.ts";
import { startCollector } from "../tests/_otlp_collector.ts";

const N = 100_000;
const CASES = ["raw", "spawn", "spawn in span", "snapshot in span"] as const;
type Case = typeof CASES[number];

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Benchmark check failed: ${what}`);
}

// deno-lint-ignore require-await -- the point is an async call, as in the raw baseline
const trivial = async (): Promise<number> => 1;

async function raw(n: number): Promise<void> {
  const ps = new Array<Promise<number>>(n);
  for (let i = 0; i < n; i++) ps[i] = trivial();
  const values = await Promise.all(ps);
  check(values[n - 1] === 1, "every call returned 1");
}

async function spawnJoin(n: number): Promise<void> {
  const gs = new Array<Greenlet<number>>(n);
  for (let i = 0; i < n; i++) gs[i] = spawn(trivial);
  await joinAll(gs);
  check(gs[n - 1].value === 1 && gs[0].successful(), "every greenlet returned 1");
}

async function snapshotJoin(n: number): Promise<void> {
  const gs = new Array<Greenlet<number>>(n);
  for (let i = 0; i < n; i++) gs[i] = spawn(AsyncLocalStorage.snapshot(), trivial);
  await joinAll(gs);
  check(gs[n - 1].value === 1 && gs[0].successful(), "every greenlet returned 1");
}

/** Runs `body` inside an active span; with telemetry off (no tracer then), runs it as is. */
function inSpan(body: (n: number) => Promise<void>): (n: number) => Promise<void> {
  if (!(Symbol.for("opentelemetry.js.api.1") in globalThis)) return body;
  const tracer = Deno.telemetry.tracerProvider.getTracer("bench");
  return (n) =>
    tracer.startActiveSpan("bench", async (span: { end(): void }) => {
      try {
        await body(n);
      } finally {
        span.end();
      }
    });
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** One measurement, as `bench/compare.ts` takes it: warm up at a tenth, collect, time once. */
async function child(c: Case): Promise<number> {
  const body = {
    raw,
    spawn: spawnJoin,
    "spawn in span": inSpan(spawnJoin),
    "snapshot in span": inSpan(snapshotJoin),
  }[c];
  await body(N / 10);
  await new Promise((resolve) => setTimeout(resolve, 10));
  gc();
  const t0 = performance.now();
  await body(N);
  return (performance.now() - t0) * 1e6 / N;
}

async function measure(
  mode: "off" | "on",
  c: Case | "paired",
  endpoint: string,
): Promise<number> {
  const env: Record<string, string> = mode === "on"
    ? { OTEL_DENO: "true", OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }
    : {};
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--child",
      mode,
      c,
    ],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`child (${mode}, ${c}) failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * The added cost per greenlet, free of the noise between processes: spawn + joinAll inside a
 * span against at top level, alternated in one process; the median ratio of the rounds.
 */
async function paired(): Promise<number> {
  const n = N / 5;
  const root = spawnJoin, span = inSpan(spawnJoin);
  for (let i = 0; i < 3; i++) await root(n), await span(n);
  const ratios: number[] = [];
  const time = async (body: (n: number) => Promise<void>) => {
    gc();
    const t0 = performance.now();
    await body(n);
    return performance.now() - t0;
  };
  for (let r = 0; r < 16; r++) {
    // Alternate which goes first: the second of a pair runs on a warmer heap.
    let atTop: number, inside: number;
    if (r % 2 === 0) {
      atTop = await time(root);
      inside = await time(span);
    } else {
      inside = await time(span);
      atTop = await time(root);
    }
    ratios.push(inside / atTop);
  }
  return median(ratios);
}

async function parent(runs: number): Promise<void> {
  await using collector = startCollector();
  type Run = Record<Case, number>;
  const results: Record<"off" | "on", Run[]> = { off: [], on: [] };
  const pairs: Record<"off" | "on", number[]> = { off: [], on: [] };
  for (let r = 0; r < runs; r++) {
    for (const mode of ["off", "on"] as const) {
      const run = {} as Run;
      for (const c of CASES) run[c] = await measure(mode, c, collector.endpoint);
      results[mode].push(run);
      pairs[mode].push(await measure(mode, "paired", collector.endpoint));
    }
  }
  // Ratios are taken within a process (to its own raw baseline) or a pair of neighbouring
  // processes (on/off), then the median over the runs is shown.
  const ns = (mode: "off" | "on", c: Case) => median(results[mode].map((x) => x[c]));
  const vsRaw = (mode: "off" | "on", c: Case) => median(results[mode].map((x) => x[c] / x.raw));
  const onOff = (c: Case) => median(results.on.map((x, i) => x[c] / results.off[i][c]));
  console.log(`spawn + joinAll of ${N.toLocaleString("en-US")} trivial greenlets, ${runs} runs`);
  console.log(
    `${"case".padEnd(18)} ${"off ns".padStart(7)} ${"x raw".padStart(6)}` +
      ` ${"on ns".padStart(7)} ${"x raw".padStart(6)} ${"on/off".padStart(7)}`,
  );
  for (const c of CASES) {
    console.log(
      `${c.padEnd(18)} ${ns("off", c).toFixed(0).padStart(7)} ${
        vsRaw("off", c).toFixed(2).padStart(6)
      }` +
        ` ${ns("on", c).toFixed(0).padStart(7)} ${vsRaw("on", c).toFixed(2).padStart(6)}` +
        ` ${onOff(c).toFixed(2).padStart(7)}`,
    );
  }
  console.log(
    `spawn in span / spawn at top level, alternated in one process: ` +
      `off ${median(pairs.off).toFixed(2)}, on ${median(pairs.on).toFixed(2)}`,
  );
  console.log(`target (issue 2): spawn <= 5x raw`);
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--child");
  if (i >= 0) {
    const c = Deno.args[i + 2];
    console.log(JSON.stringify(c === "paired" ? await paired() : await child(c as Case)));
  } else {
    const runsArg = Deno.args.find((a) => a.startsWith("--runs="));
    await parent(runsArg ? Number(runsArg.slice(7)) : 5);
  }
}
