import "./_deadline.ts";
import assert from "node:assert/strict";
import { Local } from "../local.ts";
import { joinAll, spawn } from "../greenlet.ts";
import { idle, sleep } from "../hub.ts";
import { Event } from "../event.ts";

Deno.test("Local holds one value per greenlet", async () => {
  const local = new Local<string>();
  const run = async (name: string) => {
    local.set(name);
    await sleep(1);
    return local.get();
  };
  const gs = ["a", "b", "c"].map((name) => spawn(run, name));
  await joinAll(gs);
  assert.deepEqual(gs.map((g) => g.value), ["a", "b", "c"]);
  assert.equal(local.get(), undefined);
  assert.equal(local.has(), false);
});

Deno.test("Local values are not inherited by child greenlets", async () => {
  const local = new Local<string>();
  const parent = spawn(async () => {
    local.set("parent");
    const child = spawn(() => local.get());
    await child.join();
    return [local.get(), child.value];
  });
  await parent.join();
  assert.deepEqual(parent.value, ["parent", undefined]);
});

Deno.test("Local init creates the value once per greenlet", async () => {
  let calls = 0;
  const local = new Local(() => ({ n: ++calls }));
  const g = spawn(() => {
    const a = local.get();
    const b = local.get();
    return a === b ? a!.n : -1;
  });
  const h = spawn(() => local.get()!.n);
  await joinAll([g, h]);
  assert.equal(g.value, 1);
  assert.equal(h.value, 2);
  assert.equal(calls, 2);
  assert.throws(() => new Local(42 as unknown as () => number), TypeError);
});

Deno.test("Local.delete() removes the value; init runs again", async () => {
  let calls = 0;
  const local = new Local(() => ++calls);
  const g = spawn(() => {
    assert.equal(local.get(), 1);
    assert.equal(local.delete(), true);
    assert.equal(local.has(), false);
    assert.equal(local.delete(), false);
    return local.get();
  });
  await g.join();
  assert.equal(g.value, 2);
});

Deno.test("Local values are dropped when their greenlet dies", async () => {
  const local = new Local<{ big: Uint8Array }>();
  const release = new Event();
  const g = spawn(async () => {
    local.set({ big: new Uint8Array(1024) });
    await release.wait();
  });
  await idle();
  assert.ok(local._peek(g) !== undefined, "the running greenlet holds its value");
  release.set();
  await g.join();
  // We still hold the greenlet object, but its value is gone.
  assert.equal(local._peek(g), undefined);
  assert.equal(g.successful(), true);
});

Deno.test("Local values of a killed greenlet are dropped too", async () => {
  const local = new Local<string>();
  const g = spawn(async () => {
    local.set("value");
    await sleep(10_000);
  });
  await idle();
  assert.equal(local._peek(g), "value");
  await g.kill();
  assert.equal(local._peek(g), undefined);
});

Deno.test("the top-level flow has a slot of its own", async () => {
  const local = new Local<number>();
  local.set(1);
  const g = spawn(() => local.get());
  await g.join();
  assert.equal(g.value, undefined);
  assert.equal(local.get(), 1);
  local.delete();
});
