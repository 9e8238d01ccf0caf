/**
 * Events about the running program (gevent's `gevent.events`): a blocked event loop and its
 * end, memory usage over and back under a limit, a greenlet that failed.
 *
 * Subscribers are plain functions called with each event, in the order they were added. The
 * list starts with {@linkcode printEvent}, the default subscriber, which writes the monitor's
 * events to the hub's exception stream (standard error by default). A subscriber that throws
 * is reported through the hub (`Hub.handleError`) and the others still run.
 *
 * The blocked-loop and memory events come from the monitor (`startMonitor` in
 * `@x/gevent/monitor`); `greenletFailed` comes from every greenlet that dies with an error.
 *
 * @example Collecting failures
 * ```ts
 * import { type GeventEvent, subscribe } from "@x/gevent/events";
 * import { getHub, spawn } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * getHub().exceptionStream = null; // keep the hub's own report quiet
 * const seen: GeventEvent[] = [];
 * using _sub = subscribe((event) => seen.push(event));
 * await spawn(() => { throw new TypeError("bad input"); }).join();
 * assert.equal(seen.length, 1);
 * assert.equal(seen[0].type, "greenletFailed");
 * ```
 *
 * @module
 */

import { getHub } from "./hub.ts";
import { _inspect } from "./_runtime.ts";

/** A greenlet as the monitor describes it (the monitor thread cannot hold the object). */
export interface GreenletInfo {
  /** Its `minimalIdent`. */
  readonly ident: number;
  /** Its `name` when the monitor last learnt it (`Greenlet-<ident>` unless one was set). */
  readonly name: string;
  /**
   * Where it was created (stack lines), when known: greenlets created while a monitor runs.
   * The monitor thread learns it for greenlets with a custom name at once, for the others
   * once they have lived one heartbeat; the end-of-block report always has it.
   */
  readonly spawnSite: string | undefined;
}

/**
 * What was running while the loop was held: a greenlet, a loop callback (code "in the hub",
 * such as a `rawlink` or a timer watcher), the main flow (code outside any greenlet), or not
 * known (code resumed from an `await` of something the library does not own, and no mark
 * since).
 */
export type Runner =
  | { readonly kind: "greenlet"; readonly greenlet: GreenletInfo }
  | { readonly kind: "callback" }
  | { readonly kind: "main" }
  | { readonly kind: "unknown" };

/**
 * The event loop has not come back for `maxBlockingTime`: sent while the block goes on,
 * delivered to subscribers (which run on the blocked thread) once it ends, just before the
 * matching {@linkcode LoopUnblocked}. gevent's `EventLoopBlocked`.
 */
export interface LoopBlocked {
  /** The discriminant. */
  readonly type: "blocked";
  /** Number of the block since the monitor started (1, 2, ...); its `unblocked` has the same. */
  readonly serial: number;
  /** When the monitor thread noticed, in milliseconds since the epoch (as `Date.now()`). */
  readonly at: number;
  /** How long the loop had been held when the monitor noticed, in milliseconds (at least). */
  readonly blockedMs: number;
  /** The monitor's threshold, in milliseconds. */
  readonly maxBlockingTime: number;
  /** Who was running, as the monitor thread could tell from the switch log (a best guess). */
  readonly runner: Runner;
  /**
   * The blocked thread's stack. Always `undefined` on Deno: no public API reads another
   * thread's stack (`node:inspector`'s `connectToMainThread` is not supported).
   */
  readonly stack: string | undefined;
  /** The report, as written while the block went on. */
  readonly report: string;
  /** Whether the monitor thread already wrote `report` to standard error while it went on. */
  readonly printed: boolean;
}

/** The blocked loop came back (a report goes out at the end of every reported block). */
export interface LoopUnblocked {
  /** The discriminant. */
  readonly type: "unblocked";
  /** The block's number, as in its {@linkcode LoopBlocked}. */
  readonly serial: number;
  /** How long the loop was held in all, in milliseconds (to within the monitor's poll period). */
  readonly totalMs: number;
  /** The monitor's threshold, in milliseconds. */
  readonly maxBlockingTime: number;
  /**
   * Who held it: when `exact`, the flow whose code made the first library call after the
   * gap (a blocking call, a wake-up, its end); otherwise the monitor thread's guess.
   */
  readonly runner: Runner;
  /** Whether `runner` was seen on the blocked thread rather than guessed. */
  readonly exact: boolean;
}

/** Memory usage went over the limit. gevent's `MemoryUsageThresholdExceeded`. */
export interface MemoryOver {
  /** The discriminant. */
  readonly type: "memoryOver";
  /** The process's resident set size (RSS), in bytes. */
  readonly usage: number;
  /** The limit, in bytes. */
  readonly max: number;
}

/** Memory usage fell back under the limit. gevent's `MemoryUsageUnderThreshold`. */
export interface MemoryUnder {
  /** The discriminant. */
  readonly type: "memoryUnder";
  /** The process's resident set size (RSS), in bytes. */
  readonly usage: number;
  /** The limit, in bytes. */
  readonly max: number;
  /** The highest usage sampled while over the limit (gevent's `max_memory_usage`). */
  readonly peak: number;
}

/** A greenlet died with an error (after the hub printed its report). */
export interface GreenletFailed {
  /** The discriminant. */
  readonly type: "greenletFailed";
  /** The greenlet itself (a `Greenlet`; typed by what the event needs). */
  readonly greenlet: { readonly name: string; readonly minimalIdent: number };
  /** What it threw. */
  readonly error: unknown;
}

/**
 * `Greenlet.kill({ timeout })` ran out of time and the greenlet is still alive (as in gevent,
 * the kill itself returns quietly; this event says who did not die and what it awaits).
 */
export interface KillTimedOut {
  /** The discriminant. */
  readonly type: "killTimedOut";
  /** The greenlet that did not die, rendered with what it awaits: `<Greenlet ...> (blocked on Event.wait)`. */
  readonly greenlet: string;
  /** The kill's timeout, in milliseconds. */
  readonly timeout: number;
}

/** Every event, told apart by `type`. */
export type GeventEvent =
  | LoopBlocked
  | LoopUnblocked
  | MemoryOver
  | MemoryUnder
  | GreenletFailed
  | KillTimedOut;

/** A function called with each event. */
export type Subscriber = (event: GeventEvent) => void;

/** A subscription made by {@linkcode subscribe}. */
export interface Subscription {
  /** Removes the subscriber. Harmless when called twice. */
  unsubscribe(): void;
  /** Same as `unsubscribe()`, for `using`. */
  [Symbol.dispose](): void;
}

function render(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/**
 * Renders a runner as reports show it.
 *
 * @param runner What was running.
 * @returns Such as `greenlet "spinner" (Greenlet-3)` or `a loop callback`.
 *
 * @example
 * ```ts
 * import { formatRunner } from "@x/gevent/events";
 * import assert from "node:assert/strict";
 *
 * const greenlet = { ident: 3, name: "spinner", spawnSite: undefined };
 * assert.equal(formatRunner({ kind: "greenlet", greenlet }), 'greenlet "spinner" (Greenlet-3)');
 * assert.equal(formatRunner({ kind: "callback" }), "a loop callback (in the hub)");
 * ```
 */
export function formatRunner(runner: Runner): string {
  switch (runner.kind) {
    case "greenlet": {
      const g = runner.greenlet;
      const plain = `Greenlet-${g.ident}`;
      return g.name === plain
        ? `greenlet ${plain}`
        : `greenlet ${JSON.stringify(g.name)} (${plain})`;
    }
    case "callback":
      return "a loop callback (in the hub)";
    case "main":
      return "the main flow (code outside any greenlet)";
    default:
      return "unknown code (resumed from an await the library does not own)";
  }
}

/**
 * Renders an event as {@linkcode printEvent} writes it: one or more lines, ending with a
 * newline.
 *
 * @param event The event.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { formatEvent } from "@x/gevent/events";
 * import assert from "node:assert/strict";
 *
 * const text = formatEvent({ type: "memoryOver", usage: 3 * 2 ** 20, max: 2 ** 20 });
 * assert.match(text, /Memory usage \(RSS\) 3\.0 MiB is over the limit of 1\.0 MiB/);
 * ```
 */
export function formatEvent(event: GeventEvent): string {
  const now = new Date().toISOString();
  switch (event.type) {
    case "blocked":
      return event.report;
    case "unblocked":
      return `${now} : The event loop was blocked for ${Math.round(event.totalMs)} ms ` +
        `(max blocking time ${event.maxBlockingTime} ms) by ${formatRunner(event.runner)}` +
        `${event.exact ? "" : " (a guess)"}\n` +
        (event.runner.kind === "greenlet" && event.runner.greenlet.spawnSite !== undefined
          ? `    Spawned at:\n${indent(event.runner.greenlet.spawnSite)}\n`
          : "");
    case "memoryOver":
      return `${now} : Memory usage (RSS) ${render(event.usage)} is over the limit of ` +
        `${render(event.max)}\n`;
    case "memoryUnder":
      return `${now} : Memory usage (RSS) ${render(event.usage)} is back under the limit of ` +
        `${render(event.max)} (peak ${render(event.peak)})\n`;
    case "greenletFailed":
      return `${now} : ${String(event.greenlet)} failed with ${
        event.error instanceof Error ? event.error.name : _inspect(event.error)
      }\n`;
    case "killTimedOut":
      return `${now} : ${event.greenlet} did not die within ${event.timeout} ms of its kill\n`;
  }
}

function indent(text: string): string {
  return text.split("\n").map((line) => `        ${line.trim()}`).join("\n");
}

/**
 * The default subscriber: writes the monitor's events to the hub's exception stream
 * (`getHub().exceptionStream`, standard error by default; nothing when it is `null`). It
 * skips a `blocked` event the monitor thread already printed while the block went on, and
 * `greenletFailed` (the hub has printed that failure's report already).
 *
 * @param event The event.
 *
 * @example Removing it, and putting it back
 * ```ts
 * import { printEvent, subscribers } from "@x/gevent/events";
 * import assert from "node:assert/strict";
 *
 * const i = subscribers.indexOf(printEvent);
 * assert.ok(i >= 0);
 * subscribers.splice(i, 1);
 * subscribers.splice(i, 0, printEvent);
 * ```
 */
export function printEvent(event: GeventEvent): void {
  if (event.type === "greenletFailed") return;
  if (event.type === "blocked" && event.printed) return;
  const stream = getHub().exceptionStream;
  if (stream !== null) stream.write(formatEvent(event));
}

/**
 * The subscribers, called in order with each event (gevent's `gevent.events.subscribers`).
 * Starts with {@linkcode printEvent}; prefer {@linkcode subscribe} to changing it directly.
 *
 * @example
 * ```ts
 * import { printEvent, subscribers } from "@x/gevent/events";
 * import assert from "node:assert/strict";
 *
 * assert.ok(subscribers.includes(printEvent));
 * ```
 */
export const subscribers: Subscriber[] = [printEvent];

/**
 * Adds `fn` to the end of {@linkcode subscribers}.
 *
 * @param fn Called with each event, on the main thread. What it throws is reported by the hub.
 * @returns The subscription; `unsubscribe()` or `using` removes it.
 * @throws {TypeError} If `fn` is not a function.
 *
 * @example
 * ```ts
 * import { notify, subscribe } from "@x/gevent/events";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const sub = subscribe((event) => seen.push(event.type));
 * notify({ type: "memoryUnder", usage: 1, max: 2, peak: 3 });
 * sub.unsubscribe();
 * notify({ type: "memoryUnder", usage: 1, max: 2, peak: 3 });
 * assert.deepEqual(seen, ["memoryUnder"]);
 * ```
 */
export function subscribe(fn: Subscriber): Subscription {
  if (typeof fn !== "function") {
    throw new TypeError(`'fn' must be a function: current value is ${_inspect(fn)}`);
  }
  subscribers.push(fn);
  const unsubscribe = (): void => {
    const i = subscribers.indexOf(fn);
    if (i >= 0) subscribers.splice(i, 1);
  };
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    unsubscribe();
  };
  return { unsubscribe: once, [Symbol.dispose]: once };
}

/**
 * Calls every subscriber with `event`, in order (on a copy of the list, so subscribers may
 * unsubscribe). A subscriber that throws is reported through the hub (`Hub.handleError`,
 * as `subscriber <name>`) and the next one still runs. Never throws.
 *
 * @param event The event.
 *
 * @example A throwing subscriber does not stop the others
 * ```ts
 * import { notify, subscribe } from "@x/gevent/events";
 * import { getHub } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * getHub().exceptionStream = { write: (text) => lines.push(text) };
 * using _a = subscribe(function broken() { throw new Error("oops"); });
 * let later = 0;
 * using _b = subscribe(() => later++);
 * notify({ type: "memoryOver", usage: 2, max: 1 });
 * assert.equal(later, 1);
 * assert.ok(lines.some((line) => line.includes("subscriber broken failed with Error")));
 * ```
 */
export function notify(event: GeventEvent): void {
  for (const fn of subscribers.slice()) {
    try {
      fn(event);
    } catch (error) {
      try {
        getHub()._report(`subscriber ${fn.name || "<anonymous>"}`, error);
      } catch {
        // Nothing left to report with.
      }
    }
  }
}

/** @ignore Emits {@linkcode KillTimedOut} (from `Greenlet.kill`). */
export function _killTimedOut(greenlet: string, timeout: number): void {
  notify({ type: "killTimedOut", greenlet, timeout });
}

/** @ignore Called by greenlets that die with an error, after the hub's report. */
export function _greenletFailed(
  greenlet: { readonly name: string; readonly minimalIdent: number },
  error: unknown,
): void {
  if (subscribers.length === 1 && subscribers[0] === printEvent) return;
  for (const cls of getHub().notError) {
    if (error instanceof cls) return;
  }
  notify({ type: "greenletFailed", greenlet, error });
}
