import "./_deadline.ts";
import assert from "node:assert/strict";
import { Group, Pool, PoolFull } from "../pool.ts";
import { Greenlet, GreenletExit, spawn } from "../greenlet.ts";
import { idle, sleep } from "../hub.ts";
import { Timeout } from "../timeout.ts";
import { Event } from "../event.ts";
import { Local } from "../local.ts";
import { assertSame, assertTimeoutContract, captureReports, firstOf } from "./_helpers.ts";

Deno.test("Pool(1) makes a second spawn wait for the first to finish", async () => {
  const pool = new Pool(1);
  const gate = new Event();
  const log: string[] = [];
  const first = await pool.spawn(async () => {
    await gate.wait();
    log.push("first done");
  });
  assert.equal(pool.full(), true);
  assert.equal(pool.freeCount(), 0);
  let second: Greenlet<void> | undefined;
  const spawner = spawn(async () => {
    second = await pool.spawn(() => {
      log.push("second ran");
    });
  });
  await idle();
  assert.equal(second, undefined, "the second spawn did not wait");
  assert.equal(await pool.join({ timeout: 10 }), false);
  gate.set();
  await spawner.join();
  await second!.join();
  assert.deepEqual(log, ["first done", "second ran"]);
  assert.equal(first.dead, true);
  assert.equal(pool.size, 0);
});

Deno.test("Pool spawners waiting for a slot are served in FIFO order", async () => {
  const pool = new Pool(1);
  const gate = new Event();
  await pool.spawn(() => gate.wait());
  const order: number[] = [];
  const spawners = [1, 2, 3].map((n) => spawn(() => pool.spawn(() => order.push(n))));
  await idle();
  gate.set();
  for (const s of spawners) await s.join();
  await pool.join();
  assert.deepEqual(order, [1, 2, 3]);
});

Deno.test("Group.join({ timeout: 10 }) resolves false while a member runs", async () => {
  const group = new Group();
  const g = group.spawn(() => sleep(10_000));
  assert.equal(await group.join({ timeout: 10 }), false);
  await group.kill();
  assert.equal(g.dead, true);
  assert.equal(await group.join({ timeout: 0 }), true);
});

Deno.test("Group.join() resolves false after its timeout", async (t) => {
  const group = new Group();
  group.spawn(() => sleep(10_000));
  await assertTimeoutContract(t, {
    call: (timeout) => group.join({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
  await group.kill();
});

Deno.test("Pool.waitAvailable() resolves 0 after its timeout", async (t) => {
  const pool = new Pool(1);
  await pool.spawn(() => sleep(10_000));
  await assertTimeoutContract(t, {
    call: (timeout) => pool.waitAvailable({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, 0);
    },
  });
  await pool.kill();
  assert.equal(await pool.waitAvailable({ timeout: 0 }), 1);
});

Deno.test("Pool.add() rejects with PoolFull after its timeout", async (t) => {
  const pool = new Pool(1);
  await pool.spawn(() => sleep(10_000));
  await assertTimeoutContract(t, {
    call: (timeout) => pool.add(new Greenlet(() => 1), { timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof PoolFull, `got ${error}`),
  });
  await t.step("blocking: false rejects at once", async () => {
    await assert.rejects(pool.add(new Greenlet(() => 1), { blocking: false }), PoolFull);
  });
  await pool.kill();
});

Deno.test("Pool.waitAvailable() wakes when a member finishes", async () => {
  const pool = new Pool(2);
  const gate = new Event();
  await pool.spawn(() => gate.wait());
  await pool.spawn(() => gate.wait());
  const watcher = spawn(() => pool.waitAvailable());
  await idle();
  assert.equal(watcher.dead, false);
  gate.set();
  await watcher.join();
  assert.ok((watcher.value as number) >= 1);
  await pool.join();
});

Deno.test("applyAsync() never blocks, even on a full pool", async () => {
  const pool = new Pool(1);
  const gate = new Event();
  await pool.spawn(() => gate.wait());
  const seen: number[] = [];
  const g = pool.applyAsync((a: number, b: number) => a + b, [2, 3], {
    callback: (v) => seen.push(v),
  });
  assert.ok(g instanceof Greenlet);
  assert.equal(pool.has(g), false, "a full pool runs it through a helper greenlet");
  gate.set();
  assert.equal(await g.get(), 5);
  await idle();
  assert.deepEqual(seen, [5]);
  await pool.join();
  const direct = pool.applyAsync(() => "in the pool");
  assert.equal(pool.has(direct), true);
  assert.equal(await direct.get(), "in the pool");
});

Deno.test("apply() returns the value, or rejects with the error", async (t) => {
  const pool = new Pool(2);
  assert.equal(await pool.apply((a: number) => a * 2, [21]), 42);
  await t.step("errors reject", async () => {
    await captureReports(async () => {
      await assert.rejects(
        pool.apply(() => {
          throw new TypeError("bad");
        }),
        TypeError,
      );
    });
  });
  await t.step("called from a member of a full pool it runs directly", async () => {
    const one = new Pool(1);
    const outer = await one.spawn(() => one.apply(() => "nested"));
    await outer.join();
    assert.equal(outer.value, "nested");
  });
});

Deno.test("imap over [1, 0, 2] yields 1, throws, then yields 2", async () => {
  const pool = new Pool(2);
  const it = pool.imap((x: number) => {
    if (x === 0) throw new RangeError("zero");
    return x;
  }, [1, 0, 2]);
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await assert.rejects(it.next(), RangeError);
  assert.deepEqual(await it.next(), { value: 2, done: false });
  assert.equal((await it.next()).done, true);
  assert.equal(pool.size, 0);
});

Deno.test("imap preserves the order of the items", async () => {
  const group = new Group();
  const out: number[] = [];
  for await (
    const v of group.imap(async (ms: number) => {
      await sleep(ms);
      return ms;
    }, [6, 1, 3, 0])
  ) out.push(v);
  assert.deepEqual(out, [6, 1, 3, 0]);
});

Deno.test("imapUnordered yields in completion order", async () => {
  const pool = new Pool(3);
  const events = [new Event(), new Event(), new Event()];
  const it = pool.imapUnordered(async (i: number) => {
    await events[i].wait();
    return i;
  }, [0, 1, 2]);
  const out: number[] = [];
  const consumer = spawn(async () => {
    for await (const v of it) out.push(v);
  });
  for (const i of [2, 0, 1]) {
    events[i].set();
    await idle();
  }
  await consumer.join();
  assert.deepEqual(out, [2, 0, 1]);
});

Deno.test("imap runs at most the pool's capacity at once", async () => {
  const pool = new Pool(3);
  let running = 0;
  let most = 0;
  const results = await pool.map(async (x: number) => {
    most = Math.max(most, ++running);
    await sleep(1);
    running--;
    return x * x;
  }, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(results, [1, 4, 9, 16, 25, 36, 49]);
  assert.equal(most, 3);
});

Deno.test("imap with maxsize bounds the items started and not yet consumed", async () => {
  const group = new Group();
  let started = 0;
  let consumed = 0;
  let most = 0;
  for await (
    const _ of group.imap(
      (x: number) => {
        started++;
        most = Math.max(most, started - consumed);
        return x;
      },
      Array.from({ length: 50 }, (_, i) => i),
      { maxsize: 4 },
    )
  ) {
    consumed++;
    await sleep(0);
  }
  assert.equal(consumed, 50);
  // A result already handed out by the iterator may not have reached the loop body yet.
  assert.ok(most <= 4 + 1, `${most} items were in flight`);
  assert.throws(() => group.imap((x) => x, [1], { maxsize: 0 }), RangeError);
});

Deno.test("imap clears greenlet-local values between items", async () => {
  const local = new Local<number>();
  const pool = new Pool(1);
  const seen = await pool.map((x: number) => {
    const before = local.get();
    local.set(x);
    return before;
  }, [1, 2, 3]);
  assert.deepEqual(seen, [undefined, undefined, undefined]);
});

Deno.test("breaking out of imap kills the workers", async () => {
  const pool = new Pool(4);
  for await (
    const v of pool.imap(async (x: number) => {
      await sleep(x === 0 ? 0 : 10_000);
      return x;
    }, [0, 1, 2, 3])
  ) {
    assert.equal(v, 0);
    break;
  }
  assert.equal(pool.size, 0);
});

Deno.test("map() rejects with the first error; mapAsync() runs it in a greenlet", async () => {
  const group = new Group();
  await captureReports(async () => {
    await assert.rejects(
      group.map((x: number) => {
        if (x === 2) throw new Error("two");
        return x;
      }, [1, 2, 3]),
      /two/,
    );
  });
  const results: number[][] = [];
  const g = group.mapAsync((x: number) => x + 1, [1, 2], { callback: (r) => results.push(r) });
  assert.deepEqual(await g.get(), [2, 3]);
  await idle();
  assert.deepEqual(results, [[2, 3]]);
  assert.equal(group.size, 0);
});

Deno.test("killing a group kills every member", async (t) => {
  const group = new Group();
  const members = [1, 2, 3].map(() => group.spawn(() => sleep(10_000)));
  await idle();
  await group.kill();
  for (const g of members) {
    assert.equal(g.dead, true);
    assert.ok(g.value instanceof GreenletExit);
  }
  assert.equal(group.size, 0);
  await t.step("imap over a killed pool rejects with the kill, then ends", async () => {
    const pool = new Pool(2);
    const it = pool.imap((x: number) => sleep(10_000).then(() => x), [1, 2, 3]);
    const first = it.next();
    await idle();
    await pool.kill();
    await assert.rejects(first, GreenletExit);
    await assert.rejects(it.next(), GreenletExit);
    assert.equal((await it.next()).done, true);
  });
  await t.step("killOne() kills only that member", async () => {
    const g1 = group.spawn(() => sleep(10_000));
    const g2 = group.spawn(() => sleep(10_000));
    await group.killOne(g1);
    assert.equal(g1.dead, true);
    assert.equal(g2.dead, false);
    await group.kill();
  });
});

Deno.test("await using a Group kills and joins what is still running", async () => {
  let inner: Greenlet<void> | undefined;
  let cleaned = false;
  {
    await using group = new Group();
    inner = group.spawn(async () => {
      try {
        await sleep(10_000);
      } finally {
        cleaned = true;
      }
    });
    await idle();
  }
  assert.equal(inner!.dead, true);
  assert.equal(cleaned, true);
});

Deno.test("Group.join({ raiseError: true }) rejects with a member's error", async () => {
  const group = new Group();
  group.spawn(() => sleep(10_000));
  group.spawn(async () => {
    await sleep(1);
    throw new URIError("member failed");
  });
  await captureReports(async () => {
    await assert.rejects(group.join({ raiseError: true }), URIError);
  });
  await group.kill();
});

Deno.test("Group membership: add, discard, has, size, iteration", async () => {
  const gate = new Event();
  const a = new Greenlet(() => gate.wait());
  const b = new Greenlet(() => gate.wait());
  const group = new Group([a]);
  group.start(b);
  assert.equal(group.size, 2);
  assertSame([...group], [a, b]);
  group.discard(a);
  assert.equal(group.has(a), false);
  assert.equal(group.size, 1);
  a.start();
  gate.set();
  await group.join();
  await a.join();
  assert.equal(group.size, 0);
  assert.throws(() => group.add({} as Greenlet), TypeError);
  assert.throws(() => group.spawn(42 as unknown as () => void), TypeError);
});

Deno.test("a member leaves its group as soon as it dies", async () => {
  const group = new Group();
  const g = group.spawn(() => "done");
  await g.join();
  assert.equal(group.has(g), false);
  assert.equal(group.size, 0);
});

Deno.test("Pool capacity is validated", async (t) => {
  for (const bad of [-1, 1.5, Number.NaN]) {
    await t.step(`capacity ${bad} throws RangeError`, () => {
      assert.throws(
        () => new Pool(bad),
        (e: Error) =>
          e instanceof RangeError &&
          e.message ===
            `'capacity' must be a non-negative integer or Infinity: current value is ${bad}`,
      );
    });
  }
  await t.step(`capacity "2" throws TypeError`, () => {
    assert.throws(
      () => new Pool("2" as never),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `'capacity' must be a non-negative integer or Infinity: current value is "2"`,
    );
  });
  await t.step("imap maxsize is validated the same way", () => {
    assert.throws(
      () => new Group().imap((x) => x, [1], { maxsize: 0 }),
      (e: Error) =>
        e instanceof RangeError &&
        e.message === `'maxsize' must be a positive integer or Infinity: current value is 0`,
    );
  });
  await t.step("Pool.spawn() reports a bad fn by rejecting", async () => {
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => p = new Pool(1).spawn(42 as unknown as () => void));
    await assert.rejects(p!, TypeError);
  });
});

Deno.test("imap and imapUnordered handle many items from arrays and generators", async (t) => {
  const N = 5_000;
  function* numbers(): Generator<number> {
    for (let i = 0; i < N; i++) yield i;
  }
  for (const [name, items] of [["array", [...numbers()]], ["generator", numbers()]] as const) {
    await t.step(`imap over an ${name} keeps the order`, async () => {
      const pool = new Pool(7);
      let expected = 0;
      for await (const v of pool.imap((x: number) => x * 2, items)) {
        assert.equal(v, expected * 2);
        expected++;
      }
      assert.equal(expected, N);
    });
  }
  await t.step("imapUnordered yields every result once", async () => {
    const pool = new Pool(7);
    const seen = new Set<number>();
    for await (
      const v of pool.imapUnordered(async (x: number) => {
        if (x % 3 === 0) await sleep(0);
        return x;
      }, numbers())
    ) seen.add(v);
    assert.equal(seen.size, N);
  });
  await t.step("an error thrown by the items' iterator rejects one step", async () => {
    function* broken(): Generator<number> {
      yield 1;
      throw new EvalError("source broke");
    }
    const it = new Group().imap((x: number) => x, broken());
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await assert.rejects(it.next(), EvalError);
    assert.equal((await it.next()).done, true);
  });
});

Deno.test("mod.ts re-exports the queues, locks, pools and Local", async () => {
  const mod = await import("../mod.ts");
  const names = [
    "BoundedSemaphore",
    "Channel",
    "Empty",
    "Full",
    "Group",
    "GroupBase",
    "Hold",
    "LifoQueue",
    "Local",
    "Lock",
    "Pool",
    "PoolFull",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "ShutDown",
    "SimpleQueue",
  ];
  for (const name of names) {
    assert.equal(typeof (mod as Record<string, unknown>)[name], "function", name);
  }
  for (const E of [mod.Empty, mod.Full, mod.ShutDown, mod.PoolFull]) {
    const e = new E();
    assert.ok(e instanceof Error);
    assert.equal(e.name, E.name);
  }
});

Deno.test("Pool: kill() interrupts a spawn waiting for a slot, which takes no slot", async () => {
  const pool = new Pool(1);
  const gate = new Event();
  await pool.spawn(() => gate.wait());
  let ran = false;
  const spawner = spawn(() => pool.spawn(() => ran = true));
  await idle();
  await spawner.kill();
  gate.set();
  await pool.join();
  assert.equal(ran, false);
  assert.equal(pool.freeCount(), 1);
});

Deno.test("imap: a worker killed while fn awaits a plain promise stops after that item", async () => {
  const pool = new Pool(1);
  const release = Promise.withResolvers<void>();
  const started: number[] = [];
  const it = pool.imap(async (x: number) => {
    started.push(x);
    await release.promise; // not a blocking call of the library: the kill waits
    return x;
  }, [1, 2, 3]);
  const first = it.next();
  await idle();
  const [worker] = [...pool];
  const killing = worker.kill();
  release.resolve();
  await killing;
  assert.deepEqual(await first, { value: 1, done: false });
  assert.equal((await it.next()).done, true);
  assert.deepEqual(started, [1]);
  assert.equal(pool.size, 0);
});

Deno.test("imap starts the items before the first step, as gevent's does", async () => {
  const pool = new Pool(2);
  const started: number[] = [];
  const it = pool.imap((x: number) => started.push(x), [1, 2, 3]);
  await idle();
  assert.deepEqual(started.sort(), [1, 2, 3]);
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await it.return!();
});

Deno.test("Pool(0) is valid: it never has a free slot (gevent's TestPool0)", async (t) => {
  const pool = new Pool(0);
  assert.equal(pool.capacity, 0);
  assert.equal(pool.freeCount(), 0);
  assert.equal(pool.full(), true);
  await t.step("waitAvailable() resolves 0 at once, with or without a timeout", async () => {
    for (const options of [{}, { timeout: 10 }, { timeout: 10_000 }, { timeout: 0 }]) {
      const first = await firstOf(pool.waitAvailable(options), 20);
      assert.equal(first, 0, `waitAvailable(${JSON.stringify(options)})`);
    }
  });
  await t.step("add() cannot add; a spawn waits until it is killed", async () => {
    await assert.rejects(pool.add(new Greenlet(() => 1), { blocking: false }), PoolFull);
    let ran = false;
    const spawner = spawn(() => pool.spawn(() => ran = true));
    await idle();
    assert.equal(spawner.dead, false);
    await spawner.kill();
    assert.equal(ran, false);
    assert.equal(pool.size, 0);
  });
});

Deno.test("Pool(Infinity) and imap({ maxsize: Infinity }) are unbounded", async () => {
  const pool = new Pool(Infinity);
  assert.equal(pool.capacity, Infinity);
  assert.equal(pool.freeCount(), Infinity);
  assert.equal(pool.full(), false);
  assert.deepEqual(await pool.map((x: number) => x * 2, [1, 2, 3]), [2, 4, 6]);
  const out: number[] = [];
  for await (const v of pool.imap((x: number) => x, [1, 2], { maxsize: Infinity })) out.push(v);
  assert.deepEqual(out, [1, 2]);
});

class SpecialError extends Error {}

/** gevent's `Undead`: catches every kill but `SpecialError`, counting the shots. */
function undead(counter: { shots: number }): () => Promise<void> {
  return async () => {
    const never = new Event();
    for (;;) {
      try {
        await never.wait();
      } catch (error) {
        if (error instanceof SpecialError) return;
        counter.shots++;
      }
    }
  };
}

Deno.test("Group.killOne() and kill() shoot each member once (gevent's test_kill_fires_once)", async () => {
  const u1 = { shots: 0 };
  const u2 = { shots: 0 };
  const p1 = spawn(undead(u1));
  const p2 = spawn(undead(u2));
  await idle();
  const s = new Group([p1, p2]);
  const check = (shots1: number, shots2: number) => {
    assert.equal(p1.dead, false);
    assert.equal(p2.dead, false);
    assert.deepEqual([u1.shots, u2.shots], [shots1, shots2]);
  };
  await s.killOne(p1, { block: false });
  await idle();
  check(1, 0);
  await s.killOne(p1, { block: false });
  await s.kill({ block: false });
  await s.kill({ block: false });
  await idle();
  check(1, 1);
  await s.killOne(p1); // already killed once: returns at once, without waiting for it
  await assert.rejects(s.kill({ timeout: 10 }), (e: Error) => {
    assert.ok(e instanceof Timeout);
    assert.match(e.message, /^2 of 2 members did not die within 10 ms of the kill: <Greenlet/);
    return true;
  });
  assert.equal(s.size, 2);
  check(1, 1);
  await p1.kill({ exception: SpecialError });
  await p2.kill({ exception: SpecialError });
  assert.equal(s.size, 0);
  // A member that died left the dying set: a new member with the same fate is shot again.
  const u3 = { shots: 0 };
  const p3 = s.spawn(undead(u3));
  await idle();
  await s.killOne(p3, { block: false });
  await idle();
  assert.equal(u3.shots, 1);
  s.discard(p3);
  s.add(p3);
  await s.killOne(p3, { block: false });
  await idle();
  assert.equal(u3.shots, 2, "a member that left and came back can be killed again");
  await p3.kill({ exception: SpecialError });
});

Deno.test("Pool.spawn() from a member of its own full pool rejects instead of deadlocking", async (t) => {
  await t.step("Pool(1): the member's spawn rejects with PoolFull naming the fix", async () => {
    const pool = new Pool(1);
    const outer = await pool.spawn(async () => {
      try {
        await pool.spawn(() => "inner");
        return "spawned";
      } catch (error) {
        return error;
      }
    });
    await outer.join();
    const error = outer.value as Error;
    assert.ok(error instanceof PoolFull, `got ${error}`);
    assert.match(error.message, /member of its own pool while the pool is full/);
    assert.match(error.message, /apply\(\)/);
  });
  await t.step("a member of a pool with a free slot spawns as usual", async () => {
    const pool = new Pool(2);
    const outer = await pool.spawn(async () => {
      const inner = await pool.spawn(() => "inner");
      return await inner.get();
    });
    await outer.join();
    assert.equal(outer.value, "inner");
  });
  await t.step("outside the pool, spawn still waits for a slot", async () => {
    const pool = new Pool(1);
    const gate = new Event();
    await pool.spawn(() => gate.wait());
    const spawner = spawn(() => pool.spawn(() => "later"));
    await idle();
    assert.equal(spawner.dead, false);
    gate.set();
    await spawner.join();
    assert.equal(await (spawner.value as Greenlet<string>).get(), "later");
  });
});

Deno.test("Pool and Group calls reject a non-object options bag with a TypeError naming it", async (t) => {
  const pool = new Pool(1);
  const member = new Greenlet(() => 1);
  const calls: [string, () => Promise<unknown>][] = [
    ["Pool.waitAvailable", () => pool.waitAvailable("x" as never)],
    ["Pool.add", () => pool.add(new Greenlet(() => 1), "x" as never)],
    ["Pool.start", () => pool.start(new Greenlet(() => 1), "x" as never)],
    ["Group.join", () => pool.join("x" as never)],
    ["Group.join(null)", () => pool.join(null as never)],
    ["Group.kill", () => pool.kill("x" as never)],
    ["Group.killOne", () => pool.killOne(member, "x" as never)],
  ];
  for (const [name, call] of calls) {
    await t.step(name, async () => {
      let p: Promise<unknown> | undefined;
      assert.doesNotThrow(() => p = call());
      await assert.rejects(p!, (e: Error) => {
        assert.ok(e instanceof TypeError, `got ${e}`);
        assert.match(e.message, /^'options' must be an object: current value is ("x"|null)$/);
        return true;
      });
    });
  }
  await t.step("the calls that do not block throw", () => {
    const group = new Group();
    for (
      const call of [
        () => group.imap((x) => x, [1], "x" as never),
        () => group.imapUnordered((x) => x, [1], "x" as never),
        () => group.applyAsync(() => 1, [], "x" as never),
        () => group.mapAsync((x) => x, [1], "x" as never),
      ]
    ) {
      assert.throws(
        call,
        (e: Error) =>
          e instanceof TypeError &&
          e.message === `'options' must be an object: current value is "x"`,
      );
    }
    assert.equal(group.size, 0);
  });
  assert.equal(pool.size, 0);
});

Deno.test("pool waits with a 2**31 ms timeout do not fire early", async (t) => {
  const pool = new Pool(1);
  const gate = new Event();
  await pool.spawn(() => gate.wait());
  const calls: [string, () => Promise<unknown>][] = [
    ["Pool.waitAvailable", () => pool.waitAvailable({ timeout: 2 ** 31 })],
    ["Pool.add", () => pool.add(new Greenlet(() => 1), { timeout: 2 ** 31 })],
    ["Group.join", () => pool.join({ timeout: 2 ** 31 })],
  ];
  for (const [name, call] of calls) {
    await t.step(name, async () => {
      const g = spawn(call);
      const first = await firstOf(g.join().then(() => "wait"), 20);
      assert.equal(first, "timer", `the wait ended early with ${g.value ?? g.exception}`);
      await g.kill();
    });
  }
  gate.set();
  await pool.join();
});

Deno.test("a slot freed for a waiting add() is reserved for it", async () => {
  const pool = new Pool(1);
  const first = new Greenlet(() => "first"); // never started
  await pool.add(first);
  const next = new Greenlet(() => "next");
  const added = pool.add(next); // waits for the one slot
  const killed = first.kill(); // the death frees the slot for `next` at once
  assert.equal(pool.freeCount(), 0, "the freed slot is reserved for the waiting add()");
  await assert.rejects(pool.add(new Greenlet(() => "late"), { blocking: false }), PoolFull);
  await killed;
  await added;
  assert.equal(pool.size, 1);
  assert.ok(pool.has(next));
  next.start();
  assert.equal(await next.get(), "next");
});

Deno.test("Pool.add() of a greenlet already in the full pool resolves at once", async () => {
  const pool = new Pool(1);
  const go = new Event();
  const member = await pool.spawn(() => go.wait());
  await pool.add(member, { blocking: false });
  await pool.add(member);
  assert.equal(pool.size, 1);
  go.set();
  assert.equal(await pool.join(), true);
});

Deno.test("Group.discard() removes the group's link from the greenlet", async () => {
  const group = new Group();
  const go = new Event();
  const g = group.spawn(() => go.wait());
  assert.equal(g.hasLinks(), true);
  group.discard(g);
  assert.equal(g.hasLinks(), false);
  assert.equal(group.has(g), false);
  go.set();
  assert.equal(await g.join(), true);
});
