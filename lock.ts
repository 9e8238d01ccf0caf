/**
 * Locks between greenlets: {@linkcode Semaphore}, {@linkcode BoundedSemaphore},
 * {@linkcode Lock} and the reentrant {@linkcode RLock}.
 *
 * Scheduling contracts, as in gevent: waiters are served in FIFO order, and `release()` hands
 * the permit straight to the first waiter, so a greenlet that arrives later cannot overtake
 * it. `acquire` is a blocking call: `kill()` and `Timeout` interrupt it, and an interrupted
 * acquire holds nothing. An acquire that does not have to wait settles without a switch;
 * every 1024th one (a count shared with the queues) passes through the loop's run queue
 * first, as `sleep(0)` does, so that a loop of uncontended acquires cannot starve timers and
 * I/O.
 *
 * @module
 */

import { type _Context, _current, type _Waiter } from "./hub.ts";
import { sleep } from "./hub.ts";
import { type _AnyWaiter, _badOptions, _mustYield, _NO_WAIT, _waitIn, _WaitList } from "./queue.ts";
import { Timeout } from "./timeout.ts";

/** Options of {@linkcode Semaphore.acquire} and {@linkcode RLock.acquire}. */
export interface AcquireOptions {
  /** `false` does not wait: resolves `false` at once if the lock is taken. Default `true`. */
  blocking?: boolean;
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
}

/** Options of {@linkcode Semaphore.hold} and {@linkcode RLock.hold}. */
export interface HoldOptions {
  /** Milliseconds to wait at most; when it elapses, the hold rejects with `Timeout`. */
  timeout?: number;
}

/**
 * A held permit: `release()` (or the end of a `using` scope) gives it back. Releasing twice
 * is harmless.
 *
 * @example
 * ```ts
 * import { Semaphore } from "./lock.ts";
 * import assert from "node:assert/strict";
 *
 * const sem = new Semaphore(1);
 * {
 *   using _held = await sem.hold();
 *   assert.equal(sem.locked(), true);
 * }
 * assert.equal(sem.locked(), false);
 * ```
 */
export class Hold implements Disposable {
  #lock: { release(): void } | undefined;

  /**
   * Created by `hold()`; not meant to be constructed directly.
   *
   * @param lock What to release.
   */
  constructor(lock: { release(): void }) {
    this.#lock = lock;
  }

  /** Releases the permit, once. */
  release(): void {
    const lock = this.#lock;
    if (lock === undefined) return;
    this.#lock = undefined;
    lock.release();
  }

  /** Releases the permit when a `using` scope ends. */
  [Symbol.dispose](): void {
    this.release();
  }
}

const TRUE: Promise<boolean> = Promise.resolve(true);
const FALSE: Promise<boolean> = Promise.resolve(false);

function forget(w: _AnyWaiter): void {
  (w._owner as { _waiters: _WaitList })._waiters.cancelled();
}

function timedOut(w: _Waiter<boolean>): void {
  forget(w);
  w._wake(false);
}

function checkValue(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`'value' must be a non-negative integer: current value is ${value}`);
  }
  return value;
}

/**
 * Reads the options of `acquire`: an error to reject with, `_NO_WAIT` when the call must not
 * wait, else the timeout to wait with (`undefined`: forever).
 */
function acquireTimeout(options: AcquireOptions | undefined): number | undefined | Error {
  if (options === undefined) return undefined;
  const bad = _badOptions(options);
  if (bad !== undefined) return bad;
  return options.blocking === false || options.timeout === 0 ? _NO_WAIT : options.timeout;
}

/** An `acquire` that would not wait but yields first (see `_mustYield`). */
async function acquireLater(
  lock: { acquire(options?: AcquireOptions): Promise<boolean> },
  options: AcquireOptions | undefined,
): Promise<boolean> {
  await sleep(0);
  return lock.acquire(options);
}

async function holdOf(
  lock: { acquire(o: AcquireOptions): Promise<boolean>; release(): void },
  options: HoldOptions,
): Promise<Hold> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`'options' must be an object: current value is ${options}`);
  }
  const { timeout } = options;
  if (!await lock.acquire({ timeout })) throw new Timeout(timeout);
  return new Hold(lock);
}

/**
 * A counting semaphore: `acquire()` takes one of `value` permits, waiting while none is left;
 * `release()` gives one back (to the first waiter, if any).
 *
 * @example Limiting concurrency to two
 * ```ts
 * import { Semaphore } from "./lock.ts";
 * import { joinAll, spawn } from "./greenlet.ts";
 * import { sleep } from "./hub.ts";
 * import assert from "node:assert/strict";
 *
 * const sem = new Semaphore(2);
 * let running = 0;
 * let most = 0;
 * const job = async () => {
 *   using _held = await sem.hold();
 *   most = Math.max(most, ++running);
 *   await sleep(1);
 *   running--;
 * };
 * await joinAll([spawn(job), spawn(job), spawn(job), spawn(job)]);
 * assert.equal(most, 2);
 * ```
 */
export class Semaphore {
  /** @ignore */
  _waiters: _WaitList = new _WaitList();
  /** @ignore */
  _counter: number;

  /**
   * Creates a semaphore.
   *
   * @param value The number of permits (default 1).
   * @throws {RangeError} If `value` is not a non-negative integer.
   */
  constructor(value = 1) {
    this._counter = checkValue(value);
  }

  /** The number of permits left. */
  get counter(): number {
    return this._counter;
  }

  /** The number of greenlets waiting in `acquire`. */
  get waiters(): number {
    return this._waiters.live;
  }

  /**
   * Whether no permit is left (an `acquire` would wait).
   *
   * @returns `true` when the counter is 0.
   */
  locked(): boolean {
    return this._counter <= 0;
  }

  /**
   * Takes a permit, waiting in FIFO order while none is left. A blocking call.
   *
   * @param options `blocking: false` does not wait; `timeout` in milliseconds.
   * @returns `true` once a permit is held; `false` if none could be had in time.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    const timeout = acquireTimeout(options);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this._counter > 0) {
      if (timeout !== _NO_WAIT && _mustYield()) return acquireLater(this, options);
      this._counter--;
      return TRUE;
    }
    if (timeout === _NO_WAIT) return FALSE;
    return _waitIn<boolean>(this, this._waiters, undefined, forget, timeout, timedOut);
  }

  /**
   * Gives a permit back: to the first waiter if one is waiting, else to the counter.
   */
  release(): void {
    if (this._waiters.live > 0) {
      const w = this._waiters.shift();
      if (w !== undefined) {
        w._wake(true);
        return;
      }
    }
    this._counter++;
  }

  /**
   * Takes a permit for a `using` scope: `using _ = await sem.hold()`. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns A {@linkcode Hold} that releases the permit when disposed.
   * @throws {Timeout} (as a rejection) If the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  hold(options: HoldOptions = {}): Promise<Hold> {
    return holdOf(this, options);
  }
}

/**
 * A {@linkcode Semaphore} that cannot be released above its initial value: releasing too
 * often is a programming error and throws.
 *
 * @example
 * ```ts
 * import { BoundedSemaphore } from "./lock.ts";
 * import assert from "node:assert/strict";
 *
 * const sem = new BoundedSemaphore(1);
 * assert.equal(await sem.acquire(), true);
 * sem.release();
 * assert.throws(() => sem.release(), RangeError);
 * ```
 */
export class BoundedSemaphore extends Semaphore {
  /** The initial (and largest) number of permits. */
  readonly initialValue: number;

  /**
   * Creates a bounded semaphore.
   *
   * @param value The number of permits (default 1).
   * @throws {RangeError} If `value` is not a non-negative integer.
   */
  constructor(value = 1) {
    super(value);
    this.initialValue = value;
  }

  /**
   * Gives a permit back.
   *
   * @throws {RangeError} If every permit is already free.
   */
  override release(): void {
    if (this._counter >= this.initialValue) {
      throw new RangeError("Semaphore released too many times");
    }
    super.release();
  }
}

/**
 * A mutual-exclusion lock: a {@linkcode BoundedSemaphore} of one permit. Any greenlet may
 * release it (see {@linkcode RLock} for an owned, reentrant lock).
 *
 * @example
 * ```ts
 * import { Lock } from "./lock.ts";
 * import assert from "node:assert/strict";
 *
 * const lock = new Lock();
 * assert.equal(await lock.acquire(), true);
 * assert.equal(await lock.acquire({ blocking: false }), false);
 * lock.release();
 * assert.equal(lock.locked(), false);
 * ```
 */
export class Lock extends BoundedSemaphore {
  /** Creates an unlocked lock. */
  constructor() {
    super(1);
  }
}

/**
 * A reentrant lock, owned by the greenlet (or top-level flow) that acquired it: the owner may
 * acquire it again, and must release it as many times. Waiters are served in FIFO order.
 *
 * @example
 * ```ts
 * import { RLock } from "./lock.ts";
 * import { spawn } from "./greenlet.ts";
 * import assert from "node:assert/strict";
 *
 * const lock = new RLock();
 * await lock.acquire();
 * await lock.acquire(); // the owner may nest
 * const other = spawn(() => lock.acquire({ timeout: 0 }));
 * await other.join();
 * assert.equal(other.value, false);
 * lock.release();
 * lock.release();
 * assert.equal(lock.locked(), false);
 * ```
 */
export class RLock {
  /** @ignore */
  _waiters: _WaitList = new _WaitList();
  #owner: _Context | undefined = undefined;
  #count = 0;

  /**
   * Whether some greenlet holds the lock.
   *
   * @returns `true` while it is held.
   */
  locked(): boolean {
    return this.#owner !== undefined;
  }

  /**
   * Whether the calling greenlet (or top-level flow) holds the lock.
   *
   * @returns `true` if the caller owns it.
   */
  isOwned(): boolean {
    return this.#owner === _current();
  }

  /**
   * Acquires the lock, or (for its owner) nests once more. A blocking call.
   *
   * @param options `blocking: false` does not wait; `timeout` in milliseconds.
   * @returns `true` once held; `false` if it could not be had in time.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    const timeout = acquireTimeout(options);
    if (typeof timeout === "object") return Promise.reject(timeout);
    const me = _current();
    if (this.#owner === me || this.#owner === undefined) {
      if (timeout !== _NO_WAIT && _mustYield()) return acquireLater(this, options);
      this.#owner = me;
      this.#count++;
      return TRUE;
    }
    if (timeout === _NO_WAIT) return FALSE;
    return _waitIn<boolean>(this, this._waiters, undefined, forget, timeout, timedOut);
  }

  /**
   * Releases one level; the last release hands the lock to the first waiter.
   *
   * @throws {Error} If the caller does not own the lock.
   */
  release(): void {
    if (this.#owner !== _current() || this.#count === 0) {
      throw new Error("Cannot release an RLock that the caller does not own");
    }
    if (--this.#count > 0) return;
    const w = this._waiters.shift();
    if (w === undefined) {
      this.#owner = undefined;
      return;
    }
    this.#owner = w._ctx;
    this.#count = 1;
    w._wake(true);
  }

  /**
   * Acquires the lock for a `using` scope: `using _ = await lock.hold()`. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns A {@linkcode Hold} that releases one level when disposed.
   * @throws {Timeout} (as a rejection) If the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  hold(options: HoldOptions = {}): Promise<Hold> {
    return holdOf(this, options);
  }
}
