/**
 * Run-info: every live greenlet as a tree (gevent's `format_run_info` / `GreenletTree`), with
 * what each one is doing. Exported through `util.ts`.
 *
 * @module
 */

import { _checkBag } from "./_check.ts";
import { _liveGreenlets, _spawnSites, getCurrent, Greenlet } from "./greenlet.ts";
import { _describeWait, type _Flow, _root, _setRunInfo, type ExceptionStream } from "./hub.ts";
import { _writeStderr } from "./_runtime.ts";

/** Options of {@linkcode formatRunInfo}. */
export interface RunInfoOptions {
  /**
   * Only greenlets in a blocking call of this library (and their ancestors, for the tree):
   * what is stuck, without those that are runnable or running. Default `false`.
   */
  blockedOnly?: boolean;
}

/** Options of {@linkcode printRunInfo}. */
export interface PrintRunInfoOptions extends RunInfoOptions {
  /** Where to write; default: standard error. */
  stream?: ExceptionStream;
}

/** Milliseconds from a clock reading kept as `ms | 0` (wraps every 2^32 ms) to `now`. */
function since(now: number, then: number): number {
  return ((now | 0) - then) >>> 0;
}

function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

// Frames in the library's own modules (files directly in its directory) are skipped when
// naming a spawn site: the site is the first frame of the caller's code.
const LIBRARY_DIR = new URL(".", import.meta.url).href;

function spawnSite(site: Error): string | undefined {
  const lines = (site.stack ?? "").split("\n").slice(1);
  for (const line of lines) {
    const m = /\(?((?:file|https?|jsr|npm):[^\s()]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (m === null) continue;
    const url = m[1];
    if (url.startsWith(LIBRARY_DIR) && /^[a-z_]+\.ts$/.test(url.slice(LIBRARY_DIR.length))) {
      continue;
    }
    return `${url}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

/** What a flow is doing now, and since when (the loop's clock), or `undefined`. */
function stateOf(flow: _Flow, now: number, current: _Flow): string {
  const w = flow._wait;
  if (flow === current) return "running (the caller of run-info)";
  if (w !== undefined) {
    const more = flow._earlier?.length ?? 0;
    const also = more === 0 ? "" : ` (and ${more} more blocking call${more === 1 ? "" : "s"})`;
    return `blocked for ${duration(since(now, w._since))} on ${_describeWait(w)}${also}`;
  }
  if (flow instanceof Greenlet) {
    if (!flow.started && !flow.dead) return "not started";
    if (flow._state === 1) {
      return flow._startTimer !== undefined ? "waiting for its start time" : "runnable (queued)";
    }
    if (flow.dead) return flow.successful() ? "dead (returned)" : "dead (failed)";
  }
  return "runnable, or awaiting something outside the library (a yield, an unpatched await)";
}

interface Node {
  g: Greenlet<unknown>;
  children: Node[];
}

/** Whether `g` is in the hub's list of live greenlets (started, not dead). */
function isLive(g: Greenlet<unknown>): boolean {
  return g._prevLive !== undefined;
}

/**
 * Renders every live greenlet (started and not dead) as a tree, parent to children, like
 * gevent's `format_run_info()`: name and function, what it is doing (running, runnable, or
 * blocked and on what: `sleep 500 ms`, `Event.wait`, `Queue.get`, `join <Greenlet ...>`,
 * `socket.recv 127.0.0.1:5432`...) and for how long, its age, and where it was spawned when
 * {@linkcode trackSpawnSites} is on. A dead greenlet appears when it has live children.
 * The first line is the code outside every greenlet (`<main>`).
 *
 * Durations come from the loop's clock, which advances at each turn of the loop: they are
 * exact to a turn, and a wait begun by code resumed from I/O after a long idle stretch may
 * count part of that stretch.
 *
 * @param options `blockedOnly` to show only what is stuck.
 * @returns The tree, one greenlet per line plus `:` detail lines.
 * @throws {TypeError} If `options` is not an object.
 *
 * @example
 * ```ts
 * import { Event, formatRunInfo, spawn } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * const ready = new Event();
 * const g = spawn(async function worker() {
 *   await ready.wait();
 * });
 * await spawn(() => {}).join(); // let the worker start and block
 * const info = formatRunInfo();
 * assert.match(info, /<Greenlet "Greenlet-\d+": worker\(\)>/);
 * assert.match(info, /blocked for \d+ ms on Event\.wait/);
 * ready.set();
 * await g.join();
 * ```
 */
export function formatRunInfo(options?: RunInfoOptions): string {
  _checkBag(options);
  const blockedOnly = options?.blockedOnly === true;
  const now = performance.now();
  const current = getCurrent() ?? _root;
  const live = _liveGreenlets();
  const nodes = new Map<Greenlet<unknown>, Node>();
  const roots: Node[] = [];
  const nodeOf = (g: Greenlet<unknown>): Node => {
    let n = nodes.get(g);
    if (n !== undefined) return n;
    n = { g, children: [] };
    nodes.set(g, n);
    const p = g.parent;
    if (p === undefined) roots.push(n);
    else nodeOf(p).children.push(n);
    return n;
  };
  for (const g of live) {
    if (!blockedOnly || g._wait !== undefined) nodeOf(g);
  }

  const out: string[] = [];
  const shown = [...nodes.keys()].filter(isLive).length;
  out.push(
    `Run info: ${live.length} live greenlet${live.length === 1 ? "" : "s"}` +
      (blockedOnly ? `, ${shown} in a blocking call` : ""),
  );
  out.push(`<main> (code outside every greenlet): ${stateOf(_root, now, current)}`);
  for (const child of _root._children ?? []) {
    if (child._wait !== undefined) {
      out.push(` :    a top-level withTimeout: ${stateOf(child, now, current)}`);
    }
  }
  const render = (n: Node, prefix: string, last: boolean): void => {
    const g = n.g;
    out.push(`${prefix} +--- ${g}`);
    const inner = `${prefix}${last ? "     " : " |   "}`;
    const detail = `${inner} :    `;
    if (isLive(g)) {
      out.push(
        `${detail}${stateOf(g, now, current)}; age ${duration(since(now, g._result as number))}`,
      );
    } else {
      out.push(`${detail}${g.dead ? "dead" : stateOf(g, now, current)} (shown for its children)`);
    }
    if (g._site !== undefined) {
      const site = spawnSite(g._site);
      if (site !== undefined) out.push(`${detail}spawned at ${site}`);
    }
    n.children.forEach((c, i) => render(c, inner, i === n.children.length - 1));
  };
  roots.forEach((n, i) => render(n, "", i === roots.length - 1));
  return out.join("\n") + "\n";
}

/**
 * Writes {@linkcode formatRunInfo}'s tree to standard error (or `options.stream`). Installed
 * as a signal handler, it answers "what is my program doing?" on demand:
 * `signalHandler("SIGUSR1", printRunInfo)`.
 *
 * @param options `stream` to write to; `blockedOnly` as in {@linkcode formatRunInfo}.
 * @throws {TypeError} If `options` is not an object.
 *
 * @example
 * ```ts
 * import { printRunInfo } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * let text = "";
 * printRunInfo({ stream: { write: (s) => text += s } });
 * assert.match(text, /^Run info: \d+ live greenlets?/);
 * ```
 */
export function printRunInfo(options?: PrintRunInfoOptions): void {
  _checkBag(options);
  const text = formatRunInfo(options);
  const stream = options?.stream;
  if (stream === undefined) _writeStderr(text);
  else stream.write(text);
}

_setRunInfo(() => formatRunInfo({ blockedOnly: true }));

let tracking = 0;

/**
 * Records where each greenlet is created from now on, so that run-info shows its spawn site
 * (`spawned at file:///app/main.ts:12:5`). Off by default: capturing a stack costs about as
 * much as the spawn itself (see the README's benchmark notes). Returns a handle that stops
 * it (`using` works); handles nest, and sites are recorded while any is active.
 *
 * @returns A handle; `stop()` (or disposing it) ends this request.
 *
 * @example
 * ```ts
 * import { formatRunInfo, sleep, spawn, trackSpawnSites } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * {
 *   using _sites = trackSpawnSites();
 *   const g = spawn(() => sleep(50));
 *   await sleep(0);
 *   assert.match(formatRunInfo(), /spawned at file:/);
 *   g.kill({ block: false });
 *   await g.join();
 * }
 * ```
 */
export function trackSpawnSites(): SpawnSiteTracking {
  tracking++;
  _spawnSites.tracked = true;
  let active = true;
  const stop = (): void => {
    if (!active) return;
    active = false;
    if (--tracking === 0) _spawnSites.tracked = false;
  };
  return { stop, [Symbol.dispose]: stop };
}

/** A request for spawn sites, from {@linkcode trackSpawnSites}. */
export interface SpawnSiteTracking extends Disposable {
  /** Ends this request (sites are no longer recorded once every request has ended). */
  stop(): void;
}
