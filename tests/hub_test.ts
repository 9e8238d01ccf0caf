import "./_deadline.ts";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { getCurrent, joinAll, spawn } from "../greenlet.ts";
import { BlockingSwitchOutError, getHub, Hub, idle, iwait, LoopExit, sleep, wait } from "../hub.ts";
import { AsyncResult, Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { assertSame, assertTimeoutContract } from "./_helpers.ts";

Deno.test("getHub() is a lazy singleton; no run() is needed", () => {
  const hub = getHub();
  assert.ok(hub instanceof Hub);
  assert.equal(getHub(), hub);
  assert.equal(typeof hub.loop.runCallback, "function");
});

Deno.test("sleep(0) yields to every greenlet already runnable", async () => {
  const log: string[] = [];
  const a = spawn(async () => {
    log.push("a1");
    await sleep(0);
    log.push("a2");
    await sleep(0);
    log.push("a3");
  });
  const b = spawn(async () => {
    log.push("b1");
    await sleep(0);
    log.push("b2");
    await sleep(0);
    log.push("b3");
  });
  await joinAll([a, b]);
  assert.deepEqual(log, ["a1", "b1", "a2", "b2", "a3", "b3"]);
});

Deno.test("100 greenlets spinning on sleep(0) do not starve a sleep(10) elsewhere", async () => {
  let stop = false;
  let switches = 0;
  const spinners = Array.from({ length: 100 }, () =>
    spawn(async () => {
      while (!stop) {
        await sleep(0);
        switches++;
      }
    }));
  const sleeper = spawn(async () => {
    await sleep(10);
    stop = true;
  });
  await joinAll([sleeper, ...spinners]);
  assert.equal(stop, true);
  assert.ok(switches > 100, "the spinners did run");
});

Deno.test("a busy run queue does not starve socket I/O", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let stop = false;
  const spinners = Array.from({ length: 100 }, () =>
    spawn(async () => {
      while (!stop) await sleep(0);
    }));
  const server = (async () => {
    const conn = await listener.accept();
    await conn.write(new Uint8Array([7]));
    conn.close();
  })();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const buf = new Uint8Array(1);
  assert.equal(await conn.read(buf), 1);
  assert.equal(buf[0], 7);
  stop = true;
  conn.close();
  await server;
  listener.close();
  await joinAll(spinners);
});

Deno.test("sleep() validates its argument by rejecting", async () => {
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    let p: Promise<void> | undefined;
    assert.doesNotThrow(() => p = sleep(bad));
    await assert.rejects(p!, RangeError);
  }
});

Deno.test("blocking calls in a rawlink or loop callback reject with BlockingSwitchOutError", async () => {
  const errors: unknown[] = [];
  const done = new AsyncResult<void>();
  const g = spawn(() => null);
  g.rawlink(() => {
    sleep(0).catch((e) => errors.push(e));
    new Event().wait().catch((e) => errors.push(e));
    new AsyncResult().get().catch((e) => errors.push(e));
  });
  getHub().loop.runCallback(() => {
    sleep(5).catch((e) => errors.push(e));
  });
  getHub().loop.timer(1).start(() => {
    idle().catch((e) => errors.push(e)).finally(() => done.set());
  });
  await done.get();
  assert.equal(errors.length, 5);
  assert.ok(errors.every((e) => e instanceof BlockingSwitchOutError));
});

Deno.test("idle() resolves once queued callbacks have run", async () => {
  const ran: number[] = [];
  for (let i = 0; i < 3; i++) getHub().loop.runCallback(() => ran.push(i));
  await idle();
  assert.deepEqual(ran, [0, 1, 2]);
});

Deno.test("wait() without objects resolves true once no greenlet is alive", async () => {
  const gs = [spawn(() => sleep(5)), spawn(() => sleep(1))];
  assert.equal(await wait(), true);
  assert.ok(gs.every((g) => g.dead));
});

Deno.test("wait() without objects honours the timeout contract", async (t) => {
  const ev = new Event();
  const g = spawn(() => ev.wait());
  await assertTimeoutContract(t, {
    call: (timeout) => wait(undefined, { timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
  ev.set();
  await g.join();
});

Deno.test("wait(objects) resolves to the ready objects in completion order", async () => {
  const a = new Event();
  const b = new AsyncResult<number>();
  const c = spawn(() => sleep(1));
  setTimeout(() => b.set(1), 5);
  setTimeout(() => a.set(), 15);
  assertSame(await wait([a, b, c]), [c, b, a]);
  const d = new Event();
  const e = new Event();
  e.set();
  assertSame(await wait([d, e], { count: 1 }), [e]);
  assert.equal(d.linkCount(), 0, "wait() unlinks when done");
});

Deno.test("wait(objects) honours the timeout contract", async (t) => {
  const ready = new Event();
  ready.set();
  const never = new Event();
  await assertTimeoutContract(t, {
    call: (timeout) => wait([never, ready], { timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.deepEqual(value, [ready]);
    },
  });
  await assert.rejects(wait([never], { count: -1 }), RangeError);
  assert.equal(never.linkCount(), 0);
});

Deno.test("iwait() yields in completion order and unlinks when the loop ends early", async () => {
  const slow = new Event();
  const fast = new Event();
  setTimeout(() => fast.set(), 1);
  setTimeout(() => slow.set(), 10);
  const seen: Event[] = [];
  for await (const ev of iwait([slow, fast])) seen.push(ev);
  assert.deepEqual(seen, [fast, slow]);

  const never = new Event();
  const now = new Event();
  now.set();
  for await (const ev of iwait([never, now])) {
    assert.equal(ev, now);
    break;
  }
  assert.equal(never.linkCount(), 0);
});

Deno.test("iwait() stops at its timeout and is interrupted by kill", async () => {
  const never = new Event();
  const got: unknown[] = [];
  for await (const ev of iwait([never], { timeout: 5 })) got.push(ev);
  assert.deepEqual(got, []);
  const g = spawn(async () => {
    for await (const _ of iwait([never])) { /* never */ }
  });
  await sleep(0);
  await g.kill();
  assert.equal(g.dead, true);
  assert.equal(never.linkCount(), 0);
});

Deno.test("Hub.handleError skips notError classes and prints the rest", () => {
  const hub = new Hub();
  const out: string[] = [];
  hub.exceptionStream = { write: (s) => out.push(s) };
  class Quiet extends Error {}
  hub.notError.push(Quiet);
  hub.handleError("ctx", new Quiet("x"));
  assert.deepEqual(out, []);
  hub.handleError("ctx", "a string");
  assert.match(out.join(""), /Uncaught "a string"\n.* ctx failed with String\n$/);
  hub.exceptionStream = null;
  hub.handleError("ctx", new Error("silenced"));
  hub.exceptionStream = {
    write: () => {
      throw new Error("broken stream");
    },
  };
  assert.doesNotThrow(() => hub.handleError("ctx", new Error("x")));
});

Deno.test("every API returning a promise rejects instead of throwing", async () => {
  const g = spawn(() => null);
  const calls: (() => Promise<unknown>)[] = [
    () => sleep(-1),
    () => g.join({ timeout: -1 }),
    () => g.get({ timeout: Number.NaN }),
    () => g.kill({ timeout: -1 }),
    () => joinAll([g], { timeout: -1 }),
    () => wait([], { timeout: -1 }),
    () => new Event().wait({ timeout: -1 }),
    () => new AsyncResult().get({ timeout: -1 }),
    () => new AsyncResult().wait({ timeout: -1 }),
  ];
  for (const call of calls) {
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => p = call());
    await assert.rejects(p!, RangeError);
  }
  await g.join();
});

Deno.test("a user's Deno.test with greenlets passes the op and resource sanitizers", async () => {
  // This test itself is the proof: sanitizers are on for every test of this suite, so any
  // timer or op left pending by the hub after join/kill would fail it.
  const gs = [
    spawn(() => sleep(5)),
    spawn(() => new Event().wait({ timeout: 1000 })),
    spawn(async () => {
      using _t = Timeout.start(1000);
      await sleep(1);
    }),
  ];
  await gs[1].kill();
  await joinAll(gs);
  assert.ok(gs.every((g) => g.dead));
  assert.equal(getCurrent(), undefined);
});

async function runScript(
  source: string,
): Promise<{ code: number; stderr: string; stdout: string }> {
  const root = fileURLToPath(new URL("../", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--ext=ts", source.replaceAll("ROOT/", root)],
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: dec.decode(out.stderr), stdout: dec.decode(out.stdout) };
}

Deno.test("greenlets blocked forever get LoopExit when the loop drains", async () => {
  const { code, stderr, stdout } = await runScript(`
    import { spawn } from "ROOT/greenlet.ts";
    import { Event } from "ROOT/event.ts";
    import { LoopExit } from "ROOT/hub.ts";
    const g = spawn(async () => {
      try {
        await new Event().wait();
      } catch (e) {
        console.log("caught", (e as Error).name, e instanceof LoopExit);
        throw e;
      }
    });
    g.link(() => console.log("finished", g.successful()));
  `);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /caught LoopExit true\nfinished false\n/);
  assert.match(stderr, /LoopExit: This operation would block forever/);
  assert.match(stderr, /failed with LoopExit/);
});

Deno.test("an unhandled failure in a greenlet never kills the process", async () => {
  const { code, stdout, stderr } = await runScript(`
    import { spawn } from "ROOT/greenlet.ts";
    import { sleep } from "ROOT/hub.ts";
    spawn(async () => { await sleep(1); throw new Error("boom"); });
    spawn(() => { throw new Error("sync boom"); });
    await sleep(10);
    console.log("still alive");
  `);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "still alive\n");
  assert.equal(stderr.match(/failed with Error/g)?.length, 2);
});

Deno.test("LoopExit is exported with gevent's message", () => {
  const e = new LoopExit();
  assert.equal(e.name, "LoopExit");
  assert.equal(e.message, "This operation would block forever");
  assert.equal(new BlockingSwitchOutError().name, "BlockingSwitchOutError");
});

Deno.test("sleep(0) resumes only after every callback queued before it, across slice breaks", async () => {
  const loop = getHub().loop;
  const n = 3000;
  let ran = 0;
  const earlier = sleep(0); // a yield queued before the callbacks
  loop.runCallback(() => {
    // Busy for longer than a slice, so that the loop yields to the event loop after a while.
    const until = performance.now() + 20;
    while (performance.now() < until) { /* busy */ }
    ran++;
  });
  for (let i = 1; i < n; i++) loop.runCallback(() => ran++);
  await sleep(0);
  assert.equal(ran, n);
  await earlier;
});

Deno.test("sleep(0) with an aborted signal rejects with its reason, as sleep(ms) does", async () => {
  const reason = new Error("stop");
  const signal = AbortSignal.abort(reason);
  await assert.rejects(sleep(0, { signal }), (e) => e === reason);
  await assert.rejects(sleep(5, { signal }), (e) => e === reason);
});

Deno.test("kill() ends every blocking call a greenlet has in flight, not only the latest", async () => {
  const first = new Event();
  const second = new Event();
  const outcomes: [string, unknown][] = [];
  const g = spawn(async () => {
    const a = first.wait();
    const b = second.wait();
    a.catch((e) => outcomes.push(["first", e]));
    await b.catch((e) => {
      outcomes.push(["second", e]);
      throw e;
    });
  });
  await sleep(0);
  assert.equal(first.linkCount() + second.linkCount(), 2);
  await g.kill();
  await sleep(0);
  assert.equal(first.linkCount(), 0);
  assert.equal(second.linkCount(), 0);
  assert.deepEqual(outcomes.map(([name]) => name).sort(), ["first", "second"]);
  for (const [, e] of outcomes) assert.ok(e === g.value, `${e}`);
});

Deno.test("a Timeout taken by a top-level withTimeout() is not thrown again by the next yield", async () => {
  const timeout = Timeout.start(5);
  const later = new Promise<void>((resolve) => setTimeout(resolve, 30)); // fires after the Timeout
  let caught: unknown;
  try {
    await withTimeout(60_000, async () => {
      await later; // awaiting outside the library: the Timeout is left pending meanwhile
      await sleep(0); // takes it
    });
  } catch (error) {
    caught = error;
  }
  assert.equal(caught, timeout);
  await sleep(0); // must not throw the same Timeout a second time
  await sleep(1);
  timeout.cancel();
});

Deno.test("wait() with a count above the number of objects returns once all of them are ready", async () => {
  const a = new Event();
  const b = new Event();
  a.set();
  spawn(() => b.set());
  const order: string[] = [];
  const timer = sleep(500).then(() => order.push("timer"));
  const got = await wait([a, b], { count: 3, timeout: 30_000 });
  order.push("wait");
  await timer;
  assert.deepEqual(got, [a, b]);
  assert.deepEqual(order, ["wait", "timer"]);
});
