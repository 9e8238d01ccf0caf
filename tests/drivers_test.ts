/**
 * Real database drivers on real servers obey kill() and Timeout once `monkey.patchAll()` is
 * on: `pg`, `postgres` (postgres.js), `ioredis` and `redis` (node-redis) against PostgreSQL and
 * Redis started on loopback by tests/_db_servers.ts. Each driver is tried with a client (or
 * pool) made outside every greenlet and shared, and with a client made inside the greenlet.
 *
 * What each test checks, and why it can fail: a lost kill lets the code after the call run
 * and the greenlet end with the call's value; a lost Timeout returns the driver's result (or
 * its "connection terminated" error) instead of the timeout's; a server still working is seen
 * in `pg_stat_activity` / `blocked_clients`; a leaked connection is seen in the server's count
 * of clients (Deno's sanitizers do not see `node:net` sockets).
 */
import "./_deadline.ts";
import assert from "node:assert/strict";
import pg from "pg";
import postgres from "postgres";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { getCurrent, type Greenlet, GreenletExit, joinAll, spawn } from "../greenlet.ts";
import { sleep } from "../hub.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { patchAll, unpatchAll } from "../monkey.ts";
import { captureReports, firstOf } from "./_helpers.ts";
import { startPostgres, startRedis, waitFor } from "./_db_servers.ts";

const [pgServer, redisServer] = await Promise.all([startPostgres(), startRedis()]);
await pgServer.sql("create table gevent_rows (id int, note text)");

/** Server-side waits last this long (seconds) unless cut off: far longer than any bound. */
const SLOW = 10;
/** A kill or timeout that works ends well within this; a lost one takes `SLOW` seconds. */
const PROMPT = 2000;

/** One way of talking to one server, as unaware code does. */
interface Client {
  /** A call the server works on for `SLOW` seconds. */
  slow(): Promise<unknown>;
  /** A call that returns `n` through the server. */
  echo(n: number): Promise<number>;
  /**
   * A call the server works on for `ms` milliseconds, then returns `n`. (On Redis, where a
   * blocking command holds up every caller of a shared connection, only every fourth call
   * waits.)
   */
  echoAfter(n: number, ms: number): Promise<number>;
  close(): Promise<void>;
}

interface Driver {
  name: string;
  /** Makes a client (a pool for the PostgreSQL drivers). */
  open(): Promise<Client>;
  /** How many slow calls the server is working on. */
  busy(): Promise<number>;
  /** How many client connections the server has (not counting the fixture's own). */
  connections(): Promise<number>;
}

const pgBusy = () => pgServer.active(`pg_sleep(${SLOW})`);
const redisBusy = () => redisServer.blocked();

const drivers: Driver[] = [
  {
    name: "pg",
    busy: pgBusy,
    connections: () => pgServer.connections(),
    open() {
      const pool = new pg.Pool({ connectionString: pgServer.url, max: 5 });
      return Promise.resolve({
        slow: () => pool.query(`select pg_sleep(${SLOW})`),
        echo: async (n) => (await pool.query("select $1::int as n", [n])).rows[0].n,
        echoAfter: async (n, ms) =>
          (await pool.query("select $1::int as n, pg_sleep($2)", [n, ms / 1000])).rows[0].n,
        close: () => pool.end(),
      });
    },
  },
  {
    name: "postgres",
    busy: pgBusy,
    connections: () => pgServer.connections(),
    open() {
      const sql = postgres(pgServer.url, { max: 5, onnotice: () => {} });
      return Promise.resolve({
        slow: () => sql.unsafe(`select pg_sleep(${SLOW})`),
        echo: async (n) => (await sql`select ${n}::int as n`)[0].n,
        echoAfter: async (n, ms) => (await sql`select ${n}::int as n, pg_sleep(${ms / 1000})`)[0].n,
        close: () => sql.end(),
      });
    },
  },
  {
    name: "ioredis",
    busy: redisBusy,
    connections: () => redisServer.clients(),
    async open() {
      const redis = new Redis(redisServer.url);
      // Commands given before the connection is ready wait in ioredis's own queue and are
      // sent from its callbacks, on nobody's behalf: see the README.
      await redis.ping();
      return {
        slow: () => redis.blpop("gevent:empty", SLOW),
        echo: async (n) => Number(await redis.echo(String(n))),
        echoAfter: async (n, ms) => {
          if (n % 4 === 0) await redis.blpop(`gevent:empty:${n}`, ms / 1000);
          return Number(await redis.echo(String(n)));
        },
        close: async () => void await redis.quit(),
      };
    },
  },
  {
    name: "redis",
    busy: redisBusy,
    connections: () => redisServer.clients(),
    async open() {
      const client = createClient({ url: redisServer.url });
      client.on("error", () => {});
      await client.connect();
      return {
        slow: () => client.blPop("gevent:empty", SLOW),
        echo: async (n) => Number(await client.echo(String(n))),
        echoAfter: async (n, ms) => {
          if (n % 4 === 0) await client.blPop(`gevent:empty:${n}`, ms / 1000);
          return Number(await client.echo(String(n)));
        },
        close: async () => void await client.quit(),
      };
    },
  },
];

/** Patches everything for the duration of one test; `using` restores the globals. */
function patched(): Disposable {
  patchAll();
  return { [Symbol.dispose]: unpatchAll };
}

async function idle(d: Driver): Promise<void> {
  await waitFor(async () => await d.busy() === 0, {
    timeout: 1000,
    message: `${d.name}: the server to stop working on the interrupted call`,
  });
}

async function noConnections(d: Driver): Promise<void> {
  await waitFor(async () => await d.connections() === 0, {
    timeout: 2000,
    message: `${d.name}: every connection to be closed`,
  });
}

/** Runs `slow` in a greenlet and kills it once the server works on it; checks the kill. */
async function killDuringSlowCall(d: Driver, slow: () => Promise<unknown>): Promise<void> {
  let after = false;
  let finallyRan = false;
  const g = spawn(async () => {
    try {
      await slow();
      after = true;
    } finally {
      finallyRan = true;
    }
  });
  await waitFor(async () => await d.busy() === 1, { timeout: 5000, message: "the slow call" });
  // Order: the kill ends before a timer due at PROMPT (the slow call runs far longer).
  const reports = await captureReports(async () => {
    assert.notEqual(await firstOf(g.kill(), PROMPT), "timer", "kill() waited for the slow call");
  });
  assert.equal(g.dead, true);
  assert.equal(after, false, "the code after the call ran");
  assert.equal(finallyRan, true, "the finally block did not run");
  assert.ok(g.value instanceof GreenletExit, `ended with ${String(g.exception ?? g.value)}`);
  assert.equal(reports, "", "a kill was reported as a failure");
  await idle(d);
}

for (const d of drivers) {
  Deno.test(`${d.name}: a shared client obeys withTimeout and kill()`, async (t) => {
    using _ = patched();
    const client = await d.open(); // outside every greenlet, shared by all of them
    try {
      await t.step("withTimeout(200) returns timeoutValue; the server stops", async () => {
        // Order: after a timer due at half the deadline, before one due at PROMPT.
        let halfway = false;
        const timer = setTimeout(() => halfway = true, 100);
        const value = await firstOf(
          spawn(() => withTimeout(200, () => client.slow(), { timeoutValue: "too slow" })).get(),
          PROMPT,
        );
        clearTimeout(timer);
        assert.equal(value, "too slow");
        assert.equal(halfway, true, "withTimeout returned before its deadline");
        await idle(d);
      });
      await t.step("withTimeout(200) without a value rejects with its Timeout", async () => {
        const outcome = await spawn(() => withTimeout(200, () => client.slow()).catch((e) => e))
          .get();
        assert.ok(outcome instanceof Timeout, `rejected with ${outcome}`);
        await idle(d);
      });
      await t.step("withTimeout at top level, outside any greenlet", async () => {
        const outcome = await withTimeout(200, () => client.slow()).catch((e) => e);
        assert.ok(outcome instanceof Timeout, `rejected with ${outcome}`);
        await idle(d);
      });
      await t.step("kill() ends the greenlet as killed at once", async () => {
        await killDuringSlowCall(d, () => client.slow());
      });
      await t.step("the shared client serves the next calls correctly", async () => {
        const values = await Promise.all([1, 2, 3].map((n) => spawn(() => client.echo(n)).get()));
        assert.deepEqual(values, [1, 2, 3]);
      });
      await t.step("a kill leaves other greenlets' calls alone", async () => {
        const victim = spawn(() => client.slow());
        const bystanders = [1, 2, 3].map((n) => spawn(() => client.echoAfter(n, 300)));
        await waitFor(async () => await d.busy() >= 1, { timeout: 5000 });
        await victim.kill();
        assert.ok(victim.value instanceof GreenletExit);
        assert.deepEqual(await Promise.all(bystanders.map((g) => g.get())), [1, 2, 3]);
        await idle(d);
      });
    } finally {
      await client.close();
    }
    await noConnections(d);
  });

  Deno.test(`${d.name}: a client made inside the greenlet obeys kill and Timeout`, async (t) => {
    using _ = patched();
    const slowInside = async () => {
      const client = await d.open();
      try {
        return await client.slow();
      } finally {
        await client.close();
      }
    };
    await t.step("kill()", async () => {
      await killDuringSlowCall(d, slowInside);
      await noConnections(d);
    });
    await t.step("withTimeout(200)", async () => {
      const value = await spawn(() => withTimeout(200, slowInside, { timeoutValue: "late" })).get();
      assert.equal(value, "late");
      await idle(d);
      await noConnections(d);
    });
  });

  Deno.test(`${d.name}: 200 greenlets, random kills and timeouts, one shared client`, async () => {
    using _ = patched();
    const client = await d.open();
    const TIMED_OUT = "timed out";
    const outcomes: { g: Greenlet<unknown>; n: number; fate: "run" | "kill" | "timeout" }[] = [];
    try {
      const reports = await captureReports(async () => {
        for (let n = 0; n < 200; n++) {
          const fate = (["run", "kill", "timeout"] as const)[n % 3];
          const work = () => client.echoAfter(n, 5 + (n * 7919) % 60);
          const g = fate === "timeout"
            ? spawn(() => withTimeout((n * 31) % 70, work, { timeoutValue: TIMED_OUT }))
            : spawn(work);
          outcomes.push({ g, n, fate });
          if (fate === "kill") {
            spawn(async () => {
              await sleep((n * 13) % 80);
              await g.kill();
            });
          }
        }
        const done = await joinAll(outcomes.map((o) => o.g), { timeout: 20_000 });
        assert.equal(done.length, outcomes.length, "some greenlets hung");
      });
      for (const { g, n, fate } of outcomes) {
        const what = `greenlet ${n} (${fate}): ${String(g.exception ?? g.value)}`;
        assert.equal(g.exception, undefined, what);
        if (fate === "run") assert.equal(g.value, n, what);
        else if (fate === "timeout") assert.ok(g.value === n || g.value === TIMED_OUT, what);
        else assert.ok(g.value === n || g.value instanceof GreenletExit, what);
      }
      assert.equal(reports, "");
      assert.equal(await spawn(() => client.echo(7)).get(), 7);
    } finally {
      await client.close();
    }
    await noConnections(d);
  });
}

for (const d of drivers.slice(0, 2)) {
  Deno.test(`${d.name}: a greenlet killed inside a transaction commits nothing`, async () => {
    using _ = patched();
    await pgServer.sql("truncate gevent_rows");
    let transaction: () => Promise<unknown>;
    let nextCaller: () => Promise<unknown>;
    let close: () => Promise<void>;
    if (d.name === "pg") {
      // One connection: the next caller gets the very connection the killed greenlet used.
      const pool = new pg.Pool({ connectionString: pgServer.url, max: 1 });
      transaction = async () => {
        const c = await pool.connect();
        try { // no ROLLBACK on error: the connection goes back to the pool as it is
          await c.query("BEGIN");
          await c.query("INSERT INTO gevent_rows VALUES (1, 'killed')");
          await c.query(`SELECT pg_sleep(${SLOW})`);
          await c.query("COMMIT");
        } finally {
          c.release();
        }
      };
      nextCaller = () => pool.query("INSERT INTO gevent_rows VALUES (2, 'next')");
      close = () => pool.end();
    } else {
      const sql = postgres(pgServer.url, { max: 1, onnotice: () => {} });
      transaction = () =>
        sql.begin(async (tx) => {
          await tx`INSERT INTO gevent_rows VALUES (1, 'killed')`;
          await tx.unsafe(`SELECT pg_sleep(${SLOW})`);
        });
      nextCaller = () => sql`INSERT INTO gevent_rows VALUES (2, 'next')`;
      close = () => sql.end();
    }
    try {
      await killDuringSlowCall(d, transaction);
      // The next caller's work is committed on its own, outside the killed transaction.
      await spawn(nextCaller).get();
      assert.equal(await pgServer.sql("select string_agg(note, ',') from gevent_rows"), "next");
    } finally {
      await close();
    }
    await noConnections(d);
  });
}

Deno.test("node-redis: a greenlet killed in connect()'s retry loop ends", async () => {
  using _ = patched();
  const nothing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = nothing.addr.port;
  nothing.close(); // connections are refused: the driver retries for ever
  let connecting: Promise<unknown> | undefined;
  const g = spawn(async () => {
    const client = createClient({
      url: `redis://127.0.0.1:${port}`,
      // The recommended strategy: stop retrying once the greenlet that connects is dead.
      socket: { reconnectStrategy: (_retries, cause) => getCurrent()?.dead ? cause : 20 },
    });
    client.on("error", () => {});
    connecting = client.connect();
    await connecting;
  });
  await waitFor(() => connecting !== undefined, { timeout: 1000 });
  await sleep(60); // a few refused attempts
  assert.notEqual(await firstOf(g.kill(), PROMPT), "timer", "kill() waited for the retries");
  assert.ok(g.dead && g.value instanceof GreenletExit, String(g.exception ?? g.value));
  // The driver's own loop stops at its next attempt: connect() rejects.
  await assert.rejects(connecting!);
});

Deno.test("drivers outside greenlets and unpatched behave as before", async () => {
  const pool = new pg.Pool({ connectionString: pgServer.url, max: 1 });
  const redis = new Redis(redisServer.url);
  try {
    // No greenlet: nothing is tracked, a slow call is not cut off by anything.
    using _ = patched();
    assert.equal(getCurrent(), undefined);
    const [rows, popped] = await Promise.all([
      pool.query("select 1 as one, pg_sleep(0.05)"),
      redis.blpop("gevent:empty", 0.05),
    ]);
    assert.equal(rows.rows[0].one, 1);
    assert.equal(popped, null);
  } finally {
    await pool.end();
    await redis.quit();
  }
  // Unpatched, inside a greenlet: the kill cannot reach the driver; the greenlet is declared
  // dead after a short grace and the call finishes unobserved.
  const sql = postgres(pgServer.url, { max: 1 });
  try {
    let after = false;
    const g = spawn(async () => {
      await sql`select pg_sleep(0.3)`;
      after = true;
    });
    await waitFor(async () => await pgServer.active("pg_sleep(0.3)") === 1, { timeout: 5000 });
    await g.kill();
    assert.ok(g.dead && g.value instanceof GreenletExit);
    assert.equal(await pgServer.active("pg_sleep(0.3)"), 1); // the server still works on it
    await idle({ ...drivers[1], busy: () => pgServer.active("pg_sleep(0.3)") });
    assert.equal(after, true); // it finished unobserved
  } finally {
    await sql.end();
  }
});

Deno.test("stop the database servers", async () => {
  await Promise.all([pgServer.stop(), redisServer.stop()]);
});
