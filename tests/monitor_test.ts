import "./_deadline.ts";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type GeventEvent, type LoopBlocked, type LoopUnblocked, subscribe } from "../events.ts";
import { Event, getHub, Greenlet, sleep, spawn } from "../mod.ts";
import { startMonitor } from "../monitor.ts";
import { _guess as guess, _LAYOUT } from "../_monitor_worker.ts";
const _guess = (a: Int32Array) => guess(a, _LAYOUT);
import {
  _COUNT,
  _DRAIN_END,
  _DRAIN_START,
  _LOG,
  _LOG_SIZE,
  _SHARED_BYTES,
  _START,
  _TICK,
  _WAKE,
  _YIELD,
} from "../_monitor_state.ts";

const epochNow = (): number => performance.timeOrigin + performance.now();

function spinFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** Collects events; `next(type)` resolves with the first event of that type (already seen or not). */
function collector() {
  const seen: GeventEvent[] = [];
  const waiters: { type: string; resolve: (e: GeventEvent) => void }[] = [];
  const sub = subscribe((event) => {
    seen.push(event);
    for (const w of waiters.filter((w) => w.type === event.type)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(event);
    }
  });
  return {
    seen,
    sub,
    next<T extends GeventEvent>(type: T["type"]): Promise<T> {
      const found = seen.find((e) => e.type === type);
      if (found !== undefined) return Promise.resolve(found as T);
      return new Promise((resolve) => waiters.push({ type, resolve: resolve as never }));
    },
  };
}

async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const hub = getHub();
  const saved = hub.exceptionStream;
  hub.exceptionStream = null;
  try {
    return await fn();
  } finally {
    hub.exceptionStream = saved;
  }
}

Deno.test("startMonitor() names a greenlet that spins for 300 ms while it still spins", async () => {
  await quietly(async () => {
    const events = collector();
    await using monitor = startMonitor({ maxBlockingTime: 100, liveReport: false });
    await monitor.ready;
    let spinStart = 0;
    let spinEnd = 0;
    const g = new Greenlet(async () => {
      await sleep(1);
      spinStart = epochNow();
      spinFor(300);
      spinEnd = epochNow();
      await sleep(0);
    });
    g.name = "spinner";
    g.start();
    await g.join();
    const blocked = await events.next<LoopBlocked>("blocked");
    const unblocked = await events.next<LoopUnblocked>("unblocked");
    events.sub.unsubscribe();
    assert.equal(blocked.runner.kind, "greenlet");
    assert.ok(blocked.runner.kind === "greenlet");
    assert.equal(blocked.runner.greenlet.name, "spinner");
    assert.equal(blocked.runner.greenlet.ident, g.minimalIdent);
    // Noticed while the block went on, not after it.
    assert.ok(spinStart < blocked.at && blocked.at < spinEnd, "noticed during the spin");
    assert.ok(blocked.blockedMs >= 100);
    assert.equal(blocked.stack, undefined);
    assert.match(blocked.report, /Greenlet "spinner" \(Greenlet-\d+\) appears to be blocked/);
    assert.equal(blocked.printed, false);
    // The end report: same block, exact runner, a total above the threshold.
    assert.equal(unblocked.serial, blocked.serial);
    assert.ok(unblocked.exact);
    assert.ok(unblocked.runner.kind === "greenlet" && unblocked.runner.greenlet.name === "spinner");
    assert.ok(unblocked.totalMs > blocked.blockedMs);
    assert.deepEqual(events.seen.map((e) => e.type), ["blocked", "unblocked"]);
  });
});

Deno.test("startMonitor() reports nothing for a program that only awaits", async () => {
  await quietly(async () => {
    const events = collector();
    await using monitor = startMonitor({ maxBlockingTime: 150, liveReport: false });
    await monitor.ready;
    const ev = new Event();
    // Idle stretches of several times the threshold: the heartbeat must tell idle from held.
    const sleeper = spawn(async () => {
      await sleep(500);
      ev.set();
    });
    const waiter = spawn(() => ev.wait());
    const ticker = spawn(async () => {
      for (let i = 0; i < 20; i++) await sleep(25);
    });
    await new Promise((resolve) => setTimeout(resolve, 100)); // an await the library does not own
    await Promise.all([sleeper.join(), waiter.join(), ticker.join()]);
    await sleep(300);
    events.sub.unsubscribe();
    assert.deepEqual(events.seen, []);
  });
});

Deno.test("the end-of-block report names the greenlet that really held the loop", async () => {
  await quietly(async () => {
    const events = collector();
    await using monitor = startMonitor({ maxBlockingTime: 100, liveReport: false });
    await monitor.ready;
    const go = new Event();
    // Woken first, then awaits something the library does not own: it leaves no mark, so the
    // monitor thread may take it for the runner; the end report must not.
    const decoy = spawn(async () => {
      await go.wait();
      await new Promise((resolve) => setTimeout(resolve, 1));
    });
    decoy.name = "decoy";
    const culprit = spawn(async () => {
      await go.wait();
      spinFor(300);
      await sleep(0);
    });
    culprit.name = "culprit";
    await sleep(0);
    go.set();
    await Promise.all([decoy.join(), culprit.join()]);
    const unblocked = await events.next<LoopUnblocked>("unblocked");
    events.sub.unsubscribe();
    assert.ok(unblocked.exact);
    assert.ok(unblocked.runner.kind === "greenlet");
    assert.equal(unblocked.runner.greenlet.name, "culprit");
    assert.match(unblocked.runner.greenlet.spawnSite ?? "", /monitor_test\.ts/);
  });
});

Deno.test("a block in a loop callback is put on the hub", async () => {
  await quietly(async () => {
    const events = collector();
    await using monitor = startMonitor({ maxBlockingTime: 100, liveReport: false });
    await monitor.ready;
    const done = Promise.withResolvers<void>();
    getHub().loop.runCallback(() => {
      spinFor(300);
      done.resolve();
    });
    await done.promise;
    const blocked = await events.next<LoopBlocked>("blocked");
    const unblocked = await events.next<LoopUnblocked>("unblocked");
    events.sub.unsubscribe();
    assert.equal(blocked.runner.kind, "callback");
    assert.equal(unblocked.runner.kind, "callback");
  });
});

Deno.test("the memory monitor reports over, then back under, the limit (RSS)", async () => {
  const monitorTs = fileURLToPath(new URL("../monitor.ts", import.meta.url));
  const eventsTs = fileURLToPath(new URL("../events.ts", import.meta.url));
  const script = `
    import { startMonitor } from "${monitorTs}";
    import { subscribe } from "${eventsTs}";
    const next = (type) => new Promise((resolve) => {
      const sub = subscribe((e) => { if (e.type === type) { sub.unsubscribe(); resolve(e); } });
    });
    const base = Deno.memoryUsage().rss;
    const max = base + 64 * 1024 * 1024;
    const monitor = startMonitor({ memory: { max, period: 20 }, liveReport: false });
    let big = new Uint8Array(256 * 1024 * 1024).fill(1);
    const over = await next("memoryOver");
    console.log("over", over.usage > max, over.max === max);
    big = undefined;
    const under = next("memoryUnder");
    globalThis.gc();
    const u = await under;
    console.log("under", u.usage <= max, u.peak >= over.usage, u.peak > max);
    await monitor.stop();
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", "--v8-flags=--expose-gc", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(text, "over true true\nunder true true true\n");
});

Deno.test("the monitor thread keeps no process alive, and stop() ends it", async (t) => {
  const monitorTs = fileURLToPath(new URL("../monitor.ts", import.meta.url));
  const run = async (body: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", `import { startMonitor } from "${monitorTs}";\n${body}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, text: new TextDecoder().decode(out.stdout) };
  };
  await t.step("never stopped: the process still exits", async () => {
    const r = await run(
      `const m = startMonitor(); await m.ready; console.log("running", m.running);`,
    );
    assert.deepEqual(r, { code: 0, text: "running true\n" });
  });
  await t.step("stopped: running is false and stop() is idempotent", async () => {
    const m = startMonitor();
    await m.ready;
    const a = m.stop();
    assert.equal(a, m.stop());
    await a;
    assert.equal(m.running, false);
    const early = startMonitor();
    await early.stop();
    await assert.rejects(early.ready, /The monitor was stopped/);
    // Sanitizers (on in deno.json) fail this step if the thread or its timers outlived stop().
  });
  await t.step("one at a time, and a new one after stop()", async () => {
    const m = startMonitor();
    assert.throws(() => startMonitor(), /already running/);
    await m.stop();
    const m2 = startMonitor();
    await m2.stop();
  });
});

Deno.test("startMonitor() checks its options", () => {
  // deno-lint-ignore no-explicit-any
  const anyArg = (v: unknown) => v as any;
  assert.throws(() => startMonitor({ maxBlockingTime: 0 }), RangeError);
  assert.throws(() => startMonitor({ maxBlockingTime: -1 }), /'maxBlockingTime' must be/);
  assert.throws(() => startMonitor({ maxBlockingTime: anyArg("100") }), TypeError);
  assert.throws(() => startMonitor({ memory: anyArg(5) }), /'memory' must be an object/);
  assert.throws(() => startMonitor({ memory: { max: Infinity } }), /'memory.max'/);
  assert.throws(() => startMonitor(anyArg(7)), /'options' must be an object/);
});

Deno.test("the monitor thread's guess follows wake order and the drain", () => {
  const a = new Int32Array(new SharedArrayBuffer(_SHARED_BYTES));
  let n = 0;
  const log = (kind: number, id: number) => {
    const i = _LOG + ((n & (_LOG_SIZE - 1)) << 1);
    a[i] = kind;
    a[i + 1] = id;
    Atomics.store(a, _COUNT, ++n);
  };
  assert.deepEqual(_guess(a), { kind: "unknown", id: 0 });
  log(_DRAIN_START, 0);
  assert.deepEqual(_guess(a), { kind: "callback", id: 0 });
  log(_START, 4);
  assert.deepEqual(_guess(a), { kind: "greenlet", id: 4 });
  log(_WAKE, 5); // greenlet 4 wakes greenlet 5 and 6, then blocks
  log(_WAKE, 6);
  log(_YIELD, 4);
  log(_DRAIN_END, 0);
  assert.deepEqual(_guess(a), { kind: "greenlet", id: 5 });
  log(_YIELD, 5);
  assert.deepEqual(_guess(a), { kind: "greenlet", id: 6 });
  log(_WAKE, 5); // woken again: behind 6
  assert.deepEqual(_guess(a), { kind: "greenlet", id: 6 });
  log(_TICK, 0); // a timer ran: every continuation before it has run
  assert.deepEqual(_guess(a), { kind: "unknown", id: 0 });
  for (let i = 0; i < 3 * _LOG_SIZE; i++) log(i % 2 === 0 ? _WAKE : _YIELD, 9); // wraps
  log(_WAKE, 1);
  assert.deepEqual(_guess(a), { kind: "greenlet", id: 1 });
});
