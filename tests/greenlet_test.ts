import "./_deadline.ts";
import assert from "node:assert/strict";
import {
  currentSignal,
  getCurrent,
  Greenlet,
  GreenletExit,
  isKill,
  joinAll,
  killAll,
  spawn,
  spawnLater,
} from "../greenlet.ts";
import { getHub, iwait, sleep, wait } from "../hub.ts";
import { AsyncResult, Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { assertTimeoutContract, captureReports } from "./_helpers.ts";

Deno.test("spawned greenlets start in spawn order, only after the spawner yields", async () => {
  const log: string[] = [];
  const parent = spawn(async () => {
    spawn(() => log.push("a"));
    spawn(() => log.push("b"));
    spawn(() => log.push("c"));
    log.push("parent before yield");
    await sleep(0);
    log.push("parent after yield");
  });
  await parent.join();
  assert.deepEqual(log, ["parent before yield", "a", "b", "c", "parent after yield"]);
});

Deno.test("a child outlives a parent that returns", async () => {
  const release = new Event();
  let child: Greenlet<string> | undefined;
  const parent = spawn(() => {
    child = spawn(async () => {
      await release.wait();
      return "child done";
    });
    return "parent done";
  });
  await parent.join();
  assert.equal(parent.value, "parent done");
  assert.equal(child!.dead, false);
  assert.equal(child!.parent, parent);
  release.set();
  await child!.join();
  assert.equal(child!.value, "child done");
});

Deno.test("spawn() accepts sync and async functions and passes arguments", async () => {
  const sync = spawn((a: number, b: number) => a * b, 6, 7);
  const asyncG = spawn(async (s: string) => {
    await sleep(1);
    return s.toUpperCase();
  }, "up");
  await joinAll([sync, asyncG]);
  assert.equal(sync.value, 42);
  assert.equal(asyncG.value, "UP");
  assert.equal(sync.successful(), true);
});

Deno.test("spawn() and new Greenlet() throw TypeError at once for a non-function", () => {
  for (const bad of [undefined, null, 42, "fn", {}]) {
    assert.throws(
      () => spawn(bad as unknown as () => void),
      (e: unknown) => e instanceof TypeError && /'fn'/.test(e.message),
    );
    assert.throws(() => new Greenlet(bad as unknown as () => void), TypeError);
  }
  assert.throws(() => spawnLater(-1, () => {}), RangeError);
  assert.throws(() => spawnLater(Number.NaN, () => {}), RangeError);
});

Deno.test("a greenlet that throws records the error and the hub prints a report", async () => {
  let g: Greenlet<bigint> | undefined;
  const report = await captureReports(async () => {
    g = spawn(
      function divide(a: bigint, b: bigint) {
        return a / b;
      },
      1n,
      0n,
    );
    await g.join();
  });
  assert.equal(g!.successful(), false);
  assert.equal(g!.ready(), true);
  assert.ok(g!.exception instanceof RangeError);
  assert.equal(g!.value, undefined);
  const lines = report.trimEnd().split("\n");
  assert.match(lines[0], /^RangeError: Division by zero/);
  assert.ok(lines.some((l) => /^\s+at /.test(l)), "the stack is printed");
  const last = lines.at(-1)!;
  assert.match(
    last,
    new RegExp(
      `^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z <Greenlet "${
        g!.name
      }": divide\\(1n, 0n\\)> failed with RangeError$`,
    ),
  );
});

Deno.test("gevent's introduction: spawn(() => 1n / 0n).join() resolves and nothing escapes", async () => {
  const report = await captureReports(async () => {
    await spawn(() => 1n / 0n).join();
  });
  assert.match(report, /failed with RangeError\n$/);
});

Deno.test("an async greenlet's rejection never becomes an unhandled rejection", async () => {
  // An unhandled rejection would fail this test file; the error must stay in the greenlet.
  const report = await captureReports(async () => {
    const g = spawn(async () => {
      await sleep(1);
      throw new TypeError("async failure");
    });
    await g.join();
    assert.equal((g.exception as Error).message, "async failure");
  });
  assert.match(report, /failed with TypeError/);
});

Deno.test("toString() renders the name, function and arguments cut to 50 characters", () => {
  const g = new Greenlet(function divide(_a: unknown, _b: unknown) {}, 1, "x".repeat(80));
  const text = String(g);
  assert.match(text, new RegExp(`^<Greenlet "Greenlet-\\d+": divide\\(1, "x+\\.\\.\\.\\)>$`));
  const rendered = text.slice(text.indexOf("1, ") + 3, -2);
  assert.equal(rendered.length, 50);
  g.name = "worker";
  assert.equal(String(g), `<Greenlet "worker": divide(1, ${rendered})>`);
});

Deno.test("name defaults to Greenlet-N from minimalIdent, unique per greenlet", () => {
  const a = new Greenlet(() => {});
  const b = new Greenlet(() => {});
  assert.notEqual(a.minimalIdent, b.minimalIdent);
  assert.equal(a.name, `Greenlet-${a.minimalIdent}`);
});

Deno.test("started, dead and ready() follow the greenlet's life", async () => {
  const g = new Greenlet(() => sleep(1));
  assert.equal(g.started, false);
  assert.equal(g.dead, false);
  g.start();
  assert.equal(g.started, true);
  g.start(); // starting twice is harmless
  await g.join();
  assert.equal(g.dead, true);
  assert.equal(g.ready(), true);
  assert.equal(g.started, false, "as in gevent: started until it dies");
});

Deno.test("getCurrent() is the running greenlet across awaits, undefined outside", async () => {
  assert.equal(getCurrent(), undefined);
  const seen: unknown[] = [];
  const g = spawn(async () => {
    seen.push(getCurrent());
    await sleep(1);
    seen.push(getCurrent());
    await Promise.resolve();
    seen.push(getCurrent());
  });
  await g.join();
  assert.deepEqual(seen, [g, g, g]);
  assert.equal(getCurrent(), undefined);
});

Deno.test("kill() is delivered at the pending blocking call and finally blocks have run", async (t) => {
  const blockers: [string, (ev: Event, other: Greenlet<unknown>) => Promise<unknown>][] = [
    ["sleep", () => sleep(60_000)],
    ["sleep(0)", () => sleep(0)],
    ["Event.wait", (ev) => ev.wait()],
    ["Greenlet.join", (_ev, other) => other.join()],
    ["Greenlet.get", (_ev, other) => other.get()],
    ["AsyncResult.get", () => new AsyncResult().get()],
  ];
  for (const [name, block] of blockers) {
    await t.step(name, async () => {
      const ev = new Event();
      const other = spawn(() => ev.wait());
      const log: string[] = [];
      const g = spawn(async () => {
        try {
          await block(ev, other);
          log.push("not interrupted");
        } finally {
          log.push("finally");
        }
      });
      await sleep(0);
      await g.kill();
      assert.deepEqual(log, ["finally"]);
      assert.equal(g.dead, true);
      assert.equal(g.successful(), true);
      assert.ok(g.value instanceof GreenletExit);
      assert.equal(g.exception, undefined);
      ev.set();
      await other.join();
    });
  }
});

Deno.test("kill() of a greenlet not blocked is delivered at its next blocking call", async () => {
  const gate = Promise.withResolvers<void>();
  const log: string[] = [];
  const g = spawn(async () => {
    await gate.promise; // a plain promise: not a blocking call of the library
    log.push("resumed");
    try {
      await sleep(0);
      log.push("not interrupted");
    } catch (e) {
      log.push((e as Error).name);
      throw e;
    }
  });
  await sleep(0);
  const killed = g.kill();
  assert.equal(g.signal.aborted, true, "the signal aborts at once");
  gate.resolve();
  await killed;
  assert.deepEqual(log, ["resumed", "GreenletExit"]);
});

Deno.test("kill() aborts the greenlet's signal and currentSignal() with the exception", async () => {
  let seen: AbortSignal | undefined;
  const g = spawn(async () => {
    seen = currentSignal();
    await sleep(60_000);
  });
  await sleep(0);
  const exc = new GreenletExit("stop");
  await g.kill({ exception: exc });
  assert.equal(g.signal.aborted, true);
  assert.equal(g.signal.reason, exc);
  assert.equal(seen!.aborted, true);
  assert.equal(seen!.reason, exc);
  assert.equal(g.value, exc);
});

Deno.test("kill() with a custom exception makes the greenlet fail with it", async () => {
  class Stop extends Error {}
  const report = await captureReports(async () => {
    const g = spawn(() => sleep(60_000));
    await sleep(0);
    await g.kill({ exception: Stop });
    assert.ok(g.exception instanceof Stop);
    assert.equal(g.successful(), false);
  });
  assert.match(report, /failed with Error/);
});

Deno.test("a greenlet killed before it ran never runs, and its links still fire", async () => {
  let ran = false;
  const g = spawn(() => ran = true);
  const linked = new AsyncResult<Greenlet<boolean>>();
  g.rawlink((source) => linked.set(source));
  await g.kill();
  assert.equal(await linked.get(), g);
  await sleep(0);
  assert.equal(ran, false);
  assert.equal(g.successful(), true);
  assert.ok(g.value instanceof GreenletExit);

  const never = new Greenlet(() => ran = true);
  await never.kill();
  assert.equal(never.dead, true);
  const later = spawnLater(5, () => ran = true);
  await later.kill();
  await sleep(10);
  assert.equal(ran, false);
});

Deno.test("kill({ block: false }) returns before the greenlet has died", async () => {
  const g = spawn(async () => {
    try {
      await sleep(60_000);
    } finally {
      await Promise.resolve();
    }
  });
  await sleep(0);
  await g.kill({ block: false });
  assert.equal(g.dead, false);
  await g.join();
  assert.equal(g.dead, true);
});

Deno.test("kill() with a timeout returns even if the greenlet ignores the kill", async () => {
  const stop = new Event();
  const g = spawn(async () => {
    for (;;) {
      try {
        await stop.wait();
        return "stopped";
      } catch {
        // ignores GreenletExit
      }
    }
  });
  await sleep(0);
  await g.kill({ timeout: 10 });
  assert.equal(g.dead, false);
  stop.set();
  await g.join();
  assert.equal(g.value, "stopped");
});

Deno.test("killAll() kills every greenlet; with a timeout it throws Timeout if one ignores it", async () => {
  const gs = [spawn(() => sleep(60_000)), spawn(() => new Event().wait())];
  await sleep(0);
  await killAll(gs);
  assert.ok(gs.every((g) => g.dead && g.value instanceof GreenletExit));

  const stop = new Event();
  const stubborn = spawn(async () => {
    for (;;) {
      try {
        return await stop.wait();
      } catch {
        // ignores GreenletExit
      }
    }
  });
  const obedient = spawn(() => sleep(60_000));
  await sleep(0);
  const error = await killAll([stubborn, obedient], { timeout: 10 }).catch((e) => e);
  assert.ok(error instanceof Timeout);
  assert.match(error.message, /^1 of 2 greenlets did not die within 10 ms of the kill: /);
  assert.ok(error.message.includes(`${stubborn} (blocked on Event.wait)`), error.message);
  assert.equal(obedient.dead, true);
  stop.set();
  await stubborn.join();
});

Deno.test("await using kills the greenlet when the scope ends", async () => {
  let g: Greenlet<void> | undefined;
  const log: string[] = [];
  {
    await using scoped = spawn(async () => {
      try {
        await sleep(60_000);
      } finally {
        log.push("cleaned up");
      }
    });
    g = scoped;
    await sleep(0);
  }
  assert.equal(g.dead, true);
  assert.deepEqual(log, ["cleaned up"]);
});

Deno.test("links run after death in the order added; link runs each in a new greenlet", async () => {
  const order: string[] = [];
  const done = new AsyncResult<void>();
  const g = spawn(() => "value");
  let linkGreenlet: Greenlet<unknown> | undefined;
  g.rawlink(() => {
    order.push("raw1");
    assert.equal(getCurrent(), undefined, "rawlink runs in the hub");
  });
  g.link((source) => {
    order.push("link");
    assert.equal(source, g);
    linkGreenlet = getCurrent();
    done.set();
  });
  g.rawlink(() => order.push("raw2"));
  assert.equal(g.hasLinks(), true);
  await done.get();
  // As in gevent (checked against 22.10.2): a link's greenlet starts before the next link.
  assert.deepEqual(order, ["raw1", "link", "raw2"]);
  assert.ok(linkGreenlet instanceof Greenlet && linkGreenlet !== g);
  assert.equal(g.hasLinks(), false);
});

Deno.test("a throwing link is reported and the other links still run", async () => {
  const order: string[] = [];
  const done = new AsyncResult<void>();
  const report = await captureReports(async () => {
    const g = spawn(() => null);
    g.rawlink(() => {
      throw new SyntaxError("bad link");
    });
    g.rawlink(() => {
      order.push("second");
      done.set();
    });
    await done.get();
  });
  assert.deepEqual(order, ["second"]);
  assert.match(report, /SyntaxError: bad link/);
});

Deno.test("linking to a finished greenlet still fires", async () => {
  const g = spawn(() => 1);
  await g.join();
  const result = new AsyncResult<number>();
  g.link(result);
  assert.equal(await result.get(), 1);
});

Deno.test("linkValue and linkException fire only on success or failure", async () => {
  const fired: string[] = [];
  const report = await captureReports(async () => {
    const ok = spawn(() => 1);
    const bad = spawn(() => {
      throw new Error("x");
    });
    for (const g of [ok, bad] as Greenlet<unknown>[]) {
      g.linkValue(() => fired.push(`value:${g === ok ? "ok" : "bad"}`));
      g.linkException(() => fired.push(`exception:${g === ok ? "ok" : "bad"}`));
    }
    await joinAll([ok, bad]);
    await sleep(0);
    await sleep(0);
  });
  assert.deepEqual(fired.sort(), ["exception:bad", "value:ok"]);
  assert.match(report, /failed with Error/);
});

Deno.test("an AsyncResult linked to a failed greenlet gets its exception", async () => {
  const result = new AsyncResult();
  await captureReports(async () => {
    const g = spawn(() => {
      throw new URIError("nope");
    });
    g.link(result);
    await assert.rejects(result.get(), URIError);
  });
});

Deno.test("unlink() and unlinkAll() remove links before they run", async () => {
  const fired: string[] = [];
  const g = spawn(() => sleep(1));
  const a = () => fired.push("a");
  const b = () => fired.push("b");
  g.rawlink(a);
  g.link(b);
  g.unlink(a);
  g.unlink(b);
  assert.equal(g.hasLinks(), false);
  g.rawlink(a);
  g.unlinkAll();
  await g.join();
  await sleep(0);
  assert.deepEqual(fired, []);
  assert.throws(() => g.rawlink(42 as unknown as () => void), TypeError);
  assert.throws(() => g.link({} as unknown as () => void), TypeError);
});

Deno.test("join() never throws the greenlet's error; get() does", async () => {
  await captureReports(async () => {
    const g = spawn(() => {
      throw new EvalError("inside");
    });
    assert.equal(await g.join(), true);
    await assert.rejects(g.get(), EvalError);
  });
});

Deno.test("get() returns the value, and the GreenletExit of a killed greenlet", async () => {
  const g = spawn(() => 5);
  assert.equal(await g.get(), 5);
  const k = spawn(() => sleep(60_000));
  await sleep(0);
  await k.kill();
  assert.ok(await k.get() instanceof GreenletExit);
});

Deno.test("get({ block: false }) on an unfinished greenlet throws Timeout", async () => {
  const g = spawn(() => sleep(60_000));
  await assert.rejects(g.get({ block: false }), Timeout);
  await g.kill();
});

Deno.test("Greenlet.join() honours the timeout contract", async (t) => {
  const ev = new Event();
  const g = spawn(() => ev.wait());
  await assertTimeoutContract(t, {
    call: (timeout) => g.join({ timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.equal(value, false);
    },
  });
  ev.set();
  await g.join();
});

Deno.test("Greenlet.get() honours the timeout contract", async (t) => {
  const ev = new Event();
  const g = spawn(() => ev.wait());
  await assertTimeoutContract(t, {
    call: (timeout) => g.get({ timeout }),
    elapsed: ({ error }) => assert.ok(error instanceof Timeout),
  });
  ev.set();
  await g.join();
});

Deno.test("joinAll() resolves to the finished greenlets in completion order", async () => {
  const slow = spawn(async () => {
    await sleep(30);
    return "slow";
  });
  const fast = spawn(async () => {
    await sleep(1);
    return "fast";
  });
  const mid = spawn(async () => {
    await sleep(10);
    return "mid";
  });
  const done = await joinAll([slow, fast, mid]);
  assert.deepEqual(done, [fast, mid, slow]);
});

Deno.test("joinAll() with count returns after that many finished", async () => {
  const stop = new Event();
  const fast = spawn(() => 1);
  const blocked = spawn(() => stop.wait());
  const done = await joinAll([blocked, fast], { count: 1 });
  assert.deepEqual(done, [fast]);
  assert.equal(blocked.hasLinks(), false, "joinAll unlinks what it no longer waits for");
  stop.set();
  await blocked.join();
});

Deno.test("joinAll() with raiseError throws the first failure at once", async () => {
  await captureReports(async () => {
    const stop = new Event();
    const blocked = spawn(() => stop.wait());
    const failing = spawn(async () => {
      await sleep(1);
      throw new RangeError("first");
    });
    await assert.rejects(joinAll([blocked, failing], { raiseError: true }), RangeError);
    stop.set();
    await blocked.join();
    // Already dead and failed: thrown without waiting.
    await assert.rejects(joinAll([failing], { raiseError: true }), RangeError);
  });
});

Deno.test("joinAll() honours the timeout contract", async (t) => {
  const ev = new Event();
  const g = spawn(() => ev.wait());
  const finished = spawn(() => 1);
  await finished.join();
  await assertTimeoutContract(t, {
    call: (timeout) => joinAll([g, finished], { timeout }),
    elapsed: ({ value, error }) => {
      assert.equal(error, undefined);
      assert.deepEqual(value, [finished]);
    },
  });
  await assert.rejects(joinAll([g], { count: -1 }), RangeError);
  await assert.rejects(joinAll([42 as unknown as Greenlet]), TypeError);
  ev.set();
  await g.join();
});

Deno.test("gevent's introduction: joinAll(jobs, { timeout }) then the list of values", async () => {
  const lookup = async (name: string) => {
    await sleep(name.length);
    return `${name.length}.0.0.1`;
  };
  const urls = ["www.google.com", "www.example.com", "www.python.org"];
  const jobs = urls.map((url) => spawn(lookup, url));
  await joinAll(jobs, { timeout: 2000 });
  assert.deepEqual(jobs.map((job) => job.value), ["14.0.0.1", "15.0.0.1", "14.0.0.1"]);
});

Deno.test("startLater() and spawnLater() start after the delay", async () => {
  // Order, not elapsed time: a timer due at half the delay fires before the greenlet starts.
  let halfway = false;
  const timer = setTimeout(() => halfway = true, 10);
  const g = spawnLater(20, () => halfway);
  assert.equal(g.started, true);
  await g.join();
  clearTimeout(timer);
  assert.equal(g.value, true, "started before its delay elapsed");
  const h = new Greenlet(() => "later");
  assert.throws(() => h.startLater(-5), RangeError);
  h.startLater(1);
  assert.equal(await h.get(), "later");
});

Deno.test("a greenlet that kills itself gets the exception at its next blocking call", async () => {
  const g = spawn(async () => {
    await getCurrent()!.kill();
    await sleep(0);
    return "unreachable";
  });
  await g.join();
  assert.ok(g.value instanceof GreenletExit);
});

Deno.test("the hub's notError list silences GreenletExit by default", () => {
  assert.ok(getHub().notError.includes(GreenletExit));
});

Deno.test("kill() of a greenlet awaiting what the library cannot reach still ends it", async () => {
  const stuck = Promise.withResolvers<string>();
  const resumed = Promise.withResolvers<void>();
  const g = spawn(async () => {
    await stuck.promise; // a foreign promise: no blocking call, no socket to cut off
    resumed.resolve();
    await sleep(0); // the kill is thrown here once the promise settles
    return "not reached";
  });
  await sleep(0);
  await g.kill(); // returns after a short grace instead of waiting for ever
  assert.ok(g.dead);
  assert.ok(g.value instanceof GreenletExit);
  stuck.resolve("late");
  await resumed.promise; // the suspended code resumes, unobserved
  await sleep(0);
  assert.ok(g.value instanceof GreenletExit);
});

Deno.test("a greenlet that ends while its kill is still pending ends as killed", async () => {
  const stuck = Promise.withResolvers<string>();
  const g = spawn(() => stuck.promise);
  await sleep(0);
  const killed = g.kill();
  stuck.resolve("a value that came after the kill");
  await killed;
  assert.ok(g.value instanceof GreenletExit, String(g.value));
  const failing = Promise.withResolvers<string>();
  const h = spawn(() => failing.promise);
  await sleep(0);
  const killedToo = h.kill();
  failing.reject(new Error("the driver's own error"));
  const reports = await captureReports(() => killedToo);
  assert.ok(h.value instanceof GreenletExit, String(h.exception));
  assert.equal(reports, "");
});

Deno.test("link() callbacks start one at a time: one that unlinks a later link prevents it", async () => {
  // gevent switches into each link's greenlet before it looks at the next link.
  const log: string[] = [];
  const p = spawn(() => "done");
  const l2 = () => void log.push("l2");
  p.link((s) => {
    s.unlink(l2);
    log.push("l1");
  });
  p.link(l2);
  await p.join();
  await sleep(0);
  await sleep(0);
  assert.deepEqual(log, ["l1"]);
});

Deno.test("a hub.handleError that throws breaks nothing and is reported", async () => {
  const hub = getHub();
  const saved = hub.handleError;
  const boom = new Error("the handler itself failed");
  hub.handleError = () => {
    throw boom;
  };
  try {
    const linked = Promise.withResolvers<void>();
    const reports = await captureReports(async () => {
      const g = spawn(() => {
        throw new RangeError("the greenlet's own error");
      });
      g.rawlink(() => linked.resolve());
      assert.equal(await g.join(), true);
      await assert.rejects(g.get(), RangeError);
      await linked.promise;
    });
    assert.match(reports, /the handler itself failed/);
  } finally {
    hub.handleError = saved;
  }
});

Deno.test("durations of 2^31 ms or more wait instead of firing at once", async () => {
  const long = 2 ** 31;
  const early = Promise.withResolvers<string>();
  setTimeout(() => early.resolve("the 20 ms timer"), 20);
  const g = spawn(() => sleep(long).then(() => "sleep"));
  const later = spawnLater(long, () => "spawnLater");
  const joined = spawn(() => new Event().wait({ timeout: long }).then(() => "wait"));
  const limited = spawn(() => withTimeout(long, () => new Event().wait()));
  const first = await Promise.race([
    early.promise,
    g.join().then(() => "sleep"),
    later.join().then(() => "spawnLater"),
    joined.join().then(() => "wait"),
    limited.join().then(() => "withTimeout"),
  ]);
  assert.equal(first, "the 20 ms timer");
  await killAll([g, later, joined, limited]);
});

Deno.test("bad arguments name themselves", async () => {
  // deno-lint-ignore no-explicit-any
  const anyArg = (v: unknown) => v as any;
  await assert.rejects(killAll([anyArg(42)]), /'greenlets' must hold Greenlets: found 42/);
  await assert.rejects(
    killAll(anyArg(null)),
    /'greenlets' must be iterable: current value is null/,
  );
  await assert.rejects(
    joinAll(anyArg(null)),
    /'greenlets' must be iterable: current value is null/,
  );
  await assert.rejects(wait([anyArg(1)]), /'objects' must hold linkables .*: found 1/);
  await assert.rejects(iwait(anyArg(null)).next(), /'objects' must be iterable/);
  await assert.rejects(
    new Event().wait(anyArg("x")),
    /'options' must be an object: current value is "x"/,
  );
  await assert.rejects(spawn(() => 1).join(anyArg(5)), TypeError);
  assert.throws(
    () => Timeout.start(100, anyArg(false)),
    /'exception' must be an error.*timeoutValue/,
  );
  assert.throws(() => {
    getHub().resolver = anyArg(42);
  }, /'resolver' must have gethostbyname\(\) and close\(\) methods: current value is 42/);
});

Deno.test("isKill() tells kills and timeouts from failures; result() types the value", async () => {
  assert.equal(isKill(new GreenletExit()), true);
  assert.equal(isKill(new Timeout(1)), true);
  assert.equal(isKill(new Error("a failure")), false);
  const custom = new Error("custom kill");
  const h = spawn(async () => {
    try {
      await sleep(1000);
    } catch (err) {
      return [isKill(err), err === custom];
    }
  });
  await sleep(0);
  await h.kill({ exception: custom });
  assert.deepEqual(h.value, [true, true]);
  const n: number = await spawn(() => 6 * 7).result();
  assert.equal(n, 42);
  const killed = spawn(() => 1);
  await killed.kill();
  await assert.rejects(killed.result(), GreenletExit);
});

Deno.test("a join() that times out, is aborted or whose caller is killed leaves no link behind", async () => {
  const never = new Event();
  const target = spawn(() => never.wait());
  assert.equal(await target.join({ timeout: 1 }), false);
  assert.equal(target.hasLinks(), false, "after a timeout");
  const ac = new AbortController();
  const reason = new Error("stop");
  const aborted = target.join({ signal: ac.signal });
  ac.abort(reason);
  await assert.rejects(aborted, (e) => e === reason);
  assert.equal(target.hasLinks(), false, "after an abort");
  const joiner = spawn(() => target.join());
  await sleep(0);
  assert.equal(target.hasLinks(), true);
  await joiner.kill();
  assert.equal(target.hasLinks(), false, "after a kill of the joiner");
  await target.kill();
  assert.ok(target.dead);
});

Deno.test("linkValue() and linkException() with a result receiver ignore the other outcome", async () => {
  const badValue = new AsyncResult();
  const badError = new AsyncResult();
  const goodValue = new AsyncResult<number>();
  const goodError = new AsyncResult();
  await captureReports(async () => {
    const bad = spawn(() => {
      throw new URIError("nope");
    });
    const good = spawn(() => 5);
    bad.linkValue(badValue);
    bad.linkException(badError);
    good.linkValue(goodValue);
    good.linkException(goodError);
    await joinAll([bad, good]);
    await sleep(0);
  });
  assert.equal(badValue.ready(), false);
  assert.ok(badError.exception instanceof URIError);
  assert.equal(await goodValue.get(), 5);
  assert.equal(goodError.ready(), false);
});

Deno.test("startLater() of a greenlet already started does nothing", async () => {
  let runs = 0;
  const g = spawn(() => ++runs);
  g.startLater(60_000); // no second start, and no timer left behind (the sanitizer checks)
  assert.equal(await g.get(), 1);
  const later = spawnLater(1, () => ++runs);
  later.startLater(60_000);
  assert.equal(await later.get(), 2);
  assert.equal(runs, 2);
});

Deno.test("isKill() of a killed greenlet is true only for the kill itself", async () => {
  const verdicts: boolean[] = [];
  const g = spawn(async () => {
    try {
      await sleep(60_000);
    } catch (error) {
      verdicts.push(isKill(error), isKill(new Error("another failure")));
      throw error;
    }
  });
  await sleep(0);
  await g.kill({ exception: new RangeError("custom kill") });
  assert.deepEqual(verdicts, [true, false]);
});

Deno.test("kill() of the current greenlet returns; the kill meets its next blocking call", async () => {
  const log: string[] = [];
  const g = spawn(async () => {
    await getCurrent()!.kill();
    log.push("kill() returned");
    await sleep(0);
    log.push("unreachable");
  });
  await g.join();
  assert.deepEqual(log, ["kill() returned"]);
  assert.ok(g.value instanceof GreenletExit);
});
