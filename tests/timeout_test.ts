import "./_deadline.ts";
import assert from "node:assert/strict";
import { currentSignal, GreenletExit, spawn } from "../greenlet.ts";
import { sleep } from "../hub.ts";
import { Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";

Deno.test("Timeout interrupts the pending blocking call with itself", async () => {
  const g = spawn(async () => {
    using timeout = Timeout.start(10);
    try {
      await new Event().wait();
      return "not interrupted";
    } catch (err) {
      return err === timeout ? "same object" : err;
    }
  });
  await g.join();
  assert.equal(g.value, "same object");
});

Deno.test("Timeout of undefined ms never fires and is not pending", async () => {
  using timeout = Timeout.start(undefined);
  assert.equal(timeout.pending, false);
  await sleep(5);
  assert.equal(timeout.pending, false);
});

Deno.test("Timeout of 0 ms fires at the next switch", async () => {
  const log: string[] = [];
  const g = spawn(async () => {
    using timeout = Timeout.start(0);
    log.push("started");
    try {
      await sleep(0);
      log.push("not interrupted");
    } catch (err) {
      log.push(err === timeout ? "fired" : String(err));
    }
  });
  await g.join();
  assert.deepEqual(log, ["started", "fired"]);
});

Deno.test("nested timeouts raise the one that fired", async (t) => {
  await t.step("inner fires first", async () => {
    using outer = Timeout.start(1000);
    using inner = Timeout.start(5);
    const err = await sleep(60_000).catch((e) => e);
    assert.equal(err, inner);
    assert.notEqual(err, outer);
  });
  await t.step("outer fires first", async () => {
    using outer = Timeout.start(5);
    let caught: unknown;
    try {
      using _inner = Timeout.start(1000);
      await sleep(60_000);
    } catch (err) {
      caught = err;
    }
    assert.equal(caught, outer);
  });
});

Deno.test("a custom exception is thrown as given", async () => {
  const exc = new SyntaxError("custom");
  {
    using _t = Timeout.start(5, exc);
    await assert.rejects(sleep(60_000), (e) => e === exc);
  }
  class MyTimeout extends Error {}
  {
    using _t = Timeout.start(5, MyTimeout);
    await assert.rejects(sleep(60_000), MyTimeout);
  }
});

Deno.test("cancel() before it fires: nothing is thrown", async () => {
  const timeout = Timeout.start(5);
  assert.equal(timeout.pending, true);
  timeout.cancel();
  assert.equal(timeout.pending, false);
  await sleep(15);
  timeout.cancel(); // twice is harmless
  timeout.close();
});

Deno.test("a Timeout that fired while not blocked is withdrawn by cancel()", async () => {
  const g = spawn(async () => {
    {
      using _timeout = Timeout.start(1);
      // A plain promise that outlasts the timeout: not a blocking call.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sleep(0); // must not throw: the scope ended
    return "clean";
  });
  await g.join();
  assert.equal(g.value, "clean");
});

Deno.test("a fired Timeout aborts currentSignal() with itself; the next signal is fresh", async () => {
  const g = spawn(async () => {
    const timeout = Timeout.start(5);
    const signal = currentSignal();
    await new Promise((resolve) => signal.addEventListener("abort", resolve));
    const reason = signal.reason;
    timeout.cancel();
    return [reason === timeout, currentSignal().aborted];
  });
  await g.join();
  assert.deepEqual(g.value, [true, false]);
});

Deno.test("Timeout works at top level, outside any greenlet", async () => {
  using timeout = Timeout.start(5);
  await assert.rejects(sleep(60_000), (e) => e === timeout);
});

Deno.test("Timeout validates ms and refuses a second start()", () => {
  assert.throws(() => new Timeout(-1), RangeError);
  assert.throws(() => new Timeout(Number.POSITIVE_INFINITY), RangeError);
  assert.throws(() => new Timeout(Number.NaN), RangeError);
  const t = Timeout.start(1000);
  try {
    assert.throws(() => t.start(), /already started/);
  } finally {
    t.cancel();
  }
  assert.equal(t.name, "Timeout");
  assert.ok(t instanceof Error);
});

Deno.test("withTimeout() returns timeoutValue only when its own timeout fired", async (t) => {
  await t.step("own timeout fires: timeoutValue", async () => {
    const v = await withTimeout(5, () => sleep(60_000), { timeoutValue: "late" });
    assert.equal(v, "late");
  });
  await t.step("undefined is a valid timeoutValue", async () => {
    const v = await withTimeout(5, () => sleep(60_000), { timeoutValue: undefined });
    assert.equal(v, undefined);
  });
  await t.step("no timeoutValue: the Timeout is thrown", async () => {
    await assert.rejects(withTimeout(5, () => sleep(60_000)), Timeout);
  });
  await t.step("in time: fn's value", async () => {
    assert.equal(await withTimeout(1000, () => "fast", { timeoutValue: "late" }), "fast");
  });
  await t.step("an outer timeout passes through", async () => {
    using outer = Timeout.start(5);
    await assert.rejects(
      withTimeout(1000, () => sleep(60_000), { timeoutValue: "inner" }),
      (e) => e === outer,
    );
  });
  await t.step("fn's own Timeout errors pass through", async () => {
    const foreign = new Timeout(1);
    await assert.rejects(
      withTimeout(1000, () => Promise.reject(foreign), { timeoutValue: "x" }),
      (e) => e === foreign,
    );
  });
  await t.step("bad arguments reject", async () => {
    await assert.rejects(withTimeout(-1, () => 1), RangeError);
    await assert.rejects(withTimeout(1, 42 as unknown as () => number), TypeError);
  });
});

Deno.test("withTimeout() inside a greenlet interrupts that greenlet's wait", async () => {
  const g = spawn(() => withTimeout(5, () => new Event().wait(), { timeoutValue: "cut" }));
  await g.join();
  assert.equal(g.value, "cut");
});

Deno.test("concurrent top-level withTimeout() calls do not interrupt each other", async () => {
  const [a, b] = await Promise.all([
    withTimeout(5, () => sleep(60_000), { timeoutValue: "a timed out" }),
    withTimeout(1000, async () => {
      await sleep(20);
      return "b finished";
    }, { timeoutValue: "b timed out" }),
  ]);
  assert.equal(a, "a timed out");
  assert.equal(b, "b finished");
});

Deno.test("a kill passes through withTimeout()", async () => {
  const g = spawn(() => withTimeout(1000, () => sleep(60_000), { timeoutValue: "t" }));
  await sleep(0);
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
});

/** A promise the library cannot reach (no blocking call, no socket), settled by hand. */
function foreign<T>(): PromiseWithResolvers<T> {
  return Promise.withResolvers<T>();
}

Deno.test("withTimeout() settles at the deadline when fn awaits what it cannot interrupt", async (t) => {
  for (const where of ["top level", "in a greenlet"] as const) {
    await t.step(`${where}: timeoutValue, or the Timeout; fn finishes unobserved`, async () => {
      const run = async <R>(fn: () => Promise<R>): Promise<R> =>
        where === "top level" ? await fn() : await spawn(fn).get() as R;
      const stuck = foreign<string>();
      // `stuck` is never settled: reaching the next line shows withTimeout did not wait for fn.
      const value = await run(() => withTimeout(30, () => stuck.promise, { timeoutValue: "tv" }));
      assert.equal(value, "tv");
      const other = foreign<string>();
      const outcome = await run(() => withTimeout(30, () => other.promise).catch((e) => e));
      assert.ok(outcome instanceof Timeout, String(outcome));
      stuck.resolve("late"); // nobody sees it, nothing escapes
      other.reject(new Error("late failure"));
    });
  }
});

Deno.test("withTimeout() never returns a value that arrived after its timeout fired", async () => {
  // fn awaits a foreign promise that settles just after the deadline, within the grace the
  // timeout gives it: the late value (or error) is still not returned as if on time.
  for (const settle of ["resolve", "reject"] as const) {
    const late = foreign<string>();
    const result = withTimeout(20, () => late.promise, { timeoutValue: "timed out" });
    await new Promise((resolve) => setTimeout(resolve, 30));
    if (settle === "resolve") late.resolve("late");
    else late.reject(new Error("connection terminated"));
    assert.equal(await result, "timed out", settle);
  }
});

Deno.test("a Timeout(0) cancelled and started again fires only from its new start", async () => {
  const timeout = new Timeout(0);
  timeout.start();
  timeout.cancel();
  const seen: boolean[] = [];
  spawn(() => seen.push(timeout.pending)); // runs between the two starts' turns
  timeout.start();
  await assert.rejects(new Event().wait(), (e) => e === timeout);
  assert.deepEqual(seen, [true]);
});
