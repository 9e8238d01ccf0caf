import "./_deadline.ts";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  BoundedSemaphore,
  Event,
  formatRunInfo,
  getHub,
  type Greenlet,
  joinAll,
  killAll,
  Pool,
  printRunInfo,
  Queue,
  sleep,
  spawn,
  spawnLater,
  Timeout,
  trackSpawnSites,
  withTimeout,
} from "../mod.ts";
import { createConnection, listen } from "../socket.ts";
import { type GeventEvent, subscribe } from "../events.ts";

/** Lets every greenlet spawned so far start and reach its first blocking call. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await sleep(0);
}

/** The lines of `info` from the one naming `g` to the next greenlet line. */
function entryOf(info: string, g: Greenlet<unknown>): string {
  const lines = info.split("\n");
  const i = lines.findIndex((l) => l.includes(`+--- ${g}`));
  assert.ok(i >= 0, `${g} is not in:\n${info}`);
  const rest = lines.slice(i + 1);
  const end = rest.findIndex((l) => l.includes("+--- "));
  return [lines[i], ...(end < 0 ? rest : rest.slice(0, end))].join("\n");
}

/** The column at which `g`'s line starts its `+---` (its depth in the tree). */
function columnOf(info: string, g: Greenlet<unknown>): number {
  const line = info.split("\n").find((l) => l.includes(`+--- ${g}`));
  assert.ok(line !== undefined, `${g} is not in:\n${info}`);
  return line.indexOf("+---");
}

Deno.test("formatRunInfo() names what each live greenlet is blocked on", async () => {
  const ev = new Event();
  const q = new Queue<number>();
  const sem = new BoundedSemaphore(1);
  await sem.acquire();
  const pool = new Pool(1);
  const waiter = spawn(async function waiter() {
    await ev.wait();
  });
  const getter = spawn(async function getter() {
    await q.get();
  });
  const sleeper = spawn(async function sleeper() {
    await sleep(60_000);
  });
  const acquirer = spawn(async function acquirer() {
    await sem.acquire();
  });
  const joiner = spawn(async function joiner() {
    await waiter.join();
  });
  const member = await pool.spawn(() => ev.wait());
  const slotWaiter = spawn(async function slotWaiter() {
    await pool.waitAvailable();
  });
  const later = spawnLater(60_000, function later() {});
  await settle();
  const info = formatRunInfo();
  assert.match(entryOf(info, waiter), /blocked for \d+ ms on Event\.wait; age \d+ ms/);
  assert.match(entryOf(info, getter), /on Queue\.get;/);
  assert.match(entryOf(info, sleeper), /on sleep 60000 ms;/);
  assert.match(entryOf(info, acquirer), /on BoundedSemaphore\.acquire;/);
  assert.ok(entryOf(info, joiner).includes(`on join ${waiter};`), entryOf(info, joiner));
  assert.match(entryOf(info, slotWaiter), /on Pool\.spawn\/waitAvailable;/);
  assert.match(entryOf(info, member), /on Event\.wait;/);
  assert.match(entryOf(info, later), /waiting for its start time/);
  assert.match(info.split("\n")[1], /^<main> .*running \(the caller of run-info\)/);
  await killAll([waiter, getter, sleeper, acquirer, joiner, member, slotWaiter, later]);
  sem.release();
});

Deno.test("formatRunInfo() draws children under the greenlet that spawned them", async () => {
  const stop = new Event();
  let child: Greenlet<unknown> | undefined;
  let grandchild: Greenlet<unknown> | undefined;
  const parent = spawn(async function parent() {
    child = spawn(async function child() {
      grandchild = spawn(() => stop.wait());
      await stop.wait();
    });
    await child.join();
  });
  const other = spawn(() => stop.wait());
  await settle();
  const info = formatRunInfo();
  const p = columnOf(info, parent);
  assert.equal(columnOf(info, other), p, "two roots at the same depth");
  assert.ok(columnOf(info, child!) > p, "a child is deeper than its parent");
  assert.ok(columnOf(info, grandchild!) > columnOf(info, child!));
  const lines = info.split("\n");
  const at = (g: Greenlet<unknown>) => lines.findIndex((l) => l.includes(`+--- ${g}`));
  assert.ok(at(parent) < at(child!) && at(child!) < at(grandchild!), "parent before children");
  assert.match(entryOf(info, parent), /on join <Greenlet/);
  stop.set();
  await joinAll([parent, other]);
});

Deno.test("a dead parent is shown for its live children, and dead greenlets leave the tree", async () => {
  const stop = new Event();
  let orphan: Greenlet<unknown> | undefined;
  const parent = spawn(() => {
    orphan = spawn(() => stop.wait());
  });
  await parent.join();
  await settle();
  const info = formatRunInfo();
  assert.match(entryOf(info, parent), /dead \(shown for its children\)/);
  assert.ok(columnOf(info, orphan!) > columnOf(info, parent));
  stop.set();
  await orphan!.join();
  const after = formatRunInfo();
  assert.ok(!after.includes(`${parent}`), after);
  assert.ok(!after.includes(`${orphan}`), after);
});

Deno.test("blockedOnly shows only greenlets in a blocking call", async () => {
  const blockedNow = () =>
    Number(/, (\d+) in a blocking call/.exec(formatRunInfo({ blockedOnly: true }))![1]);
  const before = blockedNow();
  const stop = new Event();
  const blocked = spawn(() => stop.wait());
  await settle();
  const queued = spawn(() => stop.wait()); // not started yet: runnable
  const all = formatRunInfo();
  assert.match(entryOf(all, queued), /runnable \(queued\)/);
  const some = formatRunInfo({ blockedOnly: true });
  assert.ok(some.includes(`${blocked}`), some);
  assert.ok(!some.includes(`${queued}`), some);
  assert.equal(blockedNow(), before + 1);
  stop.set();
  await joinAll([blocked, queued]);
});

Deno.test("the header counts live greenlets and returns to its count when they die", async () => {
  const count = () => Number(/^Run info: (\d+) live/.exec(formatRunInfo())![1]);
  const before = count();
  const stop = new Event();
  const gs = [spawn(() => stop.wait()), spawn(() => stop.wait()), spawn(() => stop.wait())];
  assert.equal(count(), before + 3);
  stop.set();
  await joinAll(gs);
  const failing = spawn(() => {
    throw new Error("expected in this test");
  });
  const handled = getHub().handleError;
  getHub().handleError = () => {};
  try {
    await failing.join();
  } finally {
    getHub().handleError = handled;
  }
  assert.equal(count(), before);
});

Deno.test("the root flow's own wait and a top-level withTimeout are shown", async () => {
  const stop = new Event();
  const reporter = spawn(async () => {
    await sleep(0);
    await sleep(0);
    return formatRunInfo();
  });
  await withTimeout(5_000, () => stop.wait({ timeout: 50 }));
  await reporter.join();
  const info = reporter.value as string;
  assert.match(info, /a top-level withTimeout: blocked for \d+ ms on Event\.wait/);
});

Deno.test("trackSpawnSites() records where greenlets were spawned, until stopped", async () => {
  const stop = new Event();
  const untracked = spawn(() => stop.wait());
  const tracking = trackSpawnSites();
  const tracked = spawn(() => stop.wait()); // this line is the site
  tracking.stop();
  tracking.stop(); // twice is harmless
  const afterStop = spawn(() => stop.wait());
  await settle();
  const info = formatRunInfo();
  const here = fileURLToPath(import.meta.url).split("/").pop()!;
  assert.match(entryOf(info, tracked), new RegExp(`spawned at file://.*${here}:\\d+:\\d+`));
  assert.ok(!entryOf(info, untracked).includes("spawned at"));
  assert.ok(!entryOf(info, afterStop).includes("spawned at"));
  {
    using _nested = trackSpawnSites();
    const inPool = await new Pool(2).spawn(() => stop.wait());
    await settle();
    // The site is the caller's line, not the pool's own spawn inside the library.
    assert.match(entryOf(formatRunInfo(), inPool), new RegExp(`spawned at file://.*${here}:`));
    await inPool.kill();
  }
  stop.set();
  await joinAll([untracked, tracked, afterStop]);
});

Deno.test("printRunInfo() writes the tree; bad options are TypeErrors", () => {
  let text = "";
  printRunInfo({ stream: { write: (s: string) => text += s } });
  assert.match(text, /^Run info: \d+ live greenlets?\n<main> /);
  assert.throws(() => formatRunInfo("x" as never), {
    name: "TypeError",
    message: /'options' must be an object: current value is "x"/,
  });
  assert.throws(() => printRunInfo(42 as never), TypeError);
});

Deno.test("killAll() that runs out of time says what each survivor awaits", async () => {
  let refuse = true;
  const stubborn = spawn(async function stubborn() {
    for (;;) {
      try {
        await sleep(60_000);
      } catch (error) {
        if (!refuse) throw error; // refuses to die until told
      }
    }
  });
  await settle();
  const error = await killAll([stubborn], { timeout: 30 }).then(() => undefined, (e) => e);
  assert.ok(error instanceof Timeout, String(error));
  assert.ok(String(error.message).includes(`${stubborn}`), error.message);
  assert.match(error.message, /sleep 60000 ms/);
  refuse = false;
  await killAll([stubborn]);
  assert.equal(stubborn.dead, true);
});

Deno.test("a SIGUSR1 handler prints the run-info tree (real signal to a child process)", async () => {
  const mod = fileURLToPath(new URL("../mod.ts", import.meta.url));
  const script = `
    import { Event, printRunInfo, signalHandler, spawn } from "${mod}";
    const stop = new Event();
    const handler = signalHandler("SIGUSR1", () => {
      printRunInfo();
      handler.cancel();
      stop.set();
    });
    spawn(async function stuck() { await stop.wait(); });
    setTimeout(() => console.log("ready"), 0);
    await stop.wait();
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errText = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let signalled = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
    if (!signalled && out.includes("ready")) {
      signalled = true;
      child.kill("SIGUSR1");
    }
  }
  assert.ok(out.includes("ready"), out);
  const { code } = await child.status;
  const err = await errText;
  assert.equal(code, 0, err);
  assert.match(err, /Run info: 2 live greenlets/);
  assert.match(
    err,
    /<Greenlet "Greenlet-\d+": stuck\(\)>\n[\s|]+:\s+blocked for \d+ ms on Event\.wait/,
  );
});

Deno.test("when the loop runs dry, the hub prints what is blocked and each LoopExit says on what", async () => {
  const mod = fileURLToPath(new URL("../mod.ts", import.meta.url));
  const script = `
    import { Event, spawn } from "${mod}";
    spawn(async function forgotten() { await new Event().wait(); });
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, err);
  assert.match(err, /LoopExit: the loop ran dry with 1 blocking call that nothing can wake/);
  assert.match(
    err,
    /<Greenlet "Greenlet-0": forgotten\(\)>\n[\s|]+:\s+blocked for \d+ ms on Event\.wait/,
  );
  assert.match(err, /LoopExit: This operation would block forever \(Event\.wait\)/);
});

Deno.test("run-info names socket waits with their peer, and accept with its address", async () => {
  using server = listen(["127.0.0.1", 0]);
  const [host, port] = server.getsockname();
  const client = await createConnection([host, port]);
  using _client = client;
  const [peer] = await server.accept();
  using _peer = peer;
  const reader = spawn(async function reader() {
    await client.recv(10);
  });
  const acceptor = spawn(async function acceptor() {
    await server.accept();
  });
  await settle();
  const info = formatRunInfo();
  assert.match(entryOf(info, reader), new RegExp(`on socket\\.recv 127\\.0\\.0\\.1:${port};`));
  assert.match(entryOf(info, acceptor), new RegExp(`on socket\\.accept 127\\.0\\.0\\.1:${port};`));
  await killAll([reader, acceptor]);
});

Deno.test("a wait begun after a timer fired is timed from then, not from the last turn of the loop", async () => {
  // The bug this guards: the loop's clock was stale in timer callbacks, so a greenlet sleeping
  // in a loop showed "blocked for <its whole age> on sleep 20 ms".
  const sleeper = spawn(async function sleeper() {
    for (;;) await sleep(20);
  });
  await sleep(600);
  const entry = entryOf(formatRunInfo(), sleeper);
  const m = /blocked for (\d+) ms on sleep 20 ms; age (\d+(?:\.\d)?) (ms|s)/.exec(entry);
  assert.ok(m !== null, entry);
  const age = Number(m[2]) * (m[3] === "s" ? 1000 : 1);
  assert.ok(Number(m[1]) < age - 300, entry);
  await sleeper.kill();
});

Deno.test("a kill({ timeout }) that runs out emits killTimedOut naming what the greenlet awaits", async () => {
  const seen: GeventEvent[] = [];
  using _sub = subscribe((event) => {
    if (event.type === "killTimedOut") seen.push(event);
  });
  const handled = getHub().exceptionStream;
  let printed = "";
  getHub().exceptionStream = { write: (s: string) => printed += s };
  let refuse = true;
  const stop = new Event();
  const stubborn = spawn(async function stubborn() {
    for (;;) {
      try {
        return await stop.wait();
      } catch (error) {
        if (!refuse) throw error;
      }
    }
  });
  try {
    await settle();
    await stubborn.kill({ timeout: 20 }); // resolves quietly, as gevent's
    assert.equal(stubborn.dead, false);
    assert.equal(seen.length, 1);
    const event = seen[0];
    assert.ok(event.type === "killTimedOut");
    assert.equal(event.timeout, 20);
    assert.equal(event.greenlet, `${stubborn} (blocked on Event.wait)`);
    assert.match(printed, /did not die within 20 ms of its kill/);
    await stubborn.kill({ timeout: 0, block: false }); // no wait: no event
    assert.equal(seen.length, 1);
  } finally {
    getHub().exceptionStream = handled;
    refuse = false;
    await stubborn.kill();
  }
});

Deno.test("formatRunInfo() counts the other blocking calls a greenlet has in flight", async () => {
  const a = new Event();
  const b = new Event();
  const g = spawn(() => Promise.all([a.wait(), b.wait()]));
  await sleep(0);
  const text = formatRunInfo();
  assert.match(text, /blocked for [\d.]+ m?s on Event\.wait \(and 1 more blocking call\)/, text);
  a.set();
  b.set();
  assert.equal(await g.join(), true);
});

Deno.test("stopping one trackSpawnSites() twice does not end another still active", async () => {
  const stop = new Event();
  const outer = trackSpawnSites();
  const inner = trackSpawnSites();
  inner.stop();
  inner.stop(); // must not count as the outer one's stop
  const tracked = spawn(() => stop.wait());
  outer.stop();
  await settle();
  const here = fileURLToPath(import.meta.url).split("/").pop()!;
  assert.match(
    entryOf(formatRunInfo(), tracked),
    new RegExp(`spawned at file://.*${here}:\\d+:\\d+`),
  );
  stop.set();
  await tracked.join();
});
