import "./_deadline.ts";
import assert from "node:assert/strict";
import { joinAll, spawn } from "../greenlet.ts";
import { BlockingSwitchOutError, iwait, sleep, wait } from "../hub.ts";
import { AsyncResult, Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { assertTimeoutContract } from "./_helpers.ts";

Deno.test("Event.wait() resolves true once set, waking waiters in order", async () => {
  const ev = new Event();
  const order: number[] = [];
  const gs = [1, 2, 3].map((n) =>
    spawn(async () => {
      assert.equal(await ev.wait(), true);
      order.push(n);
    })
  );
  await sleep(0);
  assert.equal(ev.linkCount(), 3);
  ev.set();
  await joinAll(gs);
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(ev.linkCount(), 0);
});

Deno.test("Event.wait() on a set event resolves true at once; clear() resets it", async () => {
  const ev = new Event();
  ev.set();
  assert.equal(ev.isSet(), true);
  assert.equal(ev.ready(), true);
  assert.equal(await ev.wait({ timeout: 0 }), true);
  ev.clear();
  assert.equal(ev.isSet(), false);
  assert.equal(await ev.wait({ timeout: 0 }), false);
});

Deno.test("Event.wait() resolves false only when its timeout elapsed", async (t) => {
  const ev = new Event();
  await assertTimeoutContract(t, {
    call: (timeout) => ev.wait({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
  assert.equal(ev.linkCount(), 0, "timed-out waiters are forgotten");
});

Deno.test("Event.wait() set before its timeout resolves true", async () => {
  const ev = new Event();
  setTimeout(() => ev.set(), 5);
  assert.equal(await ev.wait({ timeout: 1000 }), true);
});

Deno.test("Event.rawlink() runs in the hub each time the event is set", async () => {
  const ev = new Event();
  const seen: unknown[] = [];
  const cb = (source: Event) => {
    seen.push(source);
    sleep(0).catch((e) => seen.push(e instanceof BlockingSwitchOutError));
  };
  ev.rawlink(cb);
  ev.set();
  await sleep(0);
  await sleep(0);
  assert.deepEqual(seen, [ev, true]);
  ev.unlink(cb);
  ev.clear();
  ev.set();
  await sleep(0);
  assert.equal(seen.length, 2);
  assert.throws(() => ev.rawlink(1 as unknown as () => void), TypeError);
});

Deno.test("AsyncResult.get() returns the value set later", async () => {
  const result = new AsyncResult<string>();
  assert.equal(result.ready(), false);
  const g = spawn(() => result.get());
  await sleep(0);
  result.set("done");
  await g.join();
  assert.equal(g.value, "done");
  assert.equal(result.successful(), true);
  assert.equal(result.value, "done");
  assert.equal(result.getNowait(), "done");
});

Deno.test("AsyncResult.setException() makes get() and getNowait() throw it", async () => {
  const result = new AsyncResult<number>();
  const err = new TypeError("failed");
  result.setException(err);
  assert.equal(result.ready(), true);
  assert.equal(result.successful(), false);
  assert.equal(result.exception, err);
  await assert.rejects(result.get(), (e) => e === err);
  assert.throws(() => result.getNowait(), (e) => e === err);
  assert.equal(await result.wait(), undefined, "wait() never throws the stored error");
});

Deno.test("AsyncResult.getNowait() and get({ block: false }) throw Timeout when unready", async () => {
  const result = new AsyncResult();
  assert.throws(() => result.getNowait(), Timeout);
  await assert.rejects(result.get({ block: false }), Timeout);
});

Deno.test("AsyncResult.get() honours the timeout contract", async (t) => {
  const result = new AsyncResult();
  await assertTimeoutContract(t, {
    call: (timeout) => result.get({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Timeout),
  });
});

Deno.test("AsyncResult.wait() honours the timeout contract", async (t) => {
  const result = new AsyncResult<number>();
  await assertTimeoutContract(t, {
    call: (timeout) => result.wait({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, undefined);
    },
  });
  result.set(3);
  assert.equal(await result.wait({ timeout: 0 }), 3);
});

Deno.test("AsyncResult.rawlink() fires when set, at once if already set", async () => {
  const result = new AsyncResult<number>();
  const seen: number[] = [];
  result.rawlink((r) => seen.push(r.value!));
  result.set(1);
  await sleep(0);
  const late = new AsyncResult<number>();
  late.set(2);
  late.rawlink((r) => seen.push(r.value!));
  await sleep(0);
  assert.deepEqual(seen, [1, 2]);
});

Deno.test("wait() and iwait() give objects that are already ready in the order given", async () => {
  const [a, b, c] = [new Event(), new Event(), new Event()];
  b.set();
  a.set();
  assert.ok((await wait([a, b, c], { count: 2 })).every((e, i) => e === [a, b][i]));
  const order: Event[] = [];
  for await (const e of iwait([a, b, c], { count: 2 })) order.push(e);
  assert.ok(order[0] === a && order[1] === b && order.length === 2);
});

Deno.test("a rawlink that clears the Event stops the links after it", async () => {
  const e = new Event();
  const log: string[] = [];
  e.rawlink(() => {
    log.push("first clears");
    e.clear();
  });
  e.rawlink(() => log.push("second"));
  e.set();
  await sleep(0);
  await sleep(0);
  assert.deepEqual(log, ["first clears"]);
});

Deno.test("AsyncResult: a later setException() hides the earlier value, and back", () => {
  const r = new AsyncResult<number>();
  r.set(1);
  const boom = new Error("boom");
  r.setException(boom);
  assert.equal(r.value, undefined);
  assert.equal(r.exception, boom);
  assert.throws(() => r.getNowait(), (e) => e === boom);
  r.set(2);
  assert.equal(r.exception, undefined);
  assert.equal(r.value, 2);
});

Deno.test("a join() cut short by kill or Timeout leaves no link behind", async () => {
  const target = spawn(() => new Event().wait());
  const joiner = spawn(() => target.join());
  const timed = spawn(() => withTimeout(10, () => target.join(), { timeoutValue: "late" }));
  await sleep(0);
  assert.equal(target.hasLinks(), true);
  await joiner.kill();
  assert.equal(await timed.get(), "late");
  assert.equal(target.hasLinks(), false);
  await target.kill();
});

Deno.test("a null options bag is rejected with a TypeError naming 'options'", async () => {
  const named = (e: unknown) =>
    e instanceof TypeError && e.message === "'options' must be an object: current value is null";
  await assert.rejects(new Event().wait(null as never), named);
  await assert.rejects(new AsyncResult().get(null as never), named);
  await assert.rejects(wait(undefined, null as never), named);
});

Deno.test("waiters that time out or are aborted no longer count as links", async () => {
  const ev = new Event();
  const a = ev.wait({ timeout: 1 });
  const b = ev.wait({ timeout: 1 });
  const ac = new AbortController();
  const c = ev.wait({ signal: ac.signal });
  const d = ev.wait();
  assert.equal(ev.linkCount(), 4);
  assert.deepEqual(await Promise.all([a, b]), [false, false]);
  assert.equal(ev.linkCount(), 2);
  ac.abort(new Error("stop"));
  await assert.rejects(c);
  assert.equal(ev.linkCount(), 1);
  ev.set();
  assert.equal(await d, true);
  assert.equal(ev.linkCount(), 0);
});

Deno.test("linkCount() counts rawlinks as well as waiters", async () => {
  const ev = new Event();
  const callback = () => {};
  ev.rawlink(callback);
  const waiting = ev.wait();
  assert.equal(ev.linkCount(), 2);
  ev.unlink(callback);
  assert.equal(ev.linkCount(), 1);
  ev.set();
  assert.equal(await waiting, true);
});
