import "./_deadline.ts";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { AssertionError } from "node:assert";
import { assertSwitches, signalHandler } from "../util.ts";
import { Event, sleep, spawn } from "../mod.ts";

Deno.test("signalHandler() runs its function in a greenlet for each real signal, until cancelled", async () => {
  const greenletTs = fileURLToPath(new URL("../greenlet.ts", import.meta.url));
  const utilTs = fileURLToPath(new URL("../util.ts", import.meta.url));
  const script = `
    import { getCurrent } from "${greenletTs}";
    import { signalHandler } from "${utilTs}";
    let n = 0;
    const alive = setInterval(() => {}, 1000); // a signal listener keeps no process alive
    const handler = signalHandler("SIGUSR1", (tag) => {
      console.log(tag + " " + (++n) + " in " + (getCurrent() ? "a greenlet" : "no greenlet"));
      if (n === 2) {
        handler.cancel();
        clearInterval(alive);
      }
    }, "got");
    console.log("ready");
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const waitFor = async (text: string) => {
    while (!out.includes(text)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`child ended before printing ${text}: ${out}`);
      out += value;
    }
  };
  await waitFor("ready");
  child.kill("SIGUSR1");
  await waitFor("got 1");
  child.kill("SIGUSR1");
  await waitFor("got 2");
  await lines.cancel();
  await child.stderr.cancel();
  const status = await child.status;
  assert.equal(status.code, 0);
  assert.match(out, /got 1 in a greenlet\ngot 2 in a greenlet/);
});

Deno.test("signalHandler() checks its arguments and cancels once", () => {
  // deno-lint-ignore no-explicit-any
  const anyArg = (v: unknown) => v as any;
  assert.throws(() => signalHandler(anyArg("USR1"), () => {}), /'signal' must be a signal name/);
  assert.throws(() => signalHandler("SIGUSR1", anyArg(42)), /'fn' must be a function/);
  const h = signalHandler("SIGUSR2", () => {});
  assert.equal(h.active, true);
  h.cancel();
  h.cancel();
  assert.equal(h.active, false);
});

function spinFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

Deno.test("assertSwitches() fails when nothing switched, and passes what fn returned", async (t) => {
  await t.step("sync code that never yields", async () => {
    await assert.rejects(
      assertSwitches(() => 42),
      (e: unknown) =>
        e instanceof AssertionError &&
        /^To any greenlet in .* ms: nothing switched$/.test(e.message),
    );
  });
  await t.step("a blocking call is a switch", async () => {
    assert.equal(
      await assertSwitches(async () => {
        await sleep(0);
        return "value";
      }),
      "value",
    );
  });
  await t.step("starting and waking greenlets are switches", async () => {
    const ev = new Event();
    const g = spawn(() => ev.wait());
    await assertSwitches(async () => {
      await g.join({ timeout: 0 });
      await sleep(0);
      ev.set();
      await g.join();
    });
  });
  await t.step("fn's own error goes through unchecked", async () => {
    await assert.rejects(
      assertSwitches(() => {
        throw new URIError("mine");
      }),
      URIError,
    );
  });
});

Deno.test("assertSwitches({ maxBlockingTime }) names the time the loop was held", async (t) => {
  await t.step("held between two switches", async () => {
    await assert.rejects(
      assertSwitches(async () => {
        await sleep(0);
        spinFor(80);
        await sleep(0);
      }, { maxBlockingTime: 30 }),
      (e: unknown) => {
        assert.ok(e instanceof AssertionError);
        const m =
          /^To any greenlet in ([\d.]+) ms \(max allowed 30 ms\): the loop was held for ([\d.]+) ms without a switch$/
            .exec(e.message);
        assert.ok(m, e.message);
        assert.ok(Number(m[2]) >= 80 && Number(m[1]) >= Number(m[2]));
        return true;
      },
    );
  });
  await t.step("held at the end, with no switch after", async () => {
    await assert.rejects(
      assertSwitches(async () => {
        await sleep(0);
        spinFor(60);
      }, { maxBlockingTime: 30 }),
      /held for/,
    );
  });
  await t.step("waiting is not holding: an idle await longer than the limit passes", async () => {
    await assertSwitches(async () => {
      await sleep(0);
      await new Promise((resolve) => setTimeout(resolve, 150)); // not the library's await
      await sleep(0);
    }, { maxBlockingTime: 50 });
  });
  await t.step("hubOnly names the hub", async () => {
    await assert.rejects(
      assertSwitches(async () => {
        await sleep(0);
        spinFor(80);
        await sleep(0);
      }, { maxBlockingTime: 30, hubOnly: true }),
      (e: unknown) =>
        e instanceof AssertionError && /^To the hub in .* ms \(max allowed 30 ms\)/.test(e.message),
    );
  });
  await t.step("bad arguments", async () => {
    // deno-lint-ignore no-explicit-any
    const anyArg = (v: unknown) => v as any;
    await assert.rejects(assertSwitches(anyArg(1)), /'fn' must be a function/);
    await assert.rejects(assertSwitches(() => 1, { maxBlockingTime: -5 }), RangeError);
    await assert.rejects(assertSwitches(() => 1, anyArg("x")), /'options' must be an object/);
  });
});
