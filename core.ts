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

/** How long, in milliseconds, the run queue may keep the thread before yielding to timers and I/O. */
export const SLICE_MS = 4;

type Entry = (arg: unknown) => void;

/**
 * A callback queued with {@linkcode Loop.runCallback}. It runs once, in FIFO order
 * with every other callback, unless {@linkcode CallbackWatcher.stop} is called first.
 *
 * @example Stopping a callback before it runs
 * ```ts
 * import { Loop } from "./core.ts";
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
 * import { Loop } from "./core.ts";
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
  #handle: ReturnType<typeof setTimeout> | undefined;
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
    if (this.#handle !== undefined && !value) Deno.unrefTimer(this.#handle);
    if (this.#handle !== undefined && value) Deno.refTimer(this.#handle);
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
    this.#handle = this.#repeat > 0
      ? setInterval(this.#fire, this.#repeat)
      : setTimeout(this.#fire, this.#after);
    if (!this.#ref) Deno.unrefTimer(this.#handle);
  }

  /** Stops the timer; its callback will not be called. Stopping twice is harmless. */
  stop(): void {
    if (this.#handle === undefined) return;
    if (this.#repeat > 0) clearInterval(this.#handle);
    else clearTimeout(this.#handle);
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
 * import { Loop } from "./core.ts";
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

  #queue: unknown[] = [];
  #spare: unknown[] = [];
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
  timer(after: number, repeat = 0, options: TimerOptions = {}): TimerWatcher {
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
    return this.#queue.length >> 1;
  }

  /** @ignore Internal fast path: queue `fn(arg)` without a watcher. `fn` must not throw. */
  _schedule(fn: Entry, arg: unknown): void {
    this.#queue.push(fn, arg);
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
    const now = performance.now();
    if (now - this.#sliceStart > SLICE_MS) {
      setImmediate(this.#drainFromMacrotask);
    } else {
      _runOutside(this.#queueDrain);
    }
  }

  #queueDrain = (): void => queueMicrotask(this.#drain);

  #drainFromMacrotask = (): void => {
    this.#sliceStart = performance.now();
    this.#drain();
  };

  #drain = (): void => {
    const queue = this.#queue;
    this.#queue = this.#spare;
    const n = queue.length;
    let i = 0;
    try {
      for (; i < n; i += 2) {
        (queue[i] as Entry)(queue[i + 1]);
        if ((i & 2046) === 2046 && performance.now() - this.#sliceStart > SLICE_MS) {
          // Out of time: put the rest back in front of what was queued meanwhile.
          i += 2;
          const rest = queue.slice(i);
          for (let j = 0; j < this.#queue.length; j++) rest.push(this.#queue[j]);
          this.#queue = rest;
          break;
        }
      }
    } finally {
      queue.length = 0;
      this.#spare = queue;
      this.#now = performance.now();
      if (this.#queue.length > 0) this.#kick();
      else this.#scheduled = false;
    }
  };
}

let runOutside: (fn: () => void) => void = (fn) => fn();

/** @ignore Lets the hub make queued drains run outside any greenlet's async context. */
export function _setRunOutside(fn: (fn: () => void) => void): void {
  runOutside = fn;
}

function _runOutside(fn: () => void): void {
  runOutside(fn);
}

/**
 * @ignore Validates a duration in milliseconds.
 * @throws {RangeError} If the value is negative, NaN or infinite.
 */
export function _checkMs(name: string, value: unknown): void {
  if (typeof value !== "number") {
    throw new TypeError(`'${name}' must be a number of milliseconds: current value is ${value}`);
  }
  if (!(value >= 0) || value === Infinity) {
    throw new RangeError(
      `'${name}' must be a finite, non-negative number of milliseconds: current value is ${value}`,
    );
  }
}
