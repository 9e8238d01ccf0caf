/**
 * npm database drivers with and without `monkey.patchAll()`, in one process, against real
 * servers that this script starts on loopback (tests/_db_servers.ts): `pg` and `postgres`
 * (postgres.js) on PostgreSQL, `ioredis` and `redis` (node-redis) on Redis.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-env --allow-sys --allow-net=127.0.0.1 \
 *   bench/drivers_compare.ts [--rounds=15] [--ops=2000] [--reps=15] [--drivers=pg,redis] [--json]
 * ```
 *
 * (also `deno task bench:drivers`). Two tables:
 *
 * 1. What the `node:net` patches cost: `--ops` sequential `SELECT 1` (`pg`: `pool.query`,
 *    `postgres`: a tagged template) or `GET k` in one greenlet, on a client made outside
 *    greenlets. Patched and unpatched batches alternate over `--rounds` rounds (the order
 *    flips every round), after one warm-up batch of each; every batch gets a fresh client,
 *    made and warmed up (its connection opened) at top level in the mode of the batch, because
 *    a socket written to while patched stays tracked. The table shows the median batch (and
 *    the fastest and slowest), the ratio patched / unpatched of the medians (target: at most
 *    1.05), the median of the rounds' own ratios ("paired": the two batches of a round run
 *    back to back, so a burst of load from other processes hits both) and the ratio of the
 *    medians in CPU time of this process (the servers' CPU is not counted). On a busy 2-core
 *    machine a batch varies by 10-30% from one round to the next: compare the ratios of a few
 *    runs, or raise `--rounds`.
 * 2. What a kill or a timeout takes, patched, on one client shared by all greenlets, made at
 *    top level: a greenlet in a slow call (`select pg_sleep(10)`, `BLPOP k 10`) is killed
 *    once the server works on it (`--reps` times): the time until `kill()` resolves (the
 *    greenlet is dead) and until the server is no longer working on the call; then
 *    `withTimeout(200, slow, { timeoutValue })` in a greenlet (`--reps` times): the time until
 *    the greenlet returns the value and until the server is free, from the spawn. Medians,
 *    and the maximum in parentheses.
 *
 * "Server free" is seen by polling every 2 ms on a monitor connection of our own (made before
 * patching, outside greenlets): the query of the fixture's `active()` on PostgreSQL,
 * `blocked_clients` of `INFO clients` on Redis. (The fixture's own `active()` / `blocked()`
 * start `psql` / `redis-cli` for every call, tens of milliseconds each; they only check, at
 * the end of each driver, that nothing was left running.) The time taken is when the reply
 * saying 0 arrived: it is late by up to one poll interval and one round trip.
 *
 * Two things seen on a loaded 2-core machine, counted under the tables rather than measured:
 * PostgreSQL 15 (the version installed here) signals a cancelled backend twice (`signal_child`:
 * its pid, then its process group), and a cancel can thus also end the next statement on that
 * connection (seen: 60 statements ended by 58 cancel requests), so a slow call may fail before
 * its kill or deadline; it is tried again (at most 2 x `--reps` tries). And a cancel that
 * takes more than the patch's grace (30 ms) makes it destroy the connection instead, after
 * which postgres.js 3.4.9 never settles `sql.end()` (porsager/postgres#1097): it is closed
 * with `sql.end({ timeout: 1 })`, and every close is bounded.
 *
 * `--json` prints one JSON object instead of the tables (what `bench/report.ts` reads; the
 * tables go to stderr): both tables' medians, ratios and samples, and the anomalies.
 *
 * @module
 */

import process from "node:process";
import pg from "pg";
import postgres from "postgres";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { type Greenlet, GreenletExit, spawn } from "../greenlet.ts";
import { withTimeout } from "../timeout.ts";
import { patchAll, unpatchAll } from "../monkey.ts";
import { startPostgres, startRedis } from "../tests/_db_servers.ts";

function option(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

const ROUNDS = option("rounds", 15);
const OPS = option("ops", 2000);
const REPS = option("reps", 15);
/** `--drivers=pg,redis`: only these (default: all four). */
const ONLY = Deno.args.find((a) => a.startsWith("--drivers="))?.slice(10).split(",");
const JSON_MODE = Deno.args.includes("--json");
/** The tables go to stdout, or to stderr when `--json` is given. */
const say = JSON_MODE ? console.error : console.log;
/** Seconds a slow call lasts on the server unless cut off. */
const SLOW = 10;
/** The `withTimeout` deadline, in milliseconds. */
const DEADLINE = 200;
/** Milliseconds between two polls of the monitor connection. */
const POLL = 2;
/** A kill or timeout that works ends well within this (ms); a lost one takes `SLOW` s. */
const PROMPT = 3000;

const TIMED_OUT = "timed out";

/** One way of talking to one server, as unaware code does. */
interface Client {
  /** The quick call of the overhead table: `SELECT 1` or `GET k`. */
  op(): Promise<unknown>;
  /** A call the server works on for `SLOW` seconds. */
  slow(): Promise<unknown>;
  close(): Promise<void>;
}

interface Driver {
  name: string;
  /** What `op()` and `slow()` send, for the tables. */
  opText: string;
  slowText: string;
  /** Makes a client (a pool for `pg`) and opens its connection, at top level. */
  open(): Promise<Client>;
  /** How many slow calls the server works on, through the monitor connection. */
  busy(): Promise<number>;
  /** The same through the fixture (a `psql` or `redis-cli` process). */
  busyChecked(): Promise<number>;
}

const [pgServer, redisServer] = await Promise.all([startPostgres(), startRedis()]);

// The monitor connections: made unpatched, outside every greenlet, used only at top level.
const pgMonitor = new pg.Client({ connectionString: pgServer.url });
await pgMonitor.connect();
const redisMonitor = new Redis(redisServer.url);
await redisMonitor.set("k", "v");

const slowPattern = `pg_sleep(${SLOW})`;
const pgBusy = async (): Promise<number> => {
  const r = await pgMonitor.query(
    "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' " +
      "and pid <> pg_backend_pid() and state = 'active' and strpos(query, $1) > 0",
    [slowPattern],
  );
  return r.rows[0].n;
};
const redisBusy = async (): Promise<number> => {
  const info = await redisMonitor.info("clients");
  const match = /^blocked_clients:(\d+)/m.exec(info);
  if (!match) throw new Error(`no blocked_clients in INFO clients:\n${info}`);
  return Number(match[1]);
};

const allDrivers: Driver[] = [
  {
    name: "pg",
    opText: "SELECT 1",
    slowText: `pg_sleep(${SLOW})`,
    busy: pgBusy,
    busyChecked: () => pgServer.active(slowPattern),
    async open() {
      const pool = new pg.Pool({ connectionString: pgServer.url, max: 5 });
      await pool.query("SELECT 1");
      return {
        op: () => pool.query("SELECT 1"),
        slow: () => pool.query(`select pg_sleep(${SLOW})`),
        close: () => pool.end(),
      };
    },
  },
  {
    name: "postgres",
    opText: "SELECT 1",
    slowText: `pg_sleep(${SLOW})`,
    busy: pgBusy,
    busyChecked: () => pgServer.active(slowPattern),
    async open() {
      const sql = postgres(pgServer.url, { max: 5, onnotice: () => {} });
      await sql`SELECT 1`;
      return {
        op: () => sql`SELECT 1`,
        slow: () => sql.unsafe(`select pg_sleep(${SLOW})`),
        // A bound: postgres.js 3.4.9's end() never settles once a connection was lost
        // mid-query (porsager/postgres#1097), as when a kill's cancel is late (see above).
        close: () => sql.end({ timeout: 1 }),
      };
    },
  },
  {
    name: "ioredis",
    opText: "GET k",
    slowText: `BLPOP ${SLOW}`,
    busy: redisBusy,
    busyChecked: () => redisServer.blocked(),
    async open() {
      const redis = new Redis(redisServer.url);
      await redis.get("k");
      return {
        op: () => redis.get("k"),
        slow: () => redis.blpop("gevent:empty", SLOW),
        close: async () => void await redis.quit(),
      };
    },
  },
  {
    name: "redis",
    opText: "GET k",
    slowText: `BLPOP ${SLOW}`,
    busy: redisBusy,
    busyChecked: () => redisServer.blocked(),
    async open() {
      const client = createClient({ url: redisServer.url });
      client.on("error", () => {});
      await client.connect();
      await client.get("k");
      return {
        op: () => client.get("k"),
        slow: () => client.blPop("gevent:empty", SLOW),
        close: async () => void await client.quit(),
      };
    },
  },
];

const drivers = allDrivers.filter((d) => ONLY === undefined || ONLY.includes(d.name));
if (drivers.length === 0) throw new Error(`--drivers: none of ${allDrivers.map((d) => d.name)}`);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const min = (xs: number[]): number => Math.min(...xs);
const max = (xs: number[]): number => Math.max(...xs);
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Anything that did not go as it should, and how many times; printed under the tables. */
const anomalies = new Map<string, number>();

// ---------------------------------------------------------------------------------------------
// 1. Overhead

/** Wall-clock and CPU (this process: user + system) milliseconds of one batch. */
interface Sample {
  wall: number;
  cpu: number;
}

/** One batch: a fresh client made at top level, `OPS` calls in one greenlet, closed. */
async function batch(d: Driver, patched: boolean): Promise<Sample> {
  if (patched) patchAll();
  try {
    const client = await d.open();
    try {
      const g: Greenlet<Sample> = spawn(async () => {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < OPS; i++) await client.op();
        const wall = performance.now() - t0;
        const c = process.cpuUsage(c0);
        return { wall, cpu: (c.user + c.system) / 1000 };
      });
      return await g.get() as Sample;
    } finally {
      await closeClient(d, client);
    }
  } finally {
    if (patched) unpatchAll();
  }
}

interface OverheadRow {
  d: Driver;
  off: Sample[];
  on: Sample[];
}

async function overhead(d: Driver): Promise<OverheadRow> {
  const off: Sample[] = [];
  const on: Sample[] = [];
  await batch(d, false);
  await batch(d, true);
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which goes first, so neither always runs on a warmer (or dirtier) heap.
    if (r % 2 === 0) off.push(await batch(d, false));
    on.push(await batch(d, true));
    if (r % 2 === 1) off.push(await batch(d, false));
  }
  return { d, off, on };
}

// ---------------------------------------------------------------------------------------------
// 2. Kill and timeout

/**
 * Polls `busy` every `POLL` ms from now on; resolves with the time at which it answered 0
 * after having been busy (`wasBusy`: it already is). NaN if that has not happened by `limit`
 * or `stop.now` was set.
 */
async function freedAt(
  d: Driver,
  wasBusy: boolean,
  limit: number,
  stop = { now: false },
): Promise<number> {
  const deadline = performance.now() + limit;
  let seen = wasBusy;
  while (!stop.now) {
    const n = await d.busy();
    const t = performance.now();
    if (n > 0) seen = true;
    else if (seen) return t;
    if (t > deadline) break;
    await pause(POLL);
  }
  return NaN;
}

/** Waits until the server works on a slow call; false if `g` ended first. */
async function untilBusy(d: Driver, g: Greenlet<unknown>): Promise<boolean> {
  const deadline = performance.now() + PROMPT;
  while (await d.busy() === 0) {
    if (g.dead) return false;
    if (performance.now() > deadline) throw new Error(`${d.name}: the slow call never started`);
    await pause(POLL);
  }
  return true;
}

/** Counts `what` for `d` in the anomalies. */
function anomaly(d: Driver, what: string): void {
  anomalies.set(`${d.name}: ${what}`, (anomalies.get(`${d.name}: ${what}`) ?? 0) + 1);
}

/** `close()`, bounded: a driver that never finishes closing is an anomaly, not a hang. */
async function closeClient(d: Driver, client: Client): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => timer = setTimeout(r, PROMPT, "late"));
  const closed = client.close().then(() => "closed" as const);
  if (await Promise.race([closed, late]) === "late") anomaly(d, "close() did not settle");
  clearTimeout(timer);
}

interface KillRow {
  d: Driver;
  killDead: number[];
  killFree: number[];
  timeoutValue: number[];
  timeoutFree: number[];
}

async function killAndTimeout(d: Driver): Promise<KillRow> {
  const row: KillRow = { d, killDead: [], killFree: [], timeoutValue: [], timeoutFree: [] };
  // A slow call that fails on its own (see the module doc) is counted and tried again.
  const maxTries = 2 * REPS;
  patchAll();
  try {
    const client = await d.open(); // at top level, shared by every greenlet below
    try {
      for (let tries = 0; row.killDead.length < REPS && tries < maxTries; tries++) {
        let after = false;
        let killed = false;
        let failure: unknown;
        const g = spawn(async () => {
          try {
            await client.slow();
            after = true;
          } catch (error) {
            if (killed) throw error;
            failure = error;
          }
        });
        if (!await untilBusy(d, g)) {
          anomaly(d, `kill: the slow call failed before the kill: ${String(failure ?? g.value)}`);
          continue;
        }
        const t0 = performance.now();
        const freed = freedAt(d, true, PROMPT);
        killed = true;
        await g.kill();
        const dead = performance.now() - t0;
        const free = await freed - t0;
        if (failure !== undefined || after || !(g.value instanceof GreenletExit)) {
          anomaly(d, `kill: ended with ${String(failure ?? g.exception ?? g.value)}`);
          continue;
        }
        row.killDead.push(dead);
        row.killFree.push(free);
      }
      for (let tries = 0; row.timeoutValue.length < REPS && tries < maxTries; tries++) {
        const stop = { now: false };
        const t0 = performance.now();
        const freed = freedAt(d, false, DEADLINE + PROMPT, stop);
        const value = await spawn(() =>
          withTimeout(DEADLINE, () => client.slow(), { timeoutValue: TIMED_OUT }).catch((e) => e)
        ).get();
        const took = performance.now() - t0;
        if (value !== TIMED_OUT) {
          stop.now = true;
          await freed;
          anomaly(d, `withTimeout: returned ${String(value)} after ${took.toFixed(0)} ms`);
          continue;
        }
        row.timeoutValue.push(took);
        row.timeoutFree.push(await freed - t0);
      }
      // The shared client still works.
      await spawn(() => client.op()).get();
    } finally {
      await closeClient(d, client);
    }
  } finally {
    unpatchAll();
  }
  const left = await d.busyChecked();
  if (left !== 0) anomaly(d, `the fixture sees ${left} slow call(s) still running at the end`);
  for (const [what, xs] of Object.entries(row)) {
    if (!Array.isArray(xs)) continue;
    if (xs.length < REPS) anomaly(d, `${what}: ${xs.length} of ${REPS} measured`);
    if (xs.some(Number.isNaN)) anomaly(d, `${what}: the server was not seen free in time`);
  }
  return row;
}

// ---------------------------------------------------------------------------------------------

const started = performance.now();
const [load1] = Deno.loadavg();
say(
  `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, load ${load1.toFixed(2)}; ` +
    `${ROUNDS} rounds x ${OPS} ops, ${REPS} kills and timeouts per driver`,
);
try {
  const overheadRows: OverheadRow[] = [];
  for (const d of drivers) overheadRows.push(await overhead(d));
  const killRows: KillRow[] = [];
  for (const d of drivers) killRows.push(await killAndTimeout(d));

  if (JSON_MODE) {
    const stats = (xs: number[]) => ({ median: median(xs), min: min(xs), max: max(xs) });
    console.log(JSON.stringify({
      rounds: ROUNDS,
      ops: OPS,
      reps: REPS,
      deadline: DEADLINE,
      unit: "ms",
      overhead: overheadRows.map(({ d, off, on }) => ({
        driver: d.name,
        call: d.opText,
        unpatched: stats(off.map((s) => s.wall)),
        patched: stats(on.map((s) => s.wall)),
        ratio: median(on.map((s) => s.wall)) / median(off.map((s) => s.wall)),
        paired: median(on.map((s, r) => s.wall / off[r].wall)),
        cpuRatio: median(on.map((s) => s.cpu)) / median(off.map((s) => s.cpu)),
      })),
      kill: killRows.map((r) => ({
        driver: r.d.name,
        slowCall: r.d.slowText,
        killDead: stats(r.killDead),
        killFree: stats(r.killFree),
        timeoutValue: stats(r.timeoutValue),
        timeoutFree: stats(r.timeoutFree),
      })),
      anomalies: [...anomalies].map(([what, count]) => ({ what, count })),
    }));
  }
  const fmt = (x: number, digits = 0): string => Number.isNaN(x) ? "n/a" : x.toFixed(digits);
  const spread = (xs: number[]): string => `${fmt(median(xs))} (${fmt(min(xs))}-${fmt(max(xs))})`;
  say(
    `\n### Overhead: ${OPS} sequential calls in one greenlet, ms per batch, median (min-max)\n`,
  );
  say("| driver | call | unpatched | patched | ratio | paired | CPU ratio |");
  say("|---|---|---:|---:|---:|---:|---:|");
  for (const { d, off, on } of overheadRows) {
    const wall = median(on.map((s) => s.wall)) / median(off.map((s) => s.wall));
    const paired = median(on.map((s, r) => s.wall / off[r].wall));
    const cpu = median(on.map((s) => s.cpu)) / median(off.map((s) => s.cpu));
    say(
      `| ${d.name} | ${d.opText} | ${spread(off.map((s) => s.wall))} | ` +
        `${spread(on.map((s) => s.wall))} | ${wall.toFixed(3)} | ${paired.toFixed(3)} | ` +
        `${cpu.toFixed(3)} |`,
    );
  }
  const cell = (xs: number[]): string => `${fmt(median(xs), 1)} (${fmt(max(xs), 1)})`;
  say(
    `\n### Patched, shared client: ms, median (max) of ${REPS}\n`,
  );
  say(
    `| driver | slow call | kill → dead | kill → server free | withTimeout(${DEADLINE}) → value ` +
      "| withTimeout → server free |",
  );
  say("|---|---|---:|---:|---:|---:|");
  for (const r of killRows) {
    say(
      `| ${r.d.name} | ${r.d.slowText} | ${cell(r.killDead)} | ${cell(r.killFree)} | ` +
        `${cell(r.timeoutValue)} | ${cell(r.timeoutFree)} |`,
    );
  }
  say(
    anomalies.size === 0
      ? "\nNo anomalies."
      : `\nAnomalies:\n${[...anomalies].map(([what, n]) => `- ${what} (x${n})`).join("\n")}`,
  );
} finally {
  await pgMonitor.end();
  await redisMonitor.quit();
  await Promise.all([pgServer.stop(), redisServer.stop()]);
  say(`Total ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
