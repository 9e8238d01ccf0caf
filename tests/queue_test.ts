import "./_deadline.ts";
import assert from "node:assert/strict";
import {
  Channel,
  Empty,
  Full,
  LifoQueue,
  PriorityQueue,
  Queue,
  ShutDown,
  SimpleQueue,
} from "../queue.ts";
import { GreenletExit, spawn } from "../greenlet.ts";
import { BlockingSwitchOutError, getHub, idle, sleep } from "../hub.ts";
import { Timeout } from "../timeout.ts";
import { assertTimeoutContract, captureReports, firstOf } from "./_helpers.ts";

Deno.test("Queue(2) blocks a producer on its third put until one get", async () => {
  const q = new Queue<string>(2);
  const log: string[] = [];
  const producer = spawn(async () => {
    for (const item of ["a", "b", "c"]) {
      await q.put(item);
      log.push(`put ${item}`);
    }
  });
  await idle();
  assert.deepEqual(log, ["put a", "put b"]);
  assert.equal(q.full(), true);
  assert.equal(q.putters, 1);
  assert.equal(await q.get(), "a");
  await producer.join();
  assert.deepEqual(log, ["put a", "put b", "put c"]);
  assert.equal(q.qsize(), 2);
  assert.deepEqual([q.getNowait(), q.getNowait()], ["b", "c"]);
});

Deno.test("Queue.get() rejects with Empty after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Queue<number>().get({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Empty, `got ${error}`),
  });
});

Deno.test("Queue.put() rejects with Full after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => {
      const q = new Queue<number>(1);
      q.putNowait(0);
      return q.put(1, { timeout });
    },
    elapsed: ({ error }) => assert.ok(error instanceof Full, `got ${error}`),
  });
});

Deno.test("Queue.peek() rejects with Empty after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Queue<number>().peek({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Empty, `got ${error}`),
  });
});

Deno.test("Queue.join() resolves false after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => {
      const q = new Queue<number>();
      q.putNowait(1);
      return q.join({ timeout });
    },
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
});

Deno.test("Channel.get() rejects with Empty after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Channel<number>().get({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Empty, `got ${error}`),
  });
});

Deno.test("Channel.put() rejects with Full after its timeout", async (t) => {
  await assertTimeoutContract(t, {
    call: (timeout) => new Channel<number>().put(1, { timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Full, `got ${error}`),
  });
});

Deno.test("Queue calls with block: false reject at once and leave nothing behind", async () => {
  const q = new Queue<number>(1);
  await assert.rejects(q.get({ block: false }), Empty);
  await assert.rejects(q.peek({ block: false }), Empty);
  await q.put(1, { block: false });
  await assert.rejects(q.put(2, { block: false }), Full);
  assert.equal(q.getters, 0);
  assert.equal(q.putters, 0);
  assert.equal(await q.get({ block: false }), 1);
  assert.equal(q.unfinishedTasks, 1);
});

Deno.test("Queue *Nowait calls are synchronous and throw Empty or Full", () => {
  const q = new Queue<number>(1);
  assert.throws(() => q.getNowait(), Empty);
  assert.throws(() => q.peekNowait(), Empty);
  q.putNowait(7);
  assert.throws(() => q.putNowait(8), Full);
  assert.equal(q.peekNowait(), 7);
  assert.equal(q.getNowait(), 7);
  assert.equal(q.empty(), true);
});

Deno.test("Queue serves waiting getters in FIFO order", async () => {
  const q = new Queue<number>();
  const got: string[] = [];
  const getters = ["g1", "g2", "g3"].map((name) =>
    spawn(async () => got.push(`${name}:${await q.get()}`))
  );
  await idle();
  assert.equal(q.getters, 3);
  for (const n of [1, 2, 3]) q.putNowait(n);
  for (const g of getters) await g.join();
  assert.deepEqual(got, ["g1:1", "g2:2", "g3:3"]);
});

Deno.test("Queue serves waiting putters in FIFO order", async () => {
  const q = new Queue<string>(1);
  q.putNowait("first");
  const putters = ["a", "b", "c"].map((item) => spawn(() => q.put(item)));
  await idle();
  assert.equal(q.putters, 3);
  const got: string[] = [];
  for (let i = 0; i < 4; i++) got.push(await q.get());
  for (const g of putters) await g.join();
  assert.deepEqual(got, ["first", "a", "b", "c"]);
});

Deno.test("Queue: a getter waiting first is not overtaken by a later get", async () => {
  const q = new Queue<number>();
  const early = spawn(() => q.get());
  await idle();
  q.putNowait(1);
  // The item is promised to the waiting getter even before it resumes.
  assert.throws(() => q.getNowait(), Empty);
  await early.join();
  assert.equal(early.value, 1);
});

Deno.test("Queue: kill() interrupts a waiting get, which takes no item", async () => {
  const q = new Queue<number>();
  const getter = spawn(() => q.get());
  await idle();
  await getter.kill();
  assert.equal(q.getters, 0);
  q.putNowait(1);
  assert.equal(q.qsize(), 1);
  assert.equal(q.getNowait(), 1);
});

Deno.test("Queue: kill() interrupts a waiting put, which leaves no item", async () => {
  const q = new Queue<number>(1);
  q.putNowait(1);
  const putter = spawn(() => q.put(2));
  await idle();
  await putter.kill();
  assert.equal(q.putters, 0);
  assert.equal(q.getNowait(), 1);
  assert.throws(() => q.getNowait(), Empty);
  assert.equal(q.unfinishedTasks, 1);
});

Deno.test("Queue: a Timeout interrupts a waiting get", async () => {
  const q = new Queue<number>();
  const g = spawn(async () => {
    using _t = Timeout.start(5);
    return await q.get();
  });
  const report = await captureReports(() => g.join());
  assert.match(report, /failed with Timeout/);
  assert.ok(g.exception instanceof Timeout);
  q.putNowait(1);
  assert.equal(q.qsize(), 1);
  q.getNowait();
});

Deno.test("Queue.peek() waits for an item and leaves it in the queue", async () => {
  const q = new Queue<string>();
  const peeker = spawn(() => q.peek());
  await idle();
  q.putNowait("x");
  await peeker.join();
  assert.equal(peeker.value, "x");
  assert.equal(q.qsize(), 1);
});

Deno.test("Queue.join() waits until taskDone() was called for every item", async (t) => {
  const q = new Queue<number>();
  q.putNowait(1);
  q.putNowait(2);
  assert.equal(q.unfinishedTasks, 2);
  const joiner = spawn(() => q.join());
  await idle();
  assert.equal(joiner.dead, false);
  q.getNowait();
  q.taskDone();
  await idle();
  assert.equal(joiner.dead, false);
  q.getNowait();
  q.taskDone();
  await joiner.join();
  assert.equal(joiner.value, true);
  await t.step("taskDone() once too often throws RangeError", () => {
    assert.throws(() => q.taskDone(), RangeError);
  });
  await t.step("join() on a queue with nothing unfinished resolves true", async () => {
    assert.equal(await q.join({ timeout: 0 }), true);
  });
});

Deno.test("Queue.shutdown() ends puts, drains gets, and wakes waiters", async (t) => {
  await t.step("puts reject, gets drain then reject", async () => {
    const q = new Queue<number>();
    q.putNowait(1);
    q.shutdown();
    assert.equal(q.isShutdown, true);
    await assert.rejects(q.put(2), ShutDown);
    assert.throws(() => q.putNowait(2), ShutDown);
    assert.equal(await q.get(), 1);
    await assert.rejects(q.get(), ShutDown);
    assert.throws(() => q.getNowait(), ShutDown);
  });
  await t.step("waiting getters and putters are woken with ShutDown", async () => {
    const empty = new Queue<number>();
    const getter = spawn(() => empty.get());
    const full = new Queue<number>(1);
    full.putNowait(1);
    const putter = spawn(() => full.put(2));
    await idle();
    await captureReports(async () => {
      empty.shutdown();
      full.shutdown();
      await getter.join();
      await putter.join();
    });
    assert.ok(getter.exception instanceof ShutDown);
    assert.ok(putter.exception instanceof ShutDown);
    assert.equal(full.getNowait(), 1);
  });
  await t.step("immediate discards the items and completes join()", async () => {
    const q = new Queue<number>();
    q.putNowait(1);
    q.putNowait(2);
    q.shutdown({ immediate: true });
    assert.equal(q.qsize(), 0);
    assert.equal(await q.join({ timeout: 0 }), true);
    await assert.rejects(q.get(), ShutDown);
  });
});

Deno.test("Queue async iteration ends when the queue is shut down and empty", async () => {
  const q = new SimpleQueue<number>();
  const producer = spawn(async () => {
    for (let i = 0; i < 5; i++) await q.put(i);
    q.shutdown();
  });
  const seen: number[] = [];
  for await (const n of q) seen.push(n);
  await producer.join();
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
});

Deno.test("PriorityQueue returns the smallest item first", async (t) => {
  await t.step("default ordering: numbers and tuples", () => {
    const q = new PriorityQueue<number>();
    for (const n of [5, 1, 4, 2, 3, 0]) q.putNowait(n);
    const out: number[] = [];
    while (!q.empty()) out.push(q.getNowait());
    assert.deepEqual(out, [0, 1, 2, 3, 4, 5]);
    const pairs = new PriorityQueue<[number, string]>();
    pairs.putNowait([2, "b"]);
    pairs.putNowait([1, "z"]);
    pairs.putNowait([1, "a"]);
    assert.deepEqual(pairs.peekNowait(), [1, "a"]);
  });
  await t.step("a custom compare", () => {
    const q = new PriorityQueue<string>(0, { compare: (a, b) => b.length - a.length });
    for (const s of ["aa", "a", "aaa"]) q.putNowait(s);
    assert.deepEqual([q.getNowait(), q.getNowait(), q.getNowait()], ["aaa", "aa", "a"]);
  });
  await t.step("a bad compare throws TypeError", () => {
    assert.throws(
      () => new PriorityQueue<number>(0, { compare: 1 as unknown as () => number }),
      TypeError,
    );
  });
});

Deno.test("LifoQueue returns the last item put first", async () => {
  const q = new LifoQueue<number>(3);
  for (const n of [1, 2, 3]) await q.put(n);
  assert.equal(q.full(), true);
  assert.equal(await q.peek(), 3);
  assert.deepEqual([await q.get(), await q.get(), await q.get()], [3, 2, 1]);
});

Deno.test("Queue maxsize is validated", async (t) => {
  for (const [bad, E] of [[-1, RangeError], [1.5, RangeError], [Number.NaN, RangeError]] as const) {
    await t.step(`maxsize ${bad} throws ${E.name}`, () => {
      assert.throws(
        () => new Queue(bad),
        (e: Error) =>
          e instanceof E &&
          e.message ===
            `'maxsize' must be a non-negative integer or Infinity: current value is ${bad}`,
      );
    });
  }
  await t.step(`maxsize "2" throws TypeError`, () => {
    assert.throws(
      () => new Queue("2" as never),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === `'maxsize' must be a non-negative integer or Infinity: current value is "2"`,
    );
  });
  await t.step("0 and undefined are unbounded", () => {
    assert.equal(new Queue(0).maxsize, Infinity);
    assert.equal(new Queue().maxsize, Infinity);
  });
});

Deno.test("Queue(Infinity) is unbounded, as its maxsize reports", () => {
  for (const q of [new Queue<number>(Infinity), new PriorityQueue<number>(Infinity)]) {
    assert.equal(q.maxsize, Infinity);
    for (let i = 0; i < 100; i++) q.putNowait(i);
    assert.equal(q.full(), false);
    assert.equal(q.qsize(), 100);
  }
});

Deno.test("Queue calls reject a non-object options bag with a TypeError naming it", async (t) => {
  const q = new Queue<number>();
  q.putNowait(1);
  const ch = new Channel<number>();
  const calls: [string, () => Promise<unknown>][] = [
    ["Queue.get", () => q.get("x" as never)],
    ["Queue.get(5)", () => q.get(5 as never)],
    ["Queue.put", () => q.put(1, "x" as never)],
    ["Queue.peek", () => q.peek("x" as never)],
    ["Queue.join", () => q.join("x" as never)],
    ["Queue.join(null)", () => q.join(null as never)],
    ["Channel.get", () => ch.get("x" as never)],
    ["Channel.put", () => ch.put(1, "x" as never)],
  ];
  for (const [name, call] of calls) {
    await t.step(name, async () => {
      let p: Promise<unknown> | undefined;
      assert.doesNotThrow(() => p = call());
      await assert.rejects(p!, (e: Error) => {
        assert.ok(e instanceof TypeError, `got ${e}`);
        assert.match(e.message, /^'options' must be an object: current value is ("x"|5|null)$/);
        return true;
      });
    });
  }
  await t.step("shutdown and the PriorityQueue constructor throw", () => {
    assert.throws(() => q.shutdown("x" as never), TypeError);
    assert.equal(q.isShutdown, false);
    assert.throws(
      () => new PriorityQueue<number>(0, "x" as never),
      (e: Error) =>
        e instanceof TypeError && e.message === `'options' must be an object: current value is "x"`,
    );
  });
});

Deno.test("queue waits with a 2**31 ms timeout do not fire early", async (t) => {
  const full = new Queue<number>(1);
  full.putNowait(0);
  const calls: [string, () => Promise<unknown>][] = [
    ["Queue.get", () => new Queue<number>().get({ timeout: 2 ** 31 })],
    ["Queue.put", () => full.put(1, { timeout: 2 ** 31 })],
    ["Queue.join", () => full.join({ timeout: 2 ** 31 })],
    ["Channel.get", () => new Channel<number>().get({ timeout: 2 ** 31 })],
  ];
  for (const [name, call] of calls) {
    await t.step(name, async () => {
      const g = spawn(call);
      const report = await captureReports(async () => {
        assert.equal(await firstOf(g.join().then(() => "wait"), 20), "timer");
      });
      assert.equal(report, "", "the wait ended early");
      await g.kill();
    });
  }
});

Deno.test("Queue.get() in a hub callback: waiting rejects, a ready item is returned", async () => {
  const q = new Queue<number>();
  const outcome = Promise.withResolvers<unknown>();
  getHub().loop.runCallback(() => q.get().then(outcome.resolve, outcome.resolve));
  assert.ok(await outcome.promise instanceof BlockingSwitchOutError);
  q.putNowait(1);
  const ready = Promise.withResolvers<unknown>();
  getHub().loop.runCallback(() => q.get().then(ready.resolve, ready.resolve));
  assert.equal(await ready.promise, 1);
});

Deno.test("a producer and consumer that never block do not starve timers", async (t) => {
  const LIMIT = 3_000_000;
  for (
    const [name, q] of [["Queue()", new Queue<number>()], [
      "Queue(1)",
      new Queue<number>(1),
    ]] as const
  ) {
    await t.step(name, async () => {
      let woke = false;
      const sleeper = spawn(async () => {
        await sleep(10);
        woke = true;
      });
      let produced = 0;
      const producer = spawn(async () => {
        while (!woke && produced < LIMIT) await q.put(produced++);
      });
      const consumer = spawn(async () => {
        while (!woke && produced < LIMIT) await q.get({ timeout: 1000 });
      });
      await producer.join();
      await consumer.join();
      await sleeper.join();
      assert.equal(woke, true);
      assert.ok(produced < LIMIT, "the timer only fired after the loop ended");
      assert.ok(producer.successful() && consumer.successful());
      while (!q.empty()) q.getNowait();
    });
  }
});

Deno.test("Channel.put() waits until a get takes the item", async () => {
  const ch = new Channel<string>();
  const log: string[] = [];
  const producer = spawn(async () => {
    await ch.put("x");
    log.push("put returned");
  });
  await idle();
  assert.deepEqual(log, []);
  assert.equal(ch.balance, 1);
  assert.equal(ch.qsize(), 0);
  assert.equal(await ch.get(), "x");
  await producer.join();
  assert.deepEqual(log, ["put returned"]);
});

Deno.test("Channel resumes a getter before the putter whose item it took", async (t) => {
  await t.step("gevent's test_send: the putter waited, the getter came second", async () => {
    const ch = new Channel<string>();
    const events: string[] = [];
    const consumer = spawn(async () => {
      events.push(await ch.get());
      events.push(await ch.get());
    });
    events.push("sending");
    await ch.put("hello");
    events.push("sent hello");
    await ch.put("world");
    events.push("sent world");
    assert.deepEqual(events, ["sending", "hello", "sent hello", "world", "sent world"]);
    await consumer.join();
  });
  await t.step("gevent's test_wait: the getter waited, the putter came second", async () => {
    const ch = new Channel<string>();
    const events: string[] = [];
    const producer = spawn(async () => {
      events.push("sending hello");
      await ch.put("hello");
      events.push("sending world");
      await ch.put("world");
      events.push("sent world");
    });
    events.push("waiting");
    events.push(await ch.get());
    events.push(await ch.get());
    assert.deepEqual(events, ["waiting", "sending hello", "hello", "sending world", "world"]);
    await sleep(0);
    assert.deepEqual(events, [
      "waiting",
      "sending hello",
      "hello",
      "sending world",
      "world",
      "sent world",
    ]);
    await producer.join();
  });
  await t.step("a putter killed after its item was taken still completes its put", async () => {
    const ch = new Channel<string>();
    let putReturned = false;
    const putter = spawn(async () => {
      await ch.put("x");
      putReturned = true;
      await sleep(10_000);
    });
    await idle();
    assert.equal(await ch.get(), "x");
    await putter.kill(); // before the putter resumed
    // The item was taken: the put completed, and the kill met the greenlet afterwards.
    assert.equal(putReturned, true);
    assert.ok(putter.value instanceof GreenletExit);
  });
});

Deno.test("Channel: a getter cancelled by Timeout(0) does not take the next item", async () => {
  const ch = new Channel<string>();
  const cancelled = spawn(async () => {
    using _t = Timeout.start(0);
    return await ch.get();
  });
  await captureReports(() => cancelled.join());
  assert.ok(cancelled.exception instanceof Timeout);
  assert.equal(ch.getters, 0);
  assert.throws(() => ch.putNowait("lost?"), Full);
  const next = spawn(() => ch.get());
  await idle();
  await ch.put("item");
  await next.join();
  assert.equal(next.value, "item");
});

Deno.test("Channel *Nowait calls only succeed with a partner waiting", async () => {
  const ch = new Channel<number>();
  assert.throws(() => ch.getNowait(), Empty);
  assert.throws(() => ch.putNowait(1), Full);
  const putter = spawn(() => ch.put(1));
  await idle();
  assert.equal(ch.getNowait(), 1);
  await putter.join();
  const getter = spawn(() => ch.get());
  await idle();
  ch.putNowait(2);
  await getter.join();
  assert.equal(getter.value, 2);
});

Deno.test("Channel async iteration yields what is put", async () => {
  const ch = new Channel<number>();
  const producer = spawn(async () => {
    for (let i = 1; i <= 3; i++) await ch.put(i);
  });
  const seen: number[] = [];
  for await (const n of ch) {
    seen.push(n);
    if (n === 3) break;
  }
  await producer.join();
  assert.deepEqual(seen, [1, 2, 3]);
});

Deno.test("Queue: room freed for a waiting putter is not taken by a later put", async () => {
  const q = new Queue<string>(1);
  q.putNowait("a");
  const putter = spawn(() => q.put("b"));
  await idle();
  assert.equal(q.getNowait(), "a");
  assert.throws(() => q.putNowait("c"), Full);
  await putter.join();
  assert.equal(q.getNowait(), "b");
});

Deno.test("Queue: a putter killed before its hand-over leaves no item", async () => {
  const q = new Queue<string>(1);
  q.putNowait("a");
  const putter = spawn(() => q.put("b"));
  await idle();
  assert.equal(q.getNowait(), "a"); // the room is promised to the putter...
  const killed = putter.kill(); // ...which is killed before the hand-over
  await killed;
  assert.equal(q.qsize(), 0);
  assert.throws(() => q.getNowait(), Empty);
  assert.equal(q.unfinishedTasks, 1);
});

Deno.test("Queue: a getter killed before its hand-over takes no item", async () => {
  const q = new Queue<string>();
  const getter = spawn(() => q.get());
  await idle();
  q.putNowait("x"); // promised to the getter...
  await getter.kill(); // ...which is killed before the hand-over
  assert.equal(q.getNowait(), "x");
});

Deno.test("an item put after a get() timed out goes to the getter still waiting", async () => {
  const q = new Queue<string>();
  const early = q.get({ timeout: 1 });
  const late = q.get({ timeout: 60_000 });
  await assert.rejects(early, Empty);
  assert.equal(q.getters, 1);
  await q.put("x");
  assert.equal(await late, "x");
  assert.equal(q.qsize(), 0);
});

Deno.test("a get() does not overtake a getter already waiting for the item just put", async () => {
  const q = new Queue<string>();
  const first = q.get();
  q.putNowait("a"); // handed to `first` on the next turn
  const second = q.get();
  q.putNowait("b");
  assert.deepEqual(await Promise.all([first, second]), ["a", "b"]);
});

Deno.test("PriorityQueue gives back any mix of items in sorted order", async () => {
  let seed = 1;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % 100;
  for (let round = 0; round < 200; round++) {
    const items = Array.from({ length: 3 + (round % 13) }, random);
    const q = new PriorityQueue<number>();
    for (const item of items) await q.put(item);
    const out: number[] = [];
    while (!q.empty()) out.push(await q.get());
    assert.deepEqual(out, [...items].sort((a, b) => a - b), `items put: ${items}`);
  }
});

Deno.test("a Queue keeps FIFO order when its buffer grows after wrapping around", () => {
  const q = new Queue<number>();
  const out: number[] = [];
  for (let i = 0; i < 10; i++) q.putNowait(i);
  for (let i = 0; i < 5; i++) out.push(q.getNowait());
  for (let i = 10; i < 40; i++) q.putNowait(i);
  while (!q.empty()) out.push(q.getNowait());
  assert.deepEqual(out, Array.from({ length: 40 }, (_, i) => i));
});
