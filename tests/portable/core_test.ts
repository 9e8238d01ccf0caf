/**
 * The core on every runtime: these tests use only `node:test` and `node:assert/strict`, so
 * `deno test`, `node --test` (22 and later) and `bun test` run the same file (.ci/run runs all
 * three). They cover what the runtimes differ in: failure reports on standard error, LoopExit
 * when the program would end with greenlets blocked, unref'd timers, rendering greenlets, and
 * the networking modules refusing clearly outside Deno.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  getCurrent,
  Greenlet,
  GreenletExit,
  isKill,
  joinAll,
  killAll,
  spawn,
  spawnLater,
} from "../../greenlet.ts";
import { getHub, sleep, wait } from "../../hub.ts";
import { Timeout, withTimeout } from "../../timeout.ts";
import { AsyncResult, Event } from "../../event.ts";
import { Queue } from "../../queue.ts";
import { Semaphore } from "../../lock.ts";
import { Group, Pool } from "../../pool.ts";
import { Local } from "../../local.ts";

// deno-lint-ignore no-explicit-any
const runtime = (globalThis as any).Deno ? "deno" : (globalThis as any).Bun ? "bun" : "node";

/** Runs `code` (a module importing the library by absolute path) in a new process of the
 * same runtime; returns its exit code and output. */
function runChild(code: string): { status: number | null; stdout: string; stderr: string } {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const source = code.replaceAll("@lib/", root);
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  const exe = runtime === "deno" ? g.Deno.execPath() : g.process.execPath;
  const args = runtime === "deno"
    ? ["eval", "--ext=ts", source]
    : runtime === "bun"
    ? ["--eval", source]
    : ["--input-type=module", "--experimental-strip-types", "--no-warnings", "-e", source];
  const r = spawnSync(exe, args, { encoding: "utf8", env: { ...g.process.env, NO_COLOR: "1" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("greenlets run, join and keep their values", async () => {
  const jobs = [3, 1, 2].map((n) =>
    spawn(async () => {
      await sleep(n);
      return n * 10;
    })
  );
  const done = await joinAll(jobs, { timeout: 2000 });
  assert.equal(done.length, 3);
  assert.deepEqual(jobs.map((j) => j.value), [30, 10, 20]);
  assert.equal(await spawn(() => getCurrent()).get() instanceof Greenlet, true);
});

test("a failure stays inside its greenlet and is reported", async () => {
  const hub = getHub();
  const saved = hub.exceptionStream;
  let text = "";
  hub.exceptionStream = { write: (s) => text += s };
  try {
    const g = spawn(function divide(a: bigint) {
      return a / 0n;
    }, 1n);
    await g.join();
    assert.ok(g.exception instanceof RangeError);
    assert.match(text, /<Greenlet "Greenlet-\d+": divide\(1n\)> failed with RangeError/);
  } finally {
    hub.exceptionStream = saved;
  }
});

test("the default report goes to standard error", () => {
  const r = runChild(`
    import { spawn } from "@lib/greenlet.ts";
    await spawn(function boom() { throw new TypeError("portable"); }).join();
    console.log("still running");
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still running/);
  assert.match(r.stderr, /TypeError: portable/);
  assert.match(r.stderr, /<Greenlet "Greenlet-\d+": boom\(\)> failed with TypeError/);
});

test("greenlets still blocked when the program would end get LoopExit", () => {
  const r = runChild(`
    import { spawn } from "@lib/greenlet.ts";
    import { Event } from "@lib/event.ts";
    const g = spawn(() => new Event().wait());
    g.rawlink(() => console.log("died with " + g.exception?.name));
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /died with LoopExit/);
});

test("an unref'd loop timer does not keep the process alive", () => {
  const r = runChild(`
    import { getHub } from "@lib/hub.ts";
    getHub().loop.timer(60000, 0, { ref: false }).start(() => console.log("fired"));
    console.log("done");
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "done");
});

test("kill and Timeout interrupt blocking calls; isKill tells them apart", async () => {
  const g = spawn(() => sleep(60_000));
  await sleep(0);
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
  const outcome = await withTimeout(10, () => new Event().wait()).catch((e) => e);
  assert.ok(outcome instanceof Timeout && isKill(outcome));
  assert.equal(await withTimeout(10, () => sleep(1000), { timeoutValue: "late" }), "late");
  const stuck = [spawn(() => sleep(60_000)), spawnLater(60_000, () => 1)];
  await killAll(stuck);
  assert.ok(stuck.every((s) => s.dead));
});

test("events, results, queues, semaphores, pools and local storage", async () => {
  const e = new Event();
  const r = new AsyncResult<number>();
  setTimeout(() => {
    e.set();
    r.set(7);
  }, 1);
  assert.equal(await e.wait(), true);
  assert.equal(await r.get(), 7);
  assert.deepEqual(await wait([e]), [e]);

  const q = new Queue<number>(1);
  const producer = spawn(async () => {
    for (let i = 0; i < 5; i++) await q.put(i);
  });
  const got: number[] = [];
  for (let i = 0; i < 5; i++) got.push(await q.get());
  await producer.join();
  assert.deepEqual(got, [0, 1, 2, 3, 4]);

  const sem = new Semaphore(2);
  let inside = 0;
  let most = 0;
  const pool = new Pool(3);
  const results = await pool.map(async (n: number) => {
    await sem.acquire();
    try {
      most = Math.max(most, ++inside);
      await sleep(1);
      inside--;
      return n * 2;
    } finally {
      sem.release();
    }
  }, [1, 2, 3, 4, 5]);
  assert.deepEqual(results, [2, 4, 6, 8, 10]);
  assert.equal(most, 2);

  const local = new Local<{ n: number }>();
  const group = new Group();
  const seen = await Promise.all([1, 2].map((n) =>
    group.spawn(async () => {
      local.set({ n });
      await sleep(1);
      return local.get()?.n;
    }).get()
  ));
  assert.deepEqual(seen, [1, 2]);
});

test("greenlets render with their function and arguments", () => {
  const g = new Greenlet(
    function fetchPage(url: string, tries: number) {
      return [url, tries];
    },
    "https://example.com/",
    3,
  );
  assert.equal(String(g), `<Greenlet "${g.name}": fetchPage("https://example.com/", 3)>`);
});

test("the networking modules work on Deno and say so elsewhere", async () => {
  const socket = await import("../../socket.ts");
  if (runtime === "deno") {
    assert.equal(await socket.gethostbyname("127.0.0.1"), "127.0.0.1");
    return;
  }
  await assert.rejects(
    socket.createConnection(["127.0.0.1", 9]),
    new RegExp(`needs Deno: it is not available on ${runtime === "bun" ? "Bun" : "Node"} `, "i"),
  );
  const monkey = await import("../../monkey.ts");
  assert.throws(() => monkey.patchAll(), /needs Deno/);
});
