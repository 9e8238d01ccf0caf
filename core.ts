/**
 * The event loop abstraction: a FIFO run queue of callbacks and timer watchers.
 *
 * This module knows nothing of greenlets. The hub (`hub.ts`) drives it and turns
 * callback errors into printed reports. Callbacks run from a microtask; after
 * about {@linkcode SLICE_MS} milliseconds of continuous work the loop yields to
 * the macrotask queue (`setImmediate`) so timers and I/O are never starved.
 *
 * @module
 */

import { _checkMs } from "./_check.ts";
import { _refTimer, _unrefTimer } from "./_runtime.ts";
import { _DRAIN_END, _DRAIN_START, _mark, _marking } from "./_monitor_state.ts";

/** How long, in milliseconds, the run queue may keep the thread before yielding to timers and I/O. */
export const SLICE_MS = 4;

type Entry = (arg: unknown) => void;

/**
 * A callback queued with {@linkcode Loop.runCallback}. It runs once, in FIFO order
 * with every other callback, unless {@linkcode CallbackWatcher.stop} is called first.
 *
 * @example Stopping a callback before it runs
 * ```ts
 * import { Loop } from "@x/gevent/core";
 * import assert from "node:assert/strict";
 *
 * const loop = new Loop();
 * const cb = loop.runCallback(() => assert.fail("stopped callbacks never run"));
 * assert.equal(cb.pending, true);
 * cb.stop();
 * assert.equal(cb.pending, false);
 * ```
 */
export class CallbackWatcher {
  #loop: Loop;
  #fn: ((...args: never[]) => unknown) | undefined;
  #args: unknown[];

  /** Created by {@linkcode Loop.runCallback}; not meant to be constructed directly. */
  constructor(loop: Loop, fn: (...args: never[]) => unknown, args: unknown[]) {
    this.#loop = loop;
    this.#fn = fn;
    this.#args = args;
  }

  /** Whether the callback is still waiting to run. */
  get pending(): boolean {
    return this.#fn !== undefined;
  }

  /** Same as {@linkcode CallbackWatcher.pending}: a callback is active until it has run or been stopped. */
  get active(): boolean {
    return this.#fn !== undefined;
  }

  /** Prevents the callback from running. Stopping twice is harmless. */
  stop(): void {
    this.#fn = undefined;
  }

  /** @ignore */
  _fire(): void {
    const fn = this.#fn;
    if (fn === undefined) return;
    this.#fn = undefined;
    this.#loop._callUser(this, fn, this.#args);
  }
}

function fireCallback(w: unknown): void {
  (w as CallbackWatcher)._fire();
}

/** Options for {@linkcode Loop.timer}. */
export interface TimerOptions {
  /** Whether the timer keeps the process alive while it is active (default `true`). */
  ref?: boolean;
}

/**
 * A timer watcher: calls its callback `after` milliseconds from {@linkcode TimerWatcher.start},
 * then every `repeat` milliseconds if `repeat` is positive. Callbacks run "in the hub":
 * blocking calls made from them reject with `BlockingSwitchOutError`.
 *
 * @example A one-shot timer
 * ```ts
 * import { Loop } from "@x/gevent/core";
 * import assert from "node:assert/strict";
 *
 * const loop = new Loop();
 * const fired = Promise.withResolvers<string>();
 * const timer = loop.timer(5);
 * timer.start(fired.resolve, "tick");
 * assert.equal(timer.pending, true);
 * assert.equal(await fired.promise, "tick");
 * assert.equal(timer.active, false);
 * ```
 */
export class TimerWatcher {
  #loop: Loop;
  #after: number;
  #repeat: number;
  #ref: boolean;
  #handle: _Timer | undefined;
  #fn: ((...args: never[]) => unknown) | undefined;
  #args: unknown[] = [];

  /** Created by {@linkcode Loop.timer}; not meant to be constructed directly. */
  constructor(loop: Loop, after: number, repeat: number, ref: boolean) {
    this.#loop = loop;
    this.#after = after;
    this.#repeat = repeat;
    this.#ref = ref;
  }

  /** Whether the timer is started and has not fired (for a repeating timer: not stopped). */
  get active(): boolean {
    return this.#handle !== undefined;
  }

  /** Same as {@linkcode TimerWatcher.active}. */
  get pending(): boolean {
    return this.#handle !== undefined;
  }

  /** Whether an active timer keeps the process alive. Can be changed while it runs. */
  get ref(): boolean {
    return this.#ref;
  }
  set ref(value: boolean) {
    this.#ref = value;
    const handle = this.#handle;
    if (handle instanceof _LongTimer) {
      if (value) handle.ref();
      else handle.unref();
    } else if (handle !== undefined) {
      if (value) _refTimer(handle);
      else _unrefTimer(handle);
    }
  }

  /**
   * Starts the timer so that it calls `fn(...args)`. Starting an active timer restarts it.
   *
   * @param fn The callback.
   * @param args Arguments passed to `fn`.
   */
  start<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): void {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot start timer as 'fn' must be a function: current value is ${fn}`);
    }
    this.stop();
    this.#fn = fn as (...args: never[]) => unknown;
    this.#args = args;
    const handle = this.#handle = this.#repeat > 0
      ? setInterval(this.#fire, this.#repeat)
      : _setTimer(this.#fire, this.#after, undefined);
    if (!this.#ref) {
      if (handle instanceof _LongTimer) handle.unref();
      else _unrefTimer(handle);
    }
  }

  /** Stops the timer; its callback will not be called. Stopping twice is harmless. */
  stop(): void {
    if (this.#handle === undefined) return;
    if (this.#repeat > 0) clearInterval(this.#handle as ReturnType<typeof setInterval>);
    else _clearTimer(this.#handle);
    this.#handle = undefined;
    this.#fn = undefined;
  }

  #fire = (): void => {
    const fn = this.#fn;
    if (fn === undefined) return;
    if (this.#repeat <= 0) {
      this.#handle = undefined;
      this.#fn = undefined;
    }
    this.#loop._callUser(this, fn, this.#args);
  };
}

/**
 * The event loop: a FIFO queue of callbacks on top of the JavaScript job queues, plus timer
 * watchers. Exactly one exists per hub; get it with `getHub().loop`.
 *
 * Guarantees: callbacks run in the order they were queued; a callback queued while the queue
 * is being run waits for the next turn (so `sleep(0)` lets every runnable greenlet go first);
 * a long run of callbacks yields to timers and I/O every few milliseconds.
 *
 * @example Callbacks run in order, after the current code yields
 * ```ts
 * import { Loop } from "@x/gevent/core";
 * import assert from "node:assert/strict";
 *
 * const loop = new Loop();
 * const seen: number[] = [];
 * const done = Promise.withResolvers<void>();
 * loop.runCallback((n: number) => seen.push(n), 1);
 * loop.runCallback((n: number) => seen.push(n), 2);
 * loop.runCallback(done.resolve);
 * assert.deepEqual(seen, []);
 * await done.promise;
 * assert.deepEqual(seen, [1, 2]);
 * ```
 */
export class Loop {
  /**
   * Called with `(context, error)` when a callback throws. The hub installs its error handler
   * here; the default rethrows from a fresh macrotask, as an uncaught error would.
   */
  onError: (context: unknown, error: unknown) => void = (_context, error) => {
    throw error;
  };

  // The run queue holds (fn, arg) pairs in `#queue[#head .. #length)`. The array is reused,
  // never truncated, so a steady flow of callbacks allocates nothing.
  #queue: unknown[] = [];
  #length = 0;
  #head = 0;
  #scheduled = false;
  #sliceStart = 0;
  #now = performance.now();
  /** @ignore Depth of user callbacks ("in the hub") currently on the stack. */
  _inCallback = 0;

  /**
   * Creates a timer watcher; call `start(fn, ...args)` on it to arm it.
   *
   * @param after Milliseconds before the first call.
   * @param repeat Milliseconds between later calls; `0` (the default) fires once.
   * @param options `ref: false` lets the process exit while the timer is active.
   * @returns An inactive timer watcher.
   * @throws {RangeError} If `after` or `repeat` is negative or not finite.
   */
  timer(after: number, repeat = 0, options?: TimerOptions): TimerWatcher {
    if (options === undefined) options = {};
    _checkMs("after", after);
    _checkMs("repeat", repeat);
    return new TimerWatcher(this, after, repeat, options.ref ?? true);
  }

  /**
   * Queues `fn(...args)` to run on the loop's next turn, after every callback already queued.
   *
   * @param fn The callback; it runs "in the hub", where blocking calls are not allowed.
   * @param args Arguments passed to `fn`.
   * @returns A watcher that can stop the callback before it runs.
   * @throws {TypeError} If `fn` is not a function.
   */
  runCallback<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): CallbackWatcher {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot run callback as 'fn' must be a function: current value is ${fn}`);
    }
    const w = new CallbackWatcher(this, fn as (...args: never[]) => unknown, args);
    this._schedule(fireCallback, w);
    return w;
  }

  /** The loop's cached clock, in milliseconds (`performance.now()` at the last update). */
  now(): number {
    return this.#now;
  }

  /** Refreshes the cached clock that {@linkcode Loop.now} returns. */
  updateNow(): void {
    this.#now = performance.now();
  }

  /** Number of callbacks waiting in the run queue. */
  get pendingCount(): number {
    return (this.#length - this.#head) >> 1;
  }

  #tick: Promise<void> | undefined = undefined;
  #tickAt = -1;

  /**
   * @ignore A promise resolved when the loop reaches this point of the run queue. Calls made
   * with nothing else queued in between share one promise (and one queue entry): their
   * reactions then run in the order they were registered, which is the FIFO order anyway.
   */
  _yield(): Promise<void> {
    if (this.#tickAt === this.#length && this.#tick !== undefined) return this.#tick;
    const { promise, resolve } = Promise.withResolvers<void>();
    this._schedule(resolve as Entry, undefined);
    this.#tick = promise;
    this.#tickAt = this.#length;
    return promise;
  }

  /** @ignore Internal fast path: queue `fn(arg)` without a watcher. `fn` must not throw. */
  _schedule(fn: Entry, arg: unknown): void {
    const q = this.#queue;
    const n = this.#length;
    q[n] = fn;
    q[n + 1] = arg;
    this.#length = n + 2;
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#kick();
    }
  }

  /** @ignore Runs a user callback "in the hub", reporting what it throws. */
  _callUser(context: unknown, fn: (...args: never[]) => unknown, args: unknown[]): void {
    this._inCallback++;
    try {
      (fn as (...args: unknown[]) => unknown)(...args);
    } catch (error) {
      this.onError(context, error);
    } finally {
      this._inCallback--;
    }
  }

  #kick(): void {
    kicked.push(this);
    if (kicked.length === 1) openGate();
  }

  /** @ignore Entered from the gate, outside every async context. */
  _enter(): void {
    const now = performance.now();
    this.#now = now;
    if (now - this.#sliceStart > SLICE_MS) {
      setImmediate(this.#drainFromMacrotask);
    } else {
      this.#drain();
    }
  }

  #drainFromMacrotask = (): void => {
    this.#sliceStart = performance.now();
    this.#drain();
  };

  #drain = (): void => {
    // The queue is consumed in place from #head: a slice break copies nothing, and the array
    // is compacted only once more than half of a large one has been consumed.
    const queue = this.#queue;
    const n = this.#length;
    this.#tick = undefined;
    this.#tickAt = -1;
    let i = this.#head;
    if (_marking) _mark(_DRAIN_START, undefined);
    try {
      while (i < n) {
        const fn = queue[i] as Entry;
        const arg = queue[i + 1];
        queue[i] = queue[i + 1] = undefined;
        i += 2;
        fn(arg);
        if ((i & 2047) === 0 && performance.now() - this.#sliceStart > SLICE_MS) break;
      }
    } finally {
      const len = this.#length;
      if (i === len) {
        this.#head = 0;
        this.#length = 0;
      } else if (i >= 65536 && i * 2 >= len) {
        queue.copyWithin(0, i, len);
        queue.fill(undefined, len - i, len);
        this.#length = len - i;
        this.#head = 0;
        this.#tick = undefined;
        this.#tickAt = -1;
      } else {
        this.#head = i;
      }
      this.#now = performance.now();
      if (_marking) _mark(_DRAIN_END, undefined);
      if (this.#length > this.#head) this.#kick();
      else this.#scheduled = false;
    }
  };
}

// Loops are drained through a reaction registered on a "gate" promise from code that runs
// outside every async context: first this module's top level, then the gate reaction itself.
// Resolving the gate from anywhere runs the drain in that empty context, so callbacks never
// inherit the async context of whoever queued them, and entering a greenlet's context from
// there costs about a third of entering it from inside another context.
const kicked: Loop[] = [];
let openGate: () => void = armGate();

function armGate(): () => void {
  const { promise, resolve } = Promise.withResolvers<void>();
  promise.then(gateOpened);
  return resolve;
}

function gateOpened(): void {
  openGate = armGate();
  const loops = kicked.splice(0);
  for (const loop of loops) loop._enter();
}

/** The longest delay `setTimeout` honours; longer ones fire at once (TimeoutOverflowWarning). */
const MAX_DELAY = 2 ** 31 - 1;

/** @ignore A timer handle from {@linkcode _setTimer}: a platform timer, or a chain of them. */
export type _Timer = ReturnType<typeof setTimeout> | _LongTimer;

/** @ignore A delay longer than `setTimeout` allows, made of a chain of timers. */
export class _LongTimer {
  #handle: ReturnType<typeof setTimeout>;
  #left: number;
  #fire: (arg: unknown) => void;
  #arg: unknown;
  #ref = true;

  constructor(fire: (arg: unknown) => void, ms: number, arg: unknown) {
    this.#fire = fire;
    this.#arg = arg;
    this.#left = ms - MAX_DELAY;
    this.#handle = setTimeout(this.#step, MAX_DELAY);
  }

  #step = (): void => {
    if (this.#left > MAX_DELAY) {
      this.#left -= MAX_DELAY;
      this.#handle = setTimeout(this.#step, MAX_DELAY);
    } else {
      this.#handle = setTimeout(this.#fire, this.#left, this.#arg);
    }
    if (!this.#ref) _unrefTimer(this.#handle);
  };

  /** Stops the chain. */
  clear(): void {
    clearTimeout(this.#handle);
  }

  /** Lets the chain not keep the process alive. */
  unref(): void {
    this.#ref = false;
    _unrefTimer(this.#handle);
  }

  /** Lets the chain keep the process alive (the default). */
  ref(): void {
    this.#ref = true;
    _refTimer(this.#handle);
  }
}

/**
 * @ignore `setTimeout(fire, ms, arg)` for any finite delay: delays of 2^31 ms or more (which
 * `setTimeout` fires at once) are chained. Clear it with {@linkcode _clearTimer}.
 */
export function _setTimer<A>(fire: (arg: A) => void, ms: number, arg: A): _Timer {
  return ms > MAX_DELAY
    ? new _LongTimer(fire as (arg: unknown) => void, ms, arg)
    : setTimeout(fire, ms, arg);
}

/** @ignore Clears a timer from {@linkcode _setTimer} (or a platform timer). */
export function _clearTimer(timer: _Timer | undefined): void {
  if (timer instanceof _LongTimer) timer.clear();
  else clearTimeout(timer);
}
