import "./_deadline.ts";
import assert from "node:assert/strict";
import { BoundedSemaphore, Lock, RLock, Semaphore } from "../lock.ts";
import { spawn } from "../greenlet.ts";
import { BlockingSwitchOutError, idle, iwait, sleep, wait } from "../hub.ts";
import { Timeout } from "../timeout.ts";
import { assertSame, assertTimeoutContract, captureReports, firstOf } from "./_helpers.ts";

Deno.test("Semaphore(0).acquire({ timeout: 10 }) resolves false", async () => {
  const sem = new Semaphore(0);
  assert.equal(await sem.acquire({ timeout: 10 }), false);
  assert.equal(sem.waiters, 0);
  assert.equal(sem.counter, 0);
});

Deno.test("Semaphore.acquire() resolves false after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Semaphore(0).acquire({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
});

Deno.test("RLock.acquire() resolves false after its timeout", async (t) => {
  const lock = new RLock();
  const owner = spawn(async () => {
    await lock.acquire();
    await sleep(10_000);
  });
  await idle();
  await assertTimeoutContract(t, {
    call: (timeout) => lock.acquire({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
  await owner.kill();
});

Deno.test("Semaphore.hold() rejects with Timeout after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Semaphore(0).hold({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Timeout, `got ${error}`),
  });
});

Deno.test("Semaphore serves waiters in FIFO order", async () => {
  const sem = new Semaphore(0);
  const order: string[] = [];
  const waiters = ["a", "b", "c"].map((name) =>
    spawn(async () => {
      await sem.acquire();
      order.push(name);
    })
  );
  await idle();
  assert.equal(sem.waiters, 3);
  sem.release();
  sem.release();
  sem.release();
  for (const w of waiters) await w.join();
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(sem.counter, 0);
});

Deno.test("Semaphore.release() hands the permit to the first waiter: no overtaking", async () => {
  const sem = new Semaphore(1);
  assert.equal(await sem.acquire(), true);
  const waiter = spawn(() => sem.acquire());
  await idle();
  sem.release();
  // The permit went to the waiter, even though it has not resumed yet.
  assert.equal(sem.counter, 0);
  assert.equal(await sem.acquire({ blocking: false }), false);
  await waiter.join();
  assert.equal(waiter.value, true);
  sem.release();
  assert.equal(sem.counter, 1);
});

Deno.test("Semaphore: kill() interrupts a waiting acquire, which holds nothing", async () => {
  const sem = new Semaphore(0);
  const waiter = spawn(() => sem.acquire());
  await idle();
  await waiter.kill();
  assert.equal(sem.waiters, 0);
  sem.release();
  assert.equal(sem.counter, 1);
});

Deno.test("Semaphore.hold() releases the permit when the using scope ends", async (t) => {
  const sem = new Semaphore(2);
  {
    using _a = await sem.hold();
    using _b = await sem.hold();
    assert.equal(sem.locked(), true);
  }
  assert.equal(sem.counter, 2);
  await t.step("even when the scope throws", async () => {
    await assert.rejects(async () => {
      using _held = await sem.hold();
      throw new Error("boom");
    }, /boom/);
    assert.equal(sem.counter, 2);
  });
  await t.step("releasing a Hold twice releases once", async () => {
    const held = await sem.hold();
    held.release();
    held.release();
    assert.equal(sem.counter, 2);
  });
});

Deno.test("Semaphore value is validated", () => {
  assert.throws(
    () => new Semaphore(-1),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === "'value' must be a non-negative integer: current value is -1",
  );
  assert.throws(() => new Semaphore(0.5), RangeError);
});

Deno.test("BoundedSemaphore.release() throws when released too often", async () => {
  const sem = new BoundedSemaphore(2);
  await sem.acquire();
  sem.release();
  assert.throws(() => sem.release(), RangeError);
  assert.equal(sem.counter, 2);
});

Deno.test("Lock allows one holder at a time", async () => {
  const lock = new Lock();
  const log: string[] = [];
  const worker = async (name: string) => {
    using _held = await lock.hold();
    log.push(`${name} in`);
    await sleep(1);
    log.push(`${name} out`);
  };
  const a = spawn(worker, "a");
  const b = spawn(worker, "b");
  await a.join();
  await b.join();
  assert.deepEqual(log, ["a in", "a out", "b in", "b out"]);
  assert.equal(lock.locked(), false);
  assert.throws(() => lock.release(), RangeError);
});

Deno.test("RLock is reentrant for its owner and exclusive for others", async (t) => {
  const lock = new RLock();
  const owner = spawn(async () => {
    await lock.acquire();
    await lock.acquire();
    assert.equal(lock.isOwned(), true);
    await sleep(5);
    lock.release();
    assert.equal(lock.locked(), true);
    lock.release();
  });
  await idle();
  assert.equal(lock.locked(), true);
  assert.equal(lock.isOwned(), false);
  await t.step("a non-owner cannot release it", () => {
    assert.throws(() => lock.release(), Error);
  });
  await t.step("a waiter gets it when the owner releases the last level", async () => {
    assert.equal(await lock.acquire(), true);
    assert.equal(lock.isOwned(), true);
    await owner.join();
    assert.equal(owner.successful(), true);
    lock.release();
    assert.equal(lock.locked(), false);
  });
  await t.step("hold() nests", async () => {
    {
      using _a = await lock.hold();
      using _b = await lock.hold();
      assert.equal(lock.isOwned(), true);
    }
    assert.equal(lock.locked(), false);
  });
});

Deno.test("RLock: a waiter killed while waiting does not become the owner", async () => {
  const lock = new RLock();
  await lock.acquire();
  const waiter = spawn(() => lock.acquire());
  await idle();
  await waiter.kill();
  lock.release();
  assert.equal(lock.locked(), false);
});

Deno.test("Semaphore: a Timeout interrupts a waiting acquire", async () => {
  const sem = new Semaphore(0);
  const g = spawn(async () => {
    using _t = Timeout.start(5);
    return await sem.acquire();
  });
  const report = await captureReports(() => g.join());
  assert.match(report, /failed with Timeout/);
  assert.ok(g.exception instanceof Timeout);
  assert.equal(sem.waiters, 0);
});

Deno.test("uncontended acquire/release loops do not starve timers", async (t) => {
  const LIMIT = 3_000_000;
  for (const lock of [new Semaphore(1), new RLock()]) {
    await t.step(lock.constructor.name, async () => {
      let woke = false;
      const sleeper = spawn(async () => {
        await sleep(10);
        woke = true;
      });
      let n = 0;
      const busy = spawn(async () => {
        while (!woke && n < LIMIT) {
          await lock.acquire();
          lock.release();
          n++;
        }
      });
      await busy.join();
      await sleeper.join();
      assert.equal(woke, true);
      assert.ok(busy.successful());
      assert.ok(n < LIMIT, "the timer only fired after the loop ended");
    });
  }
});

Deno.test("Semaphore is linkable: ready(), rawlink(), unlink(), wait() and iwait()", async (t) => {
  await t.step(
    "a free semaphore is ready at once (gevent's test_rawlink_on_unacquired)",
    async () => {
      const sem = new Semaphore();
      assert.equal(sem.ready(), true);
      assertSame(await wait([sem]), [sem]);
      assert.equal(sem.counter, 1, "waiting does not take the permit");
      assert.equal(new Semaphore(0).ready(), false);
    },
  );
  await t.step("wait([sem]) resolves once a permit is released", async () => {
    const sem = new Semaphore(0);
    const waiter = spawn(() => wait([sem]));
    await idle();
    assert.equal(waiter.dead, false);
    sem.release();
    await waiter.join();
    assert.deepEqual(waiter.value, [sem]);
    assert.equal(sem.counter, 1);
  });
  await t.step("iwait() over a taken Lock and a free one yields the free one first", async () => {
    const taken = new Lock();
    const free = new Lock();
    await taken.acquire();
    const order: Lock[] = [];
    const waiter = spawn(async () => {
      for await (const lock of iwait([taken, free])) order.push(lock);
    });
    await idle();
    assert.deepEqual(order, [free]);
    taken.release();
    await waiter.join();
    assert.deepEqual(order, [free, taken]);
  });
  await t.step("wait() with a timeout on a taken semaphore returns nothing", async () => {
    assert.deepEqual(await wait([new BoundedSemaphore(0)], { timeout: 5 }), []);
  });
  await t.step("callbacks run in the hub, once each (gevent's test_release_twice)", async () => {
    const sem = new Semaphore();
    const result: string[] = [];
    const seen: unknown[] = [];
    let blocking: Promise<unknown> | undefined;
    sem.rawlink((s) => {
      result.push("a");
      seen.push(s);
      blocking = sleep(0).catch((error) => error); // blocking calls are refused in the hub
    });
    sem.release();
    sem.rawlink(() => result.push("b"));
    sem.release();
    await idle();
    assert.deepEqual(result.sort(), ["a", "b"]);
    assert.deepEqual(seen, [sem]);
    assert.ok(await blocking instanceof BlockingSwitchOutError);
    sem.release();
    await idle();
    assert.deepEqual(result, ["a", "b"], "a callback is unlinked before it is called");
  });
  await t.step("unlink() removes a callback", async () => {
    const sem = new Semaphore(0);
    let called = false;
    const cb = () => called = true;
    sem.rawlink(cb);
    sem.unlink(cb);
    sem.unlink(cb); // unlinking twice is harmless
    sem.release();
    await idle();
    assert.equal(called, false);
  });
  await t.step("waiting acquirers are served before callbacks", async () => {
    const sem = new Semaphore(0);
    const acquirer = spawn(() => sem.acquire());
    await idle();
    let called = 0;
    sem.rawlink(() => called++);
    sem.release(); // goes to the acquirer: no permit is left over
    await acquirer.join();
    await idle();
    assert.equal(called, 0);
    sem.release();
    await idle();
    assert.equal(called, 1);
  });
  await t.step("a callback that throws is reported and the others still run", async () => {
    const sem = new Semaphore(0);
    let ran = false;
    sem.rawlink(() => {
      throw new URIError("link failed");
    });
    sem.rawlink(() => ran = true);
    const report = await captureReports(async () => {
      sem.release();
      await idle();
    });
    assert.match(report, /URIError: link failed/);
    assert.equal(ran, true);
  });
  await t.step("rawlink() of a non-function throws TypeError", () => {
    assert.throws(
      () => new Semaphore().rawlink("x" as never),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `'callback' must be a function: current value is "x"`,
    );
  });
});

Deno.test("Lock calls reject a non-object options bag with a TypeError naming it", async () => {
  const calls: [string, () => Promise<unknown>][] = [
    ["Semaphore.acquire", () => new Semaphore().acquire("x" as never)],
    ["Semaphore.hold", () => new Semaphore().hold("x" as never)],
    ["RLock.acquire", () => new RLock().acquire("x" as never)],
    ["RLock.hold", () => new RLock().hold(null as never)],
  ];
  for (const [name, call] of calls) {
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => p = call(), name);
    await assert.rejects(p!, (e: Error) => {
      assert.ok(e instanceof TypeError, name);
      assert.match(e.message, /^'options' must be an object: current value is (?:"x"|null)$/);
      return true;
    });
  }
});

Deno.test("lock waits with a 2**31 ms timeout do not fire early", async () => {
  const sem = new Semaphore(0);
  const lock = new RLock();
  await lock.acquire();
  for (
    const call of [
      () => sem.acquire({ timeout: 2 ** 31 }),
      () => lock.acquire({ timeout: 2 ** 31 }),
    ]
  ) {
    const g = spawn(call);
    const first = await firstOf(g.join().then(() => "wait"), 20);
    assert.equal(first, "timer", `the wait ended early with ${g.value}`);
    await g.kill();
  }
  lock.release();
});

Deno.test("a waiter survives the compaction of a wait list emptied by many timeouts", async () => {
  const sem = new Semaphore(0);
  const first = sem.acquire();
  const second = sem.acquire();
  const timed = Array.from({ length: 40 }, () => sem.acquire({ timeout: 1 }));
  sem.release(); // to `first`: the wait list now starts after its head
  assert.equal(await first, true);
  assert.deepEqual(await Promise.all(timed), timed.map(() => false));
  assert.equal(sem.waiters, 1);
  sem.release(); // to `second`, still waiting
  assert.equal(sem.counter, 0);
  assert.equal(await second, true);
});

Deno.test("RLock.acquire({ blocking: false }) never queues, even if the lock is freed at once", async () => {
  const lock = new RLock();
  const go = new Semaphore(0);
  const owner = spawn(async () => {
    await lock.acquire();
    await go.acquire();
    lock.release();
  });
  await sleep(0);
  assert.equal(lock.locked(), true);
  const attempt = lock.acquire({ blocking: false });
  go.release();
  await owner.join();
  assert.equal(await attempt, false);
  assert.equal(lock.locked(), false);
});
