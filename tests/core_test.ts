import "./_deadline.ts";
import assert from "node:assert/strict";
import { Loop, SLICE_MS } from "../core.ts";

Deno.test("Loop.runCallback() runs callbacks in FIFO order after the caller yields", async () => {
  const loop = new Loop();
  const seen: string[] = [];
  const done = Promise.withResolvers<void>();
  loop.runCallback((a: string, b: string) => seen.push(a + b), "a", "1");
  loop.runCallback(() => {
    seen.push("b");
    loop.runCallback(() => {
      seen.push("queued while running");
      done.resolve();
    });
  });
  loop.runCallback(() => seen.push("c"));
  assert.equal(loop.pendingCount, 3);
  assert.deepEqual(seen, []);
  await done.promise;
  assert.deepEqual(seen, ["a1", "b", "c", "queued while running"]);
});

Deno.test("Loop callbacks that throw are reported through onError and the rest still run", async () => {
  const loop = new Loop();
  const errors: unknown[] = [];
  loop.onError = (_ctx, e) => errors.push(e);
  const done = Promise.withResolvers<void>();
  const boom = new Error("boom");
  loop.runCallback(() => {
    throw boom;
  });
  loop.runCallback(done.resolve);
  await done.promise;
  assert.deepEqual(errors, [boom]);
});

Deno.test("CallbackWatcher.stop() prevents the callback", async () => {
  const loop = new Loop();
  let ran = false;
  const cb = loop.runCallback(() => ran = true);
  assert.equal(cb.active, true);
  cb.stop();
  const done = Promise.withResolvers<void>();
  loop.runCallback(done.resolve);
  await done.promise;
  assert.equal(ran, false);
});

Deno.test("TimerWatcher fires once, repeats, stops, and validates its durations", async () => {
  const loop = new Loop();
  const once = Promise.withResolvers<number>();
  const t = loop.timer(2);
  t.start(once.resolve, 7);
  assert.equal(await once.promise, 7);
  assert.equal(t.active, false);

  let ticks = 0;
  const three = Promise.withResolvers<void>();
  const r = loop.timer(1, 1);
  r.start(() => {
    if (++ticks === 3) three.resolve();
  });
  await three.promise;
  r.stop();
  assert.equal(r.active, false);
  assert.equal(ticks, 3);

  const stopped = loop.timer(1);
  stopped.start(() => assert.fail("stopped timers never fire"));
  stopped.stop();
  stopped.stop();

  assert.throws(() => loop.timer(-1), RangeError);
  assert.throws(() => loop.timer(1, Number.NaN), RangeError);
  assert.throws(() => loop.timer(1).start(42 as unknown as () => void), TypeError);
  assert.throws(() => loop.runCallback(null as unknown as () => void), TypeError);
});

Deno.test("TimerWatcher with ref: false still fires while the process is busy", async () => {
  const loop = new Loop();
  const fired = Promise.withResolvers<void>();
  const t = loop.timer(1, 0, { ref: false });
  assert.equal(t.ref, false);
  t.start(fired.resolve);
  const keepAlive = setTimeout(() => {}, 1000);
  await fired.promise;
  clearTimeout(keepAlive);
});

Deno.test("Loop.now() is cached until updateNow()", () => {
  const loop = new Loop();
  const a = loop.now();
  const spin = performance.now() + 2;
  while (performance.now() < spin) { /* wait 2 ms */ }
  assert.equal(loop.now(), a);
  loop.updateNow();
  assert.ok(loop.now() > a);
});

Deno.test("pendingCount counts only what is left when a long run queue is drained in slices", async () => {
  const loop = new Loop();
  const n = 3000;
  let ran = 0;
  const firstRan = Promise.withResolvers<void>();
  const lastRan = Promise.withResolvers<void>();
  loop.runCallback(() => {
    // Busy for longer than a slice, so that the loop yields to the event loop after a while.
    const until = performance.now() + 3 * SLICE_MS;
    while (performance.now() < until) { /* busy */ }
    ran++;
    firstRan.resolve();
  });
  for (let i = 1; i < n; i++) {
    loop.runCallback(() => {
      if (++ran === n) lastRan.resolve();
    });
  }
  assert.equal(loop.pendingCount, n);
  await firstRan.promise; // resumes between two slices
  const left = loop.pendingCount;
  assert.ok(ran > 1 && ran < n, `the first slice ran ${ran} of ${n} callbacks`);
  assert.equal(left, n - ran);
  await lastRan.promise;
  assert.equal(ran, n);
  assert.equal(loop.pendingCount, 0);
});
