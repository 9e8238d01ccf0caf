/**
 * Internal: the monitor thread started by `startMonitor` (`monitor.ts`). It never touches the
 * main thread's objects: it reads the switch log in shared memory (`_monitor_state.ts`),
 * learns greenlet names from rare messages, samples the process's memory, and writes the
 * blocked-loop report to standard error while the block goes on.
 *
 * The thread runs the source text of {@linkcode _guess} and {@linkcode _monitorMain} (an
 * `eval` worker of `node:worker_threads`): it then needs no file, so no `--allow-read`, and
 * works the same from a local checkout and from JSR. Both functions are therefore
 * self-contained: they use nothing but their arguments and globals.
 *
 * @module
 */

import {
  _COUNT,
  _DRAIN_END,
  _DRAIN_START,
  _FLAG,
  _LAST_AT,
  _LOG,
  _LOG_SIZE,
  _START,
  _START_AT,
  _START_END,
  _TICK,
  _WAKE,
  _YIELD,
} from "./_monitor_state.ts";

/** @ignore What `monitor.ts` passes as `workerData`. */
export interface _MonitorInit {
  shared: SharedArrayBuffer;
  maxBlockingTime: number;
  poll: number;
  live: boolean;
  memoryMax: number | undefined;
  memoryPeriod: number;
  /** The main thread's `performance.timeOrigin`, for the times of its marks. */
  origin: number;
}

/** @ignore A greenlet as the two threads exchange it. */
export interface _Info {
  ident: number;
  name: string;
  spawnSite: string | undefined;
}

/** @ignore A runner as the two threads exchange it (see `Runner` in events.ts). */
export type _Runner =
  | { kind: "greenlet"; greenlet: _Info }
  | { kind: "callback" }
  | { kind: "main" }
  | { kind: "unknown" };

/** @ignore The layout of the shared memory, passed to the thread's functions. */
export const _LAYOUT = {
  COUNT: _COUNT,
  FLAG: _FLAG,
  LOG: _LOG,
  LOG_SIZE: _LOG_SIZE,
  START_AT: _START_AT,
  LAST_AT: _LAST_AT,
  DRAIN_START: _DRAIN_START,
  DRAIN_END: _DRAIN_END,
  START: _START,
  START_END: _START_END,
  WAKE: _WAKE,
  YIELD: _YIELD,
  TICK: _TICK,
};

/** @ignore The layout's type. */
export type _Layout = typeof _LAYOUT;

/**
 * @ignore Replays the tail of the switch log and names what runs now: the greenlet whose first
 * step the drain is running; else a loop callback if the drain is on; else the first flow
 * woken and not yet switched out (continuations run in wake order); else nothing known.
 */
export function _guess(
  a: Int32Array,
  K: _Layout,
): { kind: "greenlet" | "callback" | "unknown"; id: number } {
  const c = Atomics.load(a, K.COUNT);
  let inDrain = false;
  let running = -1;
  const pending: number[] = [];
  const drop = (id: number): void => {
    const i = pending.indexOf(id);
    if (i >= 0) pending.splice(i, 1);
  };
  for (let j = K.LOG_SIZE; j >= 1; j--) {
    const i = K.LOG + ((((c - j) & 0x3fffffff) & (K.LOG_SIZE - 1)) << 1);
    const kind = a[i];
    const id = a[i + 1];
    if (kind === K.DRAIN_START) {
      inDrain = true;
      running = -1;
    } else if (kind === K.DRAIN_END) {
      inDrain = false;
      running = -1;
    } else if (kind === K.START) {
      running = id;
      drop(id);
    } else if (kind === K.START_END) {
      running = -1;
    } else if (kind === K.WAKE) {
      drop(id);
      pending.push(id);
    } else if (kind === K.YIELD) {
      drop(id);
      if (running === id) running = -1;
    } else if (kind === K.TICK) {
      // A timer ran: every continuation queued before it has run.
      pending.length = 0;
      running = -1;
      inDrain = false;
    }
  }
  if (running >= 0) return { kind: "greenlet", id: running };
  if (inDrain) return { kind: "callback", id: 0 };
  if (pending.length > 0) return { kind: "greenlet", id: pending[0] };
  return { kind: "unknown", id: 0 };
}

/** @ignore The thread's body: `wt` is `node:worker_threads`, `guess` is {@linkcode _guess}. */
export function _monitorMain(
  // deno-lint-ignore no-explicit-any
  wt: any,
  K: _Layout,
  guess: typeof _guess,
): void {
  const init = wt.workerData as _MonitorInit;
  const port = wt.parentPort;
  // deno-lint-ignore no-explicit-any
  const D: any = (globalThis as any).Deno;
  // deno-lint-ignore no-explicit-any
  const P: any = (globalThis as any).process;
  const now = (): number => performance.timeOrigin + performance.now();
  const rss = (): number => D !== undefined ? D.memoryUsage().rss : P.memoryUsage.rss();
  const encoder = new TextEncoder();
  const writeStderr = (text: string): void => {
    if (D !== undefined) {
      let bytes = encoder.encode(text);
      while (bytes.length > 0) bytes = bytes.subarray(D.stderr.writeSync(bytes));
    } else {
      P.stderr.write(text);
    }
  };
  const formatReport = (t: number, ms: number, max: number, runner: _Runner): string => {
    let who: string;
    let site = "";
    if (runner.kind === "greenlet") {
      const g = runner.greenlet;
      const plain = `Greenlet-${g.ident}`;
      who = g.name === plain
        ? `Greenlet ${plain}`
        : `Greenlet ${JSON.stringify(g.name)} (${plain})`;
      if (g.spawnSite !== undefined) {
        site = `    Spawned at:\n${
          g.spawnSite.split("\n").map((l) => `        ${l.trim()}`).join("\n")
        }\n`;
      }
    } else if (runner.kind === "callback") {
      who = "A loop callback (in the hub)";
    } else if (runner.kind === "main") {
      who = "The main flow (code outside any greenlet)";
    } else {
      who = "Unknown code (resumed from an await the library does not own)";
    }
    return `${"=".repeat(80)}\n` +
      `${new Date(t).toISOString()} : ${who} appears to be blocked\n` +
      `    Reported by the @x/gevent monitor thread: no switch for ${Math.round(ms)} ms ` +
      `(max blocking time ${max} ms); the running code is named from the switch log (a guess)\n` +
      site +
      `    Blocked stack: not available (Deno cannot read the stack of another thread)\n`;
  };

  const a = new Int32Array(init.shared);
  const f = new Float64Array(init.shared);
  const names = new Map<number, _Info>();
  const max = init.maxBlockingTime;
  let lastCount = Atomics.load(a, K.COUNT);
  let prevPollAt = now();
  let lower = prevPollAt; // the last mark came after this...
  let upper = prevPollAt; // ...and before this
  let serial = 0;
  let blocked: { serial: number; runner: _Runner } | undefined;

  const runnerOf = (g: { kind: string; id: number }): _Runner => {
    if (g.kind === "callback") return { kind: "callback" };
    if (g.kind === "unknown") return { kind: "unknown" };
    if (g.id === 0) return { kind: "main" };
    const info = names.get(g.id - 1) ??
      { ident: g.id - 1, name: `Greenlet-${g.id - 1}`, spawnSite: undefined };
    return { kind: "greenlet", greenlet: info };
  };

  const check = (): void => {
    const t = now();
    const c = Atomics.load(a, K.COUNT);
    if (c !== lastCount) {
      lastCount = c;
      lower = prevPollAt;
      upper = t;
      prevPollAt = t;
      return;
    }
    prevPollAt = t;
    // The last mark came between the poll before the count last moved (or the main thread's
    // last stamp, if later) and that move: the block began about halfway.
    const since = (Math.min(upper, Math.max(lower, init.origin + f[K.LAST_AT])) + upper) / 2;
    if (blocked !== undefined || t - since < max) return;
    const runner = runnerOf(guess(a, K));
    blocked = { serial: ++serial, runner };
    f[K.START_AT] = since;
    Atomics.store(a, K.FLAG, serial);
    const report = formatReport(t, t - since, max, runner);
    if (init.live) writeStderr(report);
    port.postMessage({
      type: "blocked",
      serial,
      at: t,
      blockedMs: t - since,
      maxBlockingTime: max,
      runner,
      stack: undefined,
      report,
      printed: init.live,
    });
  };

  let memoryOver = false;
  let peak = 0;
  const sample = (): void => {
    const usage = rss();
    const limit = init.memoryMax!;
    if (usage > limit) {
      peak = Math.max(peak, usage);
      if (!memoryOver) {
        memoryOver = true;
        port.postMessage({ type: "memoryOver", usage, max: limit });
      }
    } else if (memoryOver) {
      memoryOver = false;
      port.postMessage({ type: "memoryUnder", usage, max: limit, peak });
      peak = 0;
    }
  };

  // Deno 2.9.6 can drop a message an eval worker posts while its parent is still starting
  // it: "hello" is repeated until the main thread acknowledges it, then "ready" follows.
  const hello = setInterval(() => port.postMessage({ type: "hello" }), 20);
  let acked = false;
  port.on("message", (msg: { op: string } & Record<string, unknown>) => {
    if (msg.op === "ack") {
      if (acked) return;
      acked = true;
      clearInterval(hello);
      if (init.memoryMax !== undefined) {
        sample();
        setInterval(sample, init.memoryPeriod);
      }
      port.postMessage({ type: "ready" });
    } else if (msg.op === "name") {
      const info = msg.info as _Info;
      names.set(info.ident, info);
    } else if (msg.op === "ended") {
      const s = msg.serial as number;
      const b = blocked;
      if (b === undefined || b.serial !== s) return;
      blocked = undefined;
      lastCount = Atomics.load(a, K.COUNT);
      lower = upper = prevPollAt = now();
      const runner = (msg.runner as _Runner | undefined) ?? b.runner;
      port.postMessage({
        type: "unblocked",
        serial: s,
        totalMs: (msg.at as number) - f[K.START_AT],
        maxBlockingTime: max,
        runner,
        exact: msg.runner !== undefined,
      });
    }
  });

  setInterval(check, init.poll);
  port.postMessage({ type: "hello" });
}
