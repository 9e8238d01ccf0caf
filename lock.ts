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
 * A {@linkcode Semaphore} (and so a `BoundedSemaphore` and a `Lock`) is linkable, as gevent's:
 * `ready()` tells whether an `acquire` would not wait, and `rawlink` callbacks run in the hub
 * when a permit is free, so `wait([sem])` and `iwait([sem])` work.
 *
 * @module
 */

import { _badWaitOptions, _checkCount } from "./_check.ts";
import { _current, type _Flow, type _Waiter, sleep } from "./hub.ts";
import {
  _Linkable,
  type _LinkMode,
  _mustYield,
  _NO_WAIT,
  _notifyLinks,
  _waitIn,
  _WaitList,
  _waitTimeout,
} from "./_wait.ts";
import { Timeout } from "./timeout.ts";

/** Options of {@linkcode Semaphore.acquire} and {@linkcode RLock.acquire}. */
export interface AcquireOptions {
  /** `false` does not wait: resolves `false` at once if the lock is taken. Default `true`. */
  blocking?: boolean;
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Semaphore.hold} and {@linkcode RLock.hold}. */
export interface HoldOptions {
  /** Milliseconds to wait at most; when it elapses, the hold rejects with `Timeout`. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/**
 * A held permit: `release()` (or the end of a `using` scope) gives it back. Releasing twice
 * is harmless.
 *
 * @example
 * ```ts
 * import { Semaphore } from "@x/gevent/lock";
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

function timedOut(w: _Waiter<boolean, _WaitList>): void {
  w._owner.cancelled();
  w._wake(false);
}

/** Reads the options of `acquire` (see `_waitTimeout`). */
function acquireTimeout(options: AcquireOptions | undefined): number | undefined | Error {
  return _waitTimeout(options, options?.blocking);
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
  const bad = _badWaitOptions(options);
  if (bad !== undefined) throw bad;
  const { timeout, signal } = options;
  if (!await lock.acquire({ timeout, signal })) throw new Timeout(timeout);
  return new Hold(lock);
}

/**
 * A counting semaphore: `acquire()` takes one of `value` permits, waiting while none is left;
 * `release()` gives one back (to the first waiter, if any).
 *
 * It is linkable, as gevent's: {@linkcode Semaphore.ready} is true while a permit is free, and
 * a {@linkcode Semaphore.rawlink} callback is called (once, in the hub) when one is, so
 * `wait([sem])` and `iwait([sem])` wait until an `acquire` would not. Waiting acquirers come
 * first: `release()` hands its permit to the first of them, and callbacks are only called for
 * a permit left over. Neither `wait` nor a callback takes the permit: a greenlet woken by
 * `wait([sem])` may still find it taken by the time it acquires.
 *
 * @example Limiting concurrency to two
 * ```ts
 * import { Semaphore } from "@x/gevent/lock";
 * import { joinAll, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
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
 *
 * @example Waiting until a permit is free, with `wait`
 * ```ts
 * import { Semaphore } from "@x/gevent/lock";
 * import { spawn } from "@x/gevent/greenlet";
 * import { wait } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const sem = new Semaphore(0);
 * assert.equal(sem.ready(), false);
 * spawn(() => sem.release());
 * assert.deepEqual(await wait([sem]), [sem]);
 * assert.equal(sem.counter, 1); // waiting took nothing
 * ```
 */
export class Semaphore extends _Linkable {
  /** @ignore */
  _waiters: _WaitList = new _WaitList(this, "acquire");
  /** @ignore */
  _counter: number;
  /** @ignore A callback is unlinked just before it is called. */
  get _linkMode(): _LinkMode {
    return "once";
  }

  /**
   * Creates a semaphore.
   *
   * @param value The number of permits (default 1).
   * @throws {RangeError} If `value` is negative or not an integer.
   * @throws {TypeError} If `value` is not a number.
   */
  constructor(value = 1) {
    super();
    this._counter = _checkCount("value", value);
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
   * Whether a permit is free (an `acquire` would not wait): the opposite of
   * {@linkcode Semaphore.locked}. `wait([sem])` counts a ready semaphore at once.
   *
   * @returns `true` when the counter is above 0.
   */
  ready(): boolean {
    return this._counter > 0;
  }

  /**
   * Takes a permit, waiting in FIFO order while none is left. A blocking call.
   *
   * @param options `blocking: false` does not wait; `timeout` in milliseconds.
   * @returns `true` once a permit is held; `false` if none could be had in time.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
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
    return _waitIn<boolean>(
      this._waiters,
      undefined,
      timeout,
      timedOut,
      options?.signal,
    );
  }

  /**
   * Gives a permit back: to the first waiter if one is waiting, else to the counter (and
   * then the {@linkcode Semaphore.rawlink} callbacks are scheduled).
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
    if (this._links !== undefined) _notifyLinks(this);
  }

  /**
   * Takes a permit for a `using` scope: `using _ = await sem.hold()`. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns A {@linkcode Hold} that releases the permit when disposed.
   * @throws {Timeout} (as a rejection) If the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  hold(options?: HoldOptions): Promise<Hold> {
    if (options === undefined) options = {};
    return holdOf(this, options);
  }
}

/**
 * A {@linkcode Semaphore} that cannot be released above its initial value: releasing too
 * often is a programming error and throws.
 *
 * @example
 * ```ts
 * import { BoundedSemaphore } from "@x/gevent/lock";
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
   * @throws {RangeError} If `value` is negative or not an integer.
   * @throws {TypeError} If `value` is not a number.
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
 * import { Lock } from "@x/gevent/lock";
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
 * import { RLock } from "@x/gevent/lock";
 * import { spawn } from "@x/gevent/greenlet";
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
  _waiters: _WaitList = new _WaitList(this, "acquire");
  #owner: _Flow | undefined = undefined;
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
   * @throws {TypeError} (as a rejection) If `options` is not an object.
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
    return _waitIn<boolean>(
      this._waiters,
      undefined,
      timeout,
      timedOut,
      options?.signal,
    );
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
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  hold(options?: HoldOptions): Promise<Hold> {
    if (options === undefined) options = {};
    return holdOf(this, options);
  }
}
