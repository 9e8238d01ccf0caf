/**
 * The database server fixture (tests/_db_servers.ts): real PostgreSQL and Redis servers start
 * on free loopback ports, their connection counters follow real clients, and `stop()` leaves
 * the port refusing connections. Runs with the test sanitizers on, with servers started both
 * inside a test and with top-level `await`.
 */
import "./_deadline.ts";
import assert from "node:assert/strict";
import {
  type PgServer,
  type RedisServer,
  startPostgres,
  startRedis,
  waitFor,
} from "./_db_servers.ts";

// The other supported pattern: servers started once per module with top-level `await` (here
// both at once) and stopped by the last test of the file.
const [earlyPg, earlyRedis] = await Promise.all([startPostgres(), startRedis()]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads from `conn` until `done(bytes so far)` is true; throws at EOF. */
async function readUntil(
  conn: Deno.Conn,
  done: (bytes: Uint8Array) => boolean,
): Promise<Uint8Array> {
  let bytes = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  while (!done(bytes)) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`EOF after ${JSON.stringify(decoder.decode(bytes))}`);
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(buffer.subarray(0, n), bytes.length);
    bytes = next;
  }
  return bytes;
}

/** A PostgreSQL v3 StartupMessage. */
function startupMessage(user: string, database: string): Uint8Array {
  const body = encoder.encode(`user\0${user}\0database\0${database}\0\0`);
  const message = new Uint8Array(8 + body.length);
  const view = new DataView(message.buffer);
  view.setInt32(0, message.length);
  view.setInt32(4, 3 << 16); // protocol 3.0
  message.set(body, 8);
  return message;
}

/** Whether the backend messages in `bytes` contain ReadyForQuery ('Z'); throws on 'E'. */
function readyForQuery(bytes: Uint8Array): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + 5 <= bytes.length;) {
    const type = String.fromCharCode(bytes[at]);
    const end = at + 1 + view.getInt32(at + 1);
    if (end > bytes.length) return false;
    if (type === "E") {
      throw new Error(`ErrorResponse: ${decoder.decode(bytes.subarray(at + 5, end))}`);
    }
    if (type === "Z") return true;
    at = end;
  }
  return false;
}

async function assertRefused(port: number): Promise<void> {
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
}

async function assertRemoved(path: string): Promise<void> {
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
}

Deno.test("postgres: runs queries, counts real clients, stops and frees its port", async () => {
  const t0 = performance.now();
  const pg: PgServer = await startPostgres();
  const started = performance.now() - t0;
  try {
    assert.equal(pg.host, "127.0.0.1");
    assert.equal(pg.url, `postgres://postgres@127.0.0.1:${pg.port}/postgres`);
    assert.equal([pg.user, pg.database].join(), "postgres,postgres");
    assert.equal(await pg.sql("select 6 * 7"), "42");
    assert.match(await pg.sql("show server_version"), /^\d+/);
    assert.equal(
      await pg.sql("select current_user || ' ' || current_database()"),
      "postgres postgres",
    );

    // The fixture's errors carry psql's message.
    await assert.rejects(pg.sql("select no_such_column"), /no_such_column.*does not exist/s);

    // A raw protocol connection (trust auth) is counted while open, and not after.
    assert.equal(await pg.connections(), 0);
    const conn = await Deno.connect({ hostname: pg.host, port: pg.port });
    try {
      await conn.write(startupMessage("postgres", "postgres"));
      await readUntil(conn, readyForQuery);
      assert.equal(await pg.connections(), 1);
    } finally {
      conn.close();
    }
    await waitFor(async () => await pg.connections() === 0, { timeout: 5000 });

    // A query running in another session shows up in active() until it finishes.
    assert.equal(await pg.active("pg_sleep"), 0);
    const sleeper = pg.sql("select pg_sleep(0.5)");
    try {
      await waitFor(async () => await pg.active("pg_sleep") === 1, { timeout: 3000 });
      assert.equal(await pg.active("no such query text"), 0);
      assert.equal(await pg.connections(), 1);
    } finally {
      await sleeper.catch(() => {});
    }
    assert.equal(await sleeper, "");
    await waitFor(async () => await pg.active("pg_sleep") === 0, { timeout: 3000 });
  } finally {
    const t1 = performance.now();
    await pg.stop();
    console.log(
      `postgres: start ${started.toFixed(0)} ms, stop ${(performance.now() - t1).toFixed(0)} ms`,
    );
  }
  await assertRefused(pg.port);
  await assertRemoved(pg.dir);
  await assert.rejects(pg.sql("select 1"), /psql failed/);
  await pg.stop(); // a second stop is a no-op
});

Deno.test("redis: runs commands, counts raw clients and blocked ones, stops and frees its port", async () => {
  const t0 = performance.now();
  const redis: RedisServer = await startRedis();
  const started = performance.now() - t0;
  try {
    assert.equal(redis.host, "127.0.0.1");
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.equal(await redis.command("PING"), "PONG");
    assert.equal(await redis.command("SET", "greeting", "hello world"), "OK");
    assert.equal(await redis.command("GET", "greeting"), "hello world");
    await assert.rejects(redis.command("NOSUCHCOMMAND"), /unknown command/);

    assert.equal(await redis.clients(), 0);
    assert.equal(await redis.blocked(), 0);
    const conn = await Deno.connect({ hostname: redis.host, port: redis.port });
    try {
      await conn.write(encoder.encode("PING\r\n"));
      const reply = await readUntil(conn, (b) => decoder.decode(b).endsWith("\r\n"));
      assert.equal(decoder.decode(reply), "+PONG\r\n");
      assert.equal(await redis.clients(), 1);

      await conn.write(encoder.encode("BLPOP gevent:nothing 0\r\n"));
      await waitFor(async () => await redis.blocked() === 1, { timeout: 3000 });
    } finally {
      conn.close();
    }
    await waitFor(async () => await redis.clients() === 0 && await redis.blocked() === 0, {
      timeout: 3000,
    });
  } finally {
    const t1 = performance.now();
    await redis.stop();
    console.log(
      `redis: start ${started.toFixed(0)} ms, stop ${(performance.now() - t1).toFixed(0)} ms`,
    );
  }
  await assertRefused(redis.port);
  await assertRemoved(redis.dir);
  await assert.rejects(redis.command("PING"), /redis-cli failed/);
});

Deno.test("waitFor: resolves once the check passes, rejects clearly when it times out", async () => {
  let calls = 0;
  await waitFor(() => ++calls === 3, { timeout: 1000 });
  assert.equal(calls, 3);

  // Order, not elapsed time: a timer due at half the timeout fires before the rejection.
  let halfway = false;
  const timer = setTimeout(() => halfway = true, 50);
  await assert.rejects(
    waitFor(async () => await Promise.resolve(false), { timeout: 100, message: "the moon" }),
    { message: "waitFor: the moon still not met after 100 ms" },
  );
  clearTimeout(timer);
  assert.equal(halfway, true, "rejected before its timeout");
  await assert.rejects(
    waitFor(() => false, { timeout: 0 }),
    /waitFor: condition .*false still not met after 0 ms$/,
  );
  await assert.rejects(
    waitFor(() => {
      throw new TypeError("broken check");
    }, { timeout: 1000 }),
    TypeError,
  );
  await assert.rejects(waitFor(() => true, { timeout: -1 }), RangeError);
});

// Last: stops the servers started at module level (top-level await) inside a test.
Deno.test("servers started with top-level await work and stop inside a test", async () => {
  assert.notEqual(earlyPg.port, earlyRedis.port);
  assert.equal(await earlyPg.sql("select 1"), "1");
  assert.equal(await earlyRedis.command("PING"), "PONG");
  await Promise.all([earlyPg.stop(), earlyRedis.stop()]);
  await assertRefused(earlyPg.port);
  await assertRefused(earlyRedis.port);
  await assertRemoved(earlyPg.dir);
  await assertRemoved(earlyRedis.dir);
});
