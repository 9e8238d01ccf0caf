import "./_deadline.ts";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { signalHandler } from "../util.ts";

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
