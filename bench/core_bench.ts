/**
 * `deno bench` for the core: greenlets, `sleep(0)`, `Event`, `Timeout` and `AsyncResult`, each
 * group against a raw-promise baseline.
 *
 * The sizes are a tenth of the (10,000 greenlets, 100,000 switches, 10,000 round trips)
 * so that `deno task bench` stays short; `bench/compare.ts` runs the full sizes side by side
 * with gevent.
 *
 * ```sh
 * deno task bench
 * ```
 *
 * @module
 */

import { AsyncResult, Event, type Greenlet, joinAll, sleep, spawn, Timeout } from "../mod.ts";

const SPAWN_N = 10_000;
const SLEEP0_WORKERS = 100;
const SLEEP0_PER_WORKER = 1_000;
const PINGPONG_N = 10_000;
const INNER = 1_000;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Benchmark check failed: ${what}`);
}

// deno-lint-ignore require-await -- the point is an async call, as in the raw baseline
const trivial = async (): Promise<number> => 1;
const noop = (): void => {};

// ------------------------------------------------------------------------- spawn + joinAll

Deno.bench({
  name: `raw Promise.all over ${SPAWN_N.toLocaleString("en-US")} async calls`,
  group: "spawn_join",
  baseline: true,
  n: 100,
  warmup: 10,
  async fn() {
    const ps = new Array<Promise<number>>(SPAWN_N);
    for (let i = 0; i < SPAWN_N; i++) ps[i] = trivial();
    const values = await Promise.all(ps);
    check(values[SPAWN_N - 1] === 1, "every call returned");
  },
});

Deno.bench({
  name: `spawn + joinAll of ${SPAWN_N.toLocaleString("en-US")} trivial greenlets`,
  group: "spawn_join",
  n: 100,
  warmup: 10,
  async fn() {
    const gs = new Array<Greenlet<number>>(SPAWN_N);
    for (let i = 0; i < SPAWN_N; i++) gs[i] = spawn(trivial);
    await joinAll(gs);
    check(gs[SPAWN_N - 1].value === 1, "every greenlet returned");
  },
});

// ------------------------------------------------------------------------- sleep(0)

const SWITCHES = (SLEEP0_WORKERS * SLEEP0_PER_WORKER).toLocaleString("en-US");

Deno.bench({
  name: `raw: ${SWITCHES} \`await null\` over ${SLEEP0_WORKERS} async loops`,
  group: "sleep0",
  baseline: true,
  n: 100,
  warmup: 10,
  async fn() {
    let count = 0;
    const worker = async () => {
      for (let i = 0; i < SLEEP0_PER_WORKER; i++) {
        await null;
        count++;
      }
    };
    const ps = [];
    for (let w = 0; w < SLEEP0_WORKERS; w++) ps.push(worker());
    await Promise.all(ps);
    check(count === SLEEP0_WORKERS * SLEEP0_PER_WORKER, "every yield returned");
  },
});

Deno.bench({
  name: `${SWITCHES} sleep(0) over ${SLEEP0_WORKERS} greenlets`,
  group: "sleep0",
  n: 100,
  warmup: 10,
  async fn() {
    let count = 0;
    const worker = async () => {
      for (let i = 0; i < SLEEP0_PER_WORKER; i++) {
        await sleep(0);
        count++;
      }
    };
    const gs = [];
    for (let w = 0; w < SLEEP0_WORKERS; w++) gs.push(spawn(worker));
    await joinAll(gs);
    check(count === SLEEP0_WORKERS * SLEEP0_PER_WORKER, "every sleep(0) returned");
  },
});

// ------------------------------------------------------------------------- Event ping-pong

const TRIPS = PINGPONG_N.toLocaleString("en-US");

Deno.bench({
  name: `raw promise ping-pong, ${TRIPS} round trips`,
  group: "event_pingpong",
  baseline: true,
  n: 100,
  warmup: 10,
  async fn() {
    let toB = Promise.withResolvers<void>();
    let toA = Promise.withResolvers<void>();
    const a = async () => {
      for (let i = 0; i < PINGPONG_N; i++) {
        toA = Promise.withResolvers<void>();
        toB.resolve();
        await toA.promise;
      }
    };
    const b = async () => {
      for (let i = 0; i < PINGPONG_N; i++) {
        await toB.promise;
        toB = Promise.withResolvers<void>();
        toA.resolve();
      }
    };
    await Promise.all([b(), a()]);
  },
});

Deno.bench({
  name: `Event ping-pong between two greenlets, ${TRIPS} round trips`,
  group: "event_pingpong",
  n: 100,
  warmup: 10,
  async fn() {
    const ping = new Event();
    const pong = new Event();
    const a = async () => {
      for (let i = 0; i < PINGPONG_N; i++) {
        pong.clear();
        ping.set();
        await pong.wait();
      }
    };
    const b = async () => {
      for (let i = 0; i < PINGPONG_N; i++) {
        await ping.wait();
        ping.clear();
        pong.set();
      }
    };
    await joinAll([spawn(b), spawn(a)], { raiseError: true });
  },
});

// ------------------------------------------------------------------------- Timeout

Deno.bench({
  name: `raw setTimeout + clearTimeout, x${INNER}`,
  group: "timeout",
  baseline: true,
  n: 200,
  warmup: 20,
  fn() {
    for (let i = 0; i < INNER; i++) clearTimeout(setTimeout(noop, 1000));
  },
});

Deno.bench({
  name: `new Timeout(1000).start() + cancel(), x${INNER}`,
  group: "timeout",
  n: 200,
  warmup: 20,
  fn() {
    for (let i = 0; i < INNER; i++) new Timeout(1000).start().cancel();
  },
});

Deno.bench({
  name: `using Timeout.start(1000) (disposed at scope end), x${INNER}`,
  group: "timeout",
  n: 200,
  warmup: 20,
  fn() {
    for (let i = 0; i < INNER; i++) {
      using _t = Timeout.start(1000);
    }
  },
});

// ------------------------------------------------------------------------- AsyncResult

Deno.bench({
  name: `raw Promise.withResolvers: resolve, then await, x${INNER}`,
  group: "async_result",
  baseline: true,
  n: 200,
  warmup: 20,
  async fn() {
    let sum = 0;
    for (let i = 0; i < INNER; i++) {
      const d = Promise.withResolvers<number>();
      d.resolve(i);
      sum += await d.promise;
    }
    check(sum === (INNER * (INNER - 1)) / 2, "every value arrived");
  },
});

Deno.bench({
  name: `AsyncResult: set(), then await get(), x${INNER}`,
  group: "async_result",
  n: 200,
  warmup: 20,
  async fn() {
    let sum = 0;
    for (let i = 0; i < INNER; i++) {
      const r = new AsyncResult<number>();
      r.set(i);
      sum += await r.get();
    }
    check(sum === (INNER * (INNER - 1)) / 2, "every value arrived");
  },
});

Deno.bench({
  name: `AsyncResult: get() blocks, then set(), x${INNER}`,
  group: "async_result",
  n: 200,
  warmup: 20,
  async fn() {
    let sum = 0;
    for (let i = 0; i < INNER; i++) {
      const r = new AsyncResult<number>();
      const p = r.get();
      r.set(i);
      sum += await p;
    }
    check(sum === (INNER * (INNER - 1)) / 2, "every value arrived");
  },
});
