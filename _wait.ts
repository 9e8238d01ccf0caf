/**
 * The blocking-call protocol shared by the primitives (queues, locks, pools, events,
 * greenlets), beside the hub's `_Waiter`:
 *
 * - {@linkcode _WaitList}: a FIFO of waiters, each with an item (a putter's), that skips those
 *   interrupted meanwhile; {@linkcode _waitIn} begins a blocking call listed in one.
 * - {@linkcode _waitTimeout}: reads a blocking call's options (`timeout`, `block: false`).
 * - {@linkcode _mustYield}: every 1024th call that settles at once yields to the loop first.
 * - Links: one `rawlink`/`unlink`/notify order for everything linkable (gevent's
 *   `AbstractLinkable`): {@linkcode _Linkable} for events, results and semaphores, the same
 *   functions on a greenlet's own fields.
 *
 * @module
 */

import { _badWaitOptions, _checkFn } from "./_check.ts";
import { _begin, _inHub, _labelWaits, type _Waiter, type _WaiterHook, getHub } from "./hub.ts";

// ---------------------------------------------------------------------------------------------
// Yielding: calls that settle without waiting still pass through the loop now and then.

const YIELD_EVERY = 1024;
const counter = { ops: 0 };

/** @ignore Counts a call that would settle at once; true when it should yield first. */
export function _mustYield(): boolean {
  if (++counter.ops < YIELD_EVERY) return false;
  counter.ops = 0;
  return !_inHub();
}

// ---------------------------------------------------------------------------------------------
// Options of blocking calls.

/**
 * @ignore What the options readers of blocking calls return for a call that must not wait
 * (`block: false`, or `timeout: 0`): no valid timeout is negative.
 */
export const _NO_WAIT: number = -1;

/**
 * @ignore Reads the options of a blocking call whose "do not wait" flag (`block` for queues,
 * `blocking` for locks) is `block`: an error to reject with, {@linkcode _NO_WAIT} when the call
 * must not wait, else the timeout to wait with (`undefined`: forever).
 */
export function _waitTimeout(
  options: { timeout?: number } | undefined,
  block: boolean | undefined,
): number | undefined | Error {
  if (options === undefined) return undefined;
  const bad = _badWaitOptions(options);
  if (bad !== undefined) return bad;
  return block === false || options.timeout === 0 ? _NO_WAIT : options.timeout;
}

// ---------------------------------------------------------------------------------------------
// Waiting lists.

/** @ignore A waiter of any result and owner type. */
// deno-lint-ignore no-explicit-any
export type _AnyWaiter = _Waiter<any, any>;

/**
 * @ignore A FIFO of waiters (with an item each, for putters). A waiter interrupted by kill or
 * Timeout stays in place and is skipped; `live` counts the others.
 */
export class _WaitList {
  /** The primitive whose waiters these are, and the call they are in (for run-info). */
  readonly owner: object;
  readonly call: string;
  ws: (_AnyWaiter | undefined)[] = [];
  items: unknown[] = [];
  head = 0;
  tail = 0;
  live = 0;
  /** The item of the waiter last returned by `shift`. */
  item: unknown = undefined;

  constructor(owner: object, call: string) {
    this.owner = owner;
    this.call = call;
  }

  push(w: _AnyWaiter, item: unknown): void {
    const i = this.tail++;
    this.ws[i] = w;
    this.items[i] = item;
    this.live++;
  }

  /** Removes and returns the first live waiter; its item is left in `this.item`. */
  shift(): _AnyWaiter | undefined {
    const ws = this.ws;
    const items = this.items;
    while (this.head < this.tail) {
      const i = this.head++;
      const w = ws[i]!;
      ws[i] = undefined;
      const item = items[i];
      items[i] = undefined;
      if (w._done) continue;
      this.item = item;
      this.live--;
      if (this.head === this.tail) this.head = this.tail = 0;
      return w;
    }
    this.head = this.tail = 0;
    return undefined;
  }

  /** Removes every live waiter and returns them, in order. */
  drain(): _AnyWaiter[] {
    const out: _AnyWaiter[] = [];
    for (let i = this.head; i < this.tail; i++) {
      const w = this.ws[i]!;
      if (!w._done) out.push(w);
    }
    this.#clear();
    return out;
  }

  /** Called when a listed waiter was interrupted. */
  cancelled(): void {
    if (--this.live === 0) {
      this.#clear();
      return;
    }
    const waste = this.tail - this.head - this.live;
    if (waste > 32 && waste > this.live) {
      let j = 0;
      for (let i = this.head; i < this.tail; i++) {
        const w = this.ws[i]!;
        const item = this.items[i];
        this.ws[i] = undefined;
        this.items[i] = undefined;
        if (!w._done) {
          this.ws[j] = w;
          this.items[j] = item;
          j++;
        }
      }
      this.head = 0;
      this.tail = j;
    }
  }

  #clear(): void {
    for (let i = this.head; i < this.tail; i++) {
      this.ws[i] = undefined;
      this.items[i] = undefined;
    }
    this.head = this.tail = 0;
    this.live = 0;
  }
}

/** @ignore A listed waiter ended for another reason than its own wake-up. */
function unlist<T>(w: _Waiter<T, _WaitList>): void {
  w._owner.cancelled();
}
_labelWaits(unlist<unknown>, (w) => `${w._owner.owner.constructor.name}.${w._owner.call}`);

/**
 * @ignore Begins a blocking call that waits in `list` (with `item`, for a putter); `onTimeout`
 * settles it when `timeout` elapses, a kill or Timeout unlists it. Returns its promise, or a
 * promise already rejected (see `_begin`).
 */
export function _waitIn<T>(
  list: _WaitList,
  item: unknown,
  timeout: number | undefined,
  onTimeout: _WaiterHook<T, _WaitList>,
  signal?: AbortSignal,
): Promise<T> {
  const w = _begin<T, _WaitList>();
  if (w instanceof Promise) return w;
  w._owner = list;
  w._onCancel = unlist;
  list.push(w, item);
  w._arm(timeout, onTimeout, signal);
  return w.promise;
}

// ---------------------------------------------------------------------------------------------
// Links.

/** @ignore A user callback: called in the hub with the source (`_target`: what `link` wrapped). */
export type _LinkFn = ((source: never) => void) & { _target?: unknown };

/** @ignore An internal link (a greenlet's joiner): notified at once, not in the hub. */
interface _LinkWaiter {
  _notify(source: never): void;
}

/** @ignore One link. */
export type _Link = _LinkFn | _LinkWaiter;

/**
 * @ignore Whether a callback stays linked after it is called (`"keep"`: events and results,
 * which can become ready again) or is unlinked just before (`"once"`: greenlets, semaphores).
 */
export type _LinkMode = "keep" | "once";

/** @ignore What holds links: one link unboxed, several in an array. */
interface _LinkHolder {
  _links: _Link | _Link[] | undefined;
  /** A run of the callbacks is scheduled on the loop. */
  _notifying: boolean;
  readonly _linkMode: _LinkMode;
  ready(): boolean;
}

/** @ignore Appends `link`; notifies at once (on the loop's next turn) if `h` is ready. */
export function _addLink(h: _LinkHolder, link: _Link): void {
  const links = h._links;
  if (links === undefined) h._links = link;
  else if (Array.isArray(links)) links.push(link);
  else h._links = [links, link];
  if (h.ready()) _notifyLinks(h);
}

function matches(link: _Link, target: unknown): boolean {
  return link === target || (link as _LinkFn)._target === target;
}

/**
 * @ignore Removes the first registration of `target` (a link, or the callback a link wraps).
 * Returns whether there was one.
 */
export function _removeLink(h: _LinkHolder, target: unknown): boolean {
  const links = h._links;
  if (links === undefined) return false;
  if (!Array.isArray(links)) {
    if (!matches(links, target)) return false;
    h._links = undefined;
    return true;
  }
  let i = 0;
  while (i < links.length && !matches(links[i], target)) i++;
  if (i === links.length) return false;
  links.splice(i, 1);
  if (links.length === 0) h._links = undefined;
  else if (links.length === 1) h._links = links[0];
  return true;
}

/** @ignore The number of links. */
export function _linkCount(h: _LinkHolder): number {
  const links = h._links;
  return links === undefined ? 0 : Array.isArray(links) ? links.length : 1;
}

/**
 * @ignore `h` became ready: internal links are notified (and removed) at once, the callbacks
 * are called in the hub on the loop's next turn (one run at a time).
 */
export function _notifyLinks(h: _LinkHolder): void {
  const links = h._links;
  if (links === undefined || h._notifying) return;
  if (!Array.isArray(links)) {
    if (typeof links !== "function") {
      h._links = undefined;
      links._notify(h as never);
      return;
    }
  } else if (links.some((l) => typeof l !== "function")) {
    const callbacks = links.filter((l) => typeof l === "function");
    h._links = callbacks.length === 0
      ? undefined
      : callbacks.length === 1
      ? callbacks[0]
      : callbacks;
    for (const l of links) if (typeof l !== "function") l._notify(h as never);
    if (h._links === undefined) return;
  }
  h._notifying = true;
  getHub().loop._schedule(runLinks, h);
}

/**
 * The one notify order: the links present when the run starts, in the order they were linked,
 * each only while the source is still ready and only if no earlier callback unlinked it;
 * links added during the run wait for the next turn (so a callback that links itself again
 * cannot keep the hub busy). What a callback throws is reported; the others still run.
 */
function runLinks(arg: unknown): void {
  const h = arg as _LinkHolder;
  h._notifying = false;
  const links = h._links;
  if (links === undefined || !h.ready()) return;
  const once = h._linkMode === "once";
  // The links present now (a copy only when there are several: callbacks may unlink others).
  const pass = Array.isArray(links) ? links.slice() : undefined;
  const count = pass === undefined ? 1 : pass.length;
  const hub = getHub();
  hub.loop._inCallback++;
  try {
    for (let i = 0; i < count; i++) {
      if (!h.ready()) break;
      const link = pass === undefined ? links as _Link : pass[i];
      // Skipped when an earlier callback unlinked it; a "once" link is unlinked before its call.
      if (once ? !_removeLink(h, link) : !isLinked(h, link)) continue;
      try {
        if (typeof link === "function") link(h as never);
        else link._notify(h as never);
      } catch (error) {
        hub._report(link, error);
      }
    }
  } finally {
    hub.loop._inCallback--;
  }
  // A link added during the pass found `_notifying` false and scheduled a pass of its own.
}

function isLinked(h: _LinkHolder, link: _Link): boolean {
  const current = h._links;
  return current === link || (Array.isArray(current) && current.includes(link));
}

/**
 * @ignore The linking shared by `Event`, `AsyncResult` and `Semaphore` (greenlets use the same
 * functions on their own fields, as they extend the flow class).
 */
export abstract class _Linkable implements _LinkHolder {
  /** @ignore */
  _links: _Link | _Link[] | undefined = undefined;
  /** @ignore */
  _notifying = false;
  /** @ignore */
  abstract readonly _linkMode: _LinkMode;

  /** Whether the object is ready: waiting would not block. */
  abstract ready(): boolean;

  /**
   * Registers `callback(this)` to be called in the hub when this object is ready: on the
   * loop's next turn if it is ready now. Callbacks are called in the order they were linked,
   * each only while the object is still ready; blocking calls are not allowed in them, and
   * what one throws is reported by the hub while the others still run.
   *
   * @param callback The callback.
   * @throws {TypeError} If `callback` is not a function.
   */
  rawlink(callback: (source: this) => void): void {
    _checkFn(callback, "callback");
    _addLink(this, callback as _LinkFn);
  }

  /**
   * Removes one registration of a callback added with `rawlink`. Removing a callback that is
   * not linked does nothing.
   *
   * @param callback The callback to remove.
   */
  unlink(callback: (source: this) => void): void {
    _removeLink(this, callback);
  }
}
