/**
 * The workloads of `bench/compare.ts` (and `pool_imap` of `bench/compare_toolbox.ts`) run on
 * the JavaScript peers: Effection and Effect, from npm, under Deno. `bench/report.ts` divides
 * these figures by the library's own, measured in the same run by the other two scripts.
 *
 * ```sh
 * deno run -A --no-lock --v8-flags=--expose-gc bench/peers_compare.ts [case...] [--runs=N] [--json]
 * ```
 *
 * The peers are imported by computed `npm:` specifiers with pinned versions (see
 * {@linkcode PACKAGES}), so they stay out of `deno.json` and `deno.lock`; `--no-lock` keeps
 * them out of the lock file at run time too (they land in `node_modules/` like every other
 * `npm:` package). Every measurement runs in a fresh process (`--child CASE`), with the method
 * of `compare.ts`: a warm-up at a tenth of the size, a full collection, then the timed run (or,
 * for memory, the growth of the V8 heap after collection divided by the number of blocked
 * tasks). The cases:
 *
 * - `spawn_join`: 100,000 child tasks returning at once, then join each (Effection `spawn`,
 *   Effect `forkChild` + `Fiber.join`);
 * - `sleep0`: 100 tasks x 10,000 yields. Effect: `Effect.yieldNow`. Effection: `until` of an
 *   already resolved promise (a microtask hop; Effection's own `sleep(0)` is a `setTimeout`,
 *   about 2 ms a hop on Deno, 20 s and more for this workload, so it is not run);
 * - `rss_blocked`: heap bytes per task blocked on one thing (Effection `withResolvers`, Effect
 *   `Deferred`), 100,000 tasks;
 * - `pool_imap`: map of 100,000 items at concurrency 100 with an identity mapper (Effect
 *   `forEach` with `concurrency: 100`; Effection has no pool).
 *
 * `--json` prints one JSON object: the package versions and, per case, the samples, the median
 * and any error. Lower is better for every figure.
 *
 * @module
 */

import { fullGc, heapPerTask, settle } from "./_measure.ts";

/** The peers, pinned. */
export const PACKAGES = { effection: "4.1.1", effect: "4.1.0" } as const;

// The peers' modules are typed loosely: they are loaded by computed specifiers (not analysed,
// not locked), and only a handful of their functions is used.
// deno-lint-ignore no-explicit-any
type Module = any;

async function effection(): Promise<Module> {
  return await import(`npm:effection@${PACKAGES.effection}`);
}

async function effect(): Promise<Module> {
  return await import(`npm:effect@${PACKAGES.effect}`);
}

const N = 100_000;
const YIELD_TASKS = 100;
const YIELDS = 1_000_000;
const CONCURRENCY = 100;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Workload check failed: ${what}`);
}

/** Warm-up at a tenth of the size, collection, then seconds taken by `fn(n)`. */
async function timed(n: number, fn: (n: number) => Promise<void>): Promise<number> {
  await fn(Math.max(1, Math.floor(n / 10)));
  await settle(10);
  fullGc();
  const t0 = performance.now();
  await fn(n);
  return (performance.now() - t0) / 1000;
}

interface Case {
  /** The workload of compare.ts / compare_toolbox.ts this mirrors. */
  workload: "spawn_join" | "sleep0" | "rss_blocked" | "pool_imap";
  peer: string;
  /** What exactly runs, for the page. */
  how: string;
  unit: "s" | "B";
  run(): Promise<number>;
}

const CASES: Case[] = [
  {
    workload: "spawn_join",
    peer: "Effection",
    how: "spawn() x 100,000 then yield* each task",
    unit: "s",
    run: async () => {
      const { run, spawn } = await effection();
      return timed(N, async (n) => {
        const sum = await run(function* () {
          const tasks = new Array(n);
          for (let i = 0; i < n; i++) {
            tasks[i] = yield* spawn(function* () {
              return 1;
            });
          }
          let s = 0;
          for (const t of tasks) s += yield* t;
          return s;
        });
        check(sum === n, "every task returned 1");
      });
    },
  },
  {
    workload: "spawn_join",
    peer: "Effect",
    how: "Effect.forkChild(Effect.succeed(1)) x 100,000 then Fiber.join each",
    unit: "s",
    run: async () => {
      const { Effect, Fiber } = await effect();
      return timed(N, async (n) => {
        const sum = await Effect.runPromise(Effect.gen(function* () {
          const fibers = new Array(n);
          for (let i = 0; i < n; i++) fibers[i] = yield* Effect.forkChild(Effect.succeed(1));
          let s = 0;
          for (const f of fibers) s += yield* Fiber.join(f);
          return s;
        }));
        check(sum === n, "every fiber returned 1");
      });
    },
  },
  {
    workload: "sleep0",
    peer: "Effection",
    how: "100 tasks x 10,000 yield* until(resolved promise)",
    unit: "s",
    run: async () => {
      const { run, spawn, until } = await effection();
      return timed(YIELDS, async (total) => {
        const per = Math.floor(total / YIELD_TASKS);
        const done = Promise.resolve();
        const count = await run(function* () {
          let c = 0;
          const tasks = [];
          for (let t = 0; t < YIELD_TASKS; t++) {
            tasks.push(
              yield* spawn(function* () {
                for (let i = 0; i < per; i++) {
                  yield* until(done);
                  c++;
                }
              }),
            );
          }
          for (const t of tasks) yield* t;
          return c;
        });
        check(count === per * YIELD_TASKS, "every yield returned");
      });
    },
  },
  {
    workload: "sleep0",
    peer: "Effect",
    how: "100 fibers x 10,000 Effect.yieldNow",
    unit: "s",
    run: async () => {
      const { Effect, Fiber } = await effect();
      return timed(YIELDS, async (total) => {
        const per = Math.floor(total / YIELD_TASKS);
        const count = await Effect.runPromise(Effect.gen(function* () {
          let c = 0;
          const fibers = [];
          for (let t = 0; t < YIELD_TASKS; t++) {
            fibers.push(
              yield* Effect.forkChild(Effect.gen(function* () {
                for (let i = 0; i < per; i++) {
                  yield* Effect.yieldNow;
                  c++;
                }
              })),
            );
          }
          for (const f of fibers) yield* Fiber.join(f);
          return c;
        }));
        check(count === per * YIELD_TASKS, "every yield returned");
      });
    },
  },
  {
    workload: "rss_blocked",
    peer: "Effection",
    how: "tasks blocked on one withResolvers() operation",
    unit: "B",
    run: async () => {
      const { run, spawn, withResolvers } = await effection();
      return heapPerTask(N, async (n) => {
        const { operation, resolve } = withResolvers();
        let started = 0;
        const task = run(function* () {
          const tasks = new Array(n);
          for (let i = 0; i < n; i++) {
            tasks[i] = yield* spawn(function* () {
              started++;
              return yield* operation;
            });
          }
          let ok = 0;
          for (const t of tasks) if ((yield* t) === true) ok++;
          return ok;
        });
        while (started < n) await settle(1);
        return {
          async release() {
            resolve(true);
            check(await task === n, "every task was released");
          },
        };
      });
    },
  },
  {
    workload: "rss_blocked",
    peer: "Effect",
    how: "fibers blocked on one Deferred",
    unit: "B",
    run: async () => {
      const { Deferred, Effect, Fiber } = await effect();
      return heapPerTask(N, async (n) => {
        const d = Effect.runSync(Deferred.make());
        let started = 0;
        const done = Effect.runPromise(Effect.gen(function* () {
          const fibers = new Array(n);
          for (let i = 0; i < n; i++) {
            fibers[i] = yield* Effect.forkChild(Effect.suspend(() => {
              started++;
              return Deferred.await(d);
            }));
          }
          let ok = 0;
          for (const f of fibers) if ((yield* Fiber.join(f)) === true) ok++;
          return ok;
        }));
        while (started < n) await settle(1);
        return {
          async release() {
            Effect.runSync(Deferred.succeed(d, true));
            check(await done === n, "every fiber was released");
          },
        };
      });
    },
  },
  {
    workload: "pool_imap",
    peer: "Effect",
    how: "Effect.forEach(items, Effect.succeed, { concurrency: 100 })",
    unit: "s",
    run: async () => {
      const { Effect } = await effect();
      return timed(N, async (n) => {
        const items = Array.from({ length: n }, (_, i) => i);
        const out: number[] = await Effect.runPromise(
          Effect.forEach(items, (i: number) => Effect.succeed(i), { concurrency: CONCURRENCY }),
        );
        let total = 0;
        for (const x of out) total += x;
        check(out.length === n && total === n * (n - 1) / 2, "every item mapped in order");
      });
    },
  },
];

const caseName = (c: Case): string => `${c.workload}/${c.peer.toLowerCase()}`;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const decoder = new TextDecoder();

async function measure(c: Case): Promise<number> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 300_000);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-lock",
        "--v8-flags=--expose-gc",
        import.meta.filename!,
        "--child",
        caseName(c),
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
      signal: controller.signal,
    }).output();
    const last = decoder.decode(out.stdout).trim().split("\n").at(-1) ?? "";
    if (!out.success || !last.startsWith("{")) {
      const err = decoder.decode(out.stderr).trim().split("\n").slice(-3).join(" / ");
      throw new Error(`${caseName(c)} failed (code ${out.code}): ${err}`);
    }
    return Number(JSON.parse(last).value);
  } finally {
    clearTimeout(timer);
  }
}

async function main(args: string[]): Promise<void> {
  if (args[0] === "--child") {
    const c = CASES.find((x) => caseName(x) === args[1]);
    if (c === undefined) throw new TypeError(`Unknown case: ${args[1]}`);
    console.log(JSON.stringify({ case: caseName(c), value: await c.run() }));
    Deno.exit(0); // a peer's leftover timers must not keep the process alive
  }
  let runs = 3;
  let json = false;
  const only: string[] = [];
  for (const arg of args) {
    if (arg === "--json") json = true;
    else if (arg.startsWith("--runs=")) {
      runs = Number(arg.slice("--runs=".length));
      if (!Number.isInteger(runs) || runs < 1) {
        throw new RangeError(`'--runs' must be a positive integer: current value is ${arg}`);
      }
    } else if (CASES.some((c) => caseName(c) === arg || c.workload === arg)) only.push(arg);
    else {
      throw new TypeError(
        `Unknown case or option: ${arg} (cases: ${CASES.map(caseName).join(", ")})`,
      );
    }
  }
  const chosen = CASES.filter((c) =>
    only.length === 0 || only.includes(caseName(c)) || only.includes(c.workload)
  );
  const samples = new Map<Case, number[]>(chosen.map((c) => [c, []]));
  const errors = new Map<Case, string>();
  for (let r = 0; r < runs; r++) {
    for (const c of chosen) {
      if (errors.has(c)) continue;
      try {
        const v = await measure(c);
        samples.get(c)!.push(v);
        console.error(`run ${r + 1}/${runs} ${caseName(c)}: ${v}`);
      } catch (error) {
        errors.set(c, (error as Error).message);
        console.error(`run ${r + 1}/${runs} ${caseName(c)}: FAILED ${(error as Error).message}`);
      }
    }
  }
  const results = chosen.map((c) => {
    const values = samples.get(c)!;
    return {
      workload: c.workload,
      peer: c.peer,
      version: c.peer === "Effect" ? PACKAGES.effect : PACKAGES.effection,
      how: c.how,
      unit: c.unit,
      values,
      median: values.length > 0 ? median(values) : undefined,
      error: errors.get(c),
    };
  });
  if (json) {
    console.log(JSON.stringify({ runs, packages: PACKAGES, results }));
    return;
  }
  console.log(`| case | peer | median | runs | how |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  for (const r of results) {
    const m = r.median === undefined
      ? `failed: ${r.error}`
      : r.unit === "s"
      ? `${(r.median * 1000).toFixed(1)} ms`
      : `${Math.round(r.median)} B`;
    console.log(
      `| ${r.workload} | ${r.peer} ${r.version} | ${m} | ${r.values.length} | ${r.how} |`,
    );
  }
}

if (import.meta.main) await main(Deno.args);
