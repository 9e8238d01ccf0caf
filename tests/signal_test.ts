/**
 * Every blocking call takes `signal?: AbortSignal` in its options bag, as the platform's APIs
 * do: aborting it rejects the wait with the signal's reason (at once if it is already aborted),
 * and the wait is forgotten by the object it waited on.
 */
import "./_deadline.ts";
import assert from "node:assert/strict";
import { type Greenlet, joinAll, killAll, spawn } from "../greenlet.ts";
import { iwait, sleep, wait } from "../hub.ts";
import { AsyncResult, Event } from "../event.ts";
import { Queue } from "../queue.ts";
import { RLock, Semaphore } from "../lock.ts";
import { Group, Pool } from "../pool.ts";

/** Greenlets the cases leave waiting for ever: killed after each case. */
const stuck: Greenlet<unknown>[] = [];
const forever = (): Promise<boolean> => new Event().wait();
const spawnStuck = (): Greenlet<boolean> => {
  const g = spawn(forever);
  stuck.push(g);
  return g;
};

const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
  ["sleep", (signal) => sleep(60_000, { signal })],
  ["Event.wait", (signal) => new Event().wait({ signal })],
  ["AsyncResult.get", (signal) => new AsyncResult().get({ signal })],
  ["AsyncResult.wait", (signal) => new AsyncResult().wait({ signal })],
  ["Greenlet.join", (signal) => spawnStuck().join({ signal })],
  ["Greenlet.get", (signal) => spawnStuck().get({ signal })],
  ["joinAll", (signal) => joinAll([spawnStuck()], { signal })],
  ["wait", (signal) => wait([new Event()], { signal })],
  ["iwait", (signal) => iwait([new Event()], { signal }).next()],
  ["wait() for every greenlet", (signal) => {
    spawnStuck();
    return wait(undefined, { signal });
  }],
  ["Queue.get", (signal) => new Queue().get({ signal })],
  ["Queue.put", async (signal) => {
    const q = new Queue<number>(1);
    await q.put(1);
    return q.put(2, { signal });
  }],
  ["Queue.join", async (signal) => {
    const q = new Queue<number>();
    await q.put(1);
    return q.join({ signal });
  }],
  ["Semaphore.acquire", (signal) => new Semaphore(0).acquire({ signal })],
  ["Semaphore.hold", (signal) => new Semaphore(0).hold({ signal })],
  ["RLock.hold", async (signal) => {
    const lock = new RLock();
    stuck.push(spawn(async () => {
      await lock.acquire();
      await forever();
    }));
    await sleep(0);
    return lock.hold({ signal });
  }],
  ["Pool.waitAvailable", async (signal) => {
    const pool = new Pool(1);
    stuck.push(await pool.spawn(forever));
    return pool.waitAvailable({ signal });
  }],
  ["Pool.add", async (signal) => {
    const pool = new Pool(1);
    stuck.push(await pool.spawn(forever));
    return pool.add(spawnStuck(), { signal });
  }],
  ["Group.join", (signal) => {
    const group = new Group();
    stuck.push(group.spawn(forever));
    return group.join({ signal });
  }],
];

Deno.test("aborting options.signal ends every blocking call with its reason", async (t) => {
  for (const [name, call] of calls) {
    await t.step(name, async () => {
      const ctl = new AbortController();
      const reason = new Error(`aborted: ${name}`);
      const p = call(ctl.signal);
      await sleep(0);
      ctl.abort(reason);
      await assert.rejects(p, (e) => e === reason);
      const already = AbortSignal.abort(new Error("already"));
      await assert.rejects(call(already), /already/);
      await killAll(stuck.splice(0));
    });
  }
});

Deno.test("an aborted Queue.get is forgotten: the next item stays for the next getter", async () => {
  const q = new Queue<string>();
  const ctl = new AbortController();
  const p = q.get({ signal: ctl.signal });
  ctl.abort(new Error("gone"));
  await assert.rejects(p, /gone/);
  await q.put("kept");
  assert.equal(q.qsize(), 1);
  assert.equal(await q.get(), "kept");
});

Deno.test("a signal that is not an AbortSignal is a TypeError naming it", async () => {
  // deno-lint-ignore no-explicit-any
  const bad = "no" as any;
  await assert.rejects(
    sleep(10, { signal: bad }),
    /'signal' must be an AbortSignal: current value is "no"/,
  );
  await assert.rejects(new Event().wait({ signal: bad }), TypeError);
});
