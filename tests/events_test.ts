import "./_deadline.ts";
import assert from "node:assert/strict";
import {
  formatEvent,
  formatRunner,
  type GeventEvent,
  notify,
  printEvent,
  subscribe,
  subscribers,
} from "../events.ts";
import { getHub, GreenletExit, sleep, spawn } from "../mod.ts";
import { captureReports } from "./_helpers.ts";

const memoryOver: GeventEvent = { type: "memoryOver", usage: 3 * 2 ** 20, max: 2 ** 20 };

Deno.test("subscribe() adds a subscriber until unsubscribed, in order", async (t) => {
  const hub = getHub();
  const saved = hub.exceptionStream;
  hub.exceptionStream = null; // the default subscriber would print each event
  await t.step("order, unsubscribe and dispose", () => {
    const seen: string[] = [];
    const a = subscribe(() => seen.push("a"));
    {
      using _b = subscribe(() => seen.push("b"));
      notify(memoryOver);
    }
    notify(memoryOver);
    a.unsubscribe();
    a.unsubscribe();
    notify(memoryOver);
    assert.deepEqual(seen, ["a", "b", "a"]);
  });
  await t.step("a subscriber may unsubscribe while being notified", () => {
    const seen: string[] = [];
    const once = subscribe(() => {
      seen.push("once");
      once.unsubscribe();
    });
    using _after = subscribe(() => seen.push("after"));
    notify(memoryOver);
    notify(memoryOver);
    assert.deepEqual(seen, ["once", "after", "after"]);
  });
  await t.step("bad subscriber", () => {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => subscribe(42 as any), /'fn' must be a function: current value is 42/);
  });
  hub.exceptionStream = saved;
});

Deno.test("a subscriber that throws is reported and the others still run", async () => {
  let later = 0;
  const text = await captureReports(() => {
    using _a = subscribe(function broken() {
      throw new RangeError("subscriber bug");
    });
    using _b = subscribe(() => later++);
    notify(memoryOver);
  });
  assert.equal(later, 1);
  assert.match(text, /RangeError: subscriber bug/);
  assert.match(text, /subscriber broken failed with RangeError/);
});

Deno.test("a greenlet that fails sends greenletFailed; a killed one does not", async () => {
  const seen: GeventEvent[] = [];
  const error = new TypeError("bad input");
  const report = await captureReports(async () => {
    using _sub = subscribe((event) => seen.push(event));
    const failed = spawn(() => {
      throw error;
    });
    await failed.join();
    const killed = spawn(() => sleep(1000));
    await sleep(0);
    await killed.kill();
    const exited = spawn(() => {
      throw new GreenletExit();
    });
    await exited.join();
    assert.equal(seen.length, 1);
    const event = seen[0];
    assert.ok(event.type === "greenletFailed");
    assert.equal(event.greenlet, failed);
    assert.equal(event.error, error);
  });
  // The hub's own report came first and the default subscriber added nothing to it.
  assert.equal(report.match(/failed with TypeError/g)?.length, 1);
});

Deno.test("classes in hub.notError send no greenletFailed", async () => {
  class Expected extends Error {}
  const hub = getHub();
  hub.notError.push(Expected);
  const seen: GeventEvent[] = [];
  try {
    using _sub = subscribe((event) => seen.push(event));
    await spawn(() => {
      throw new Expected("fine");
    }).join();
  } finally {
    hub.notError.pop();
  }
  assert.deepEqual(seen, []);
});

Deno.test("printEvent() writes the monitor's events to the hub's exception stream", async () => {
  assert.equal(subscribers[0], printEvent);
  const greenlet = { ident: 7, name: "spinner", spawnSite: "at file:///app.ts:3:5" };
  const text = await captureReports(() => {
    notify(memoryOver);
    notify({ type: "memoryUnder", usage: 2 ** 19, max: 2 ** 20, peak: 5 * 2 ** 20 });
    notify({
      type: "unblocked",
      serial: 1,
      totalMs: 312.4,
      maxBlockingTime: 100,
      runner: { kind: "greenlet", greenlet },
      exact: true,
    });
    const blocked = {
      type: "blocked",
      serial: 2,
      at: Date.now(),
      blockedMs: 120,
      maxBlockingTime: 100,
      runner: { kind: "callback" },
      stack: undefined,
      report: "LIVE REPORT\n",
    } as const;
    notify({ ...blocked, printed: true }); // already written by the monitor thread
    notify({ ...blocked, printed: false, report: "LATE REPORT\n" });
    notify({ type: "greenletFailed", greenlet: { name: "g", minimalIdent: 1 }, error: 1 });
  });
  const lines = text.split("\n");
  assert.match(lines[0], /Memory usage \(RSS\) 3\.0 MiB is over the limit of 1\.0 MiB$/);
  assert.match(lines[1], /back under the limit of 1\.0 MiB \(peak 5\.0 MiB\)$/);
  assert.match(
    lines[2],
    /The event loop was blocked for 312 ms \(max blocking time 100 ms\) by greenlet "spinner" \(Greenlet-7\)$/,
  );
  assert.equal(lines[3], "    Spawned at:");
  assert.equal(lines[4], "        at file:///app.ts:3:5");
  assert.equal(lines[5], "LATE REPORT");
  assert.equal(lines.length, 7); // and the final empty string: nothing for the rest
});

Deno.test("formatRunner() and formatEvent() render every kind", () => {
  const g = { ident: 2, name: "Greenlet-2", spawnSite: undefined };
  assert.equal(formatRunner({ kind: "greenlet", greenlet: g }), "greenlet Greenlet-2");
  assert.match(formatRunner({ kind: "main" }), /main flow/);
  assert.match(formatRunner({ kind: "unknown" }), /await the library does not own/);
  const text = formatEvent({
    type: "unblocked",
    serial: 1,
    totalMs: 150,
    maxBlockingTime: 100,
    runner: { kind: "unknown" },
    exact: false,
  });
  assert.match(text, /blocked for 150 ms .* by unknown code .*\(a guess\)\n$/);
  assert.match(
    formatEvent({
      type: "greenletFailed",
      greenlet: { name: "g", minimalIdent: 1 },
      error: new URIError(),
    }),
    /failed with URIError\n$/,
  );
});
