/**
 * Queues between greenlets: {@linkcode Queue} (joinable FIFO), {@linkcode SimpleQueue},
 * {@linkcode PriorityQueue}, {@linkcode LifoQueue} and the unbuffered {@linkcode Channel}.
 *
 * Scheduling contracts, as in gevent: waiting getters and putters are served in the order they
 * began waiting, and they have first claim: an item put while a getter waits is promised to
 * that getter, and room freed while a putter waits is promised to that putter, so a later
 * call cannot overtake them (not even `getNowait`/`putNowait`). The hand-over itself happens
 * one microtask later, as gevent's does on the hub's next turn: one wake-up per item, and a
 * waiter interrupted meanwhile by `kill()` or `Timeout` just drops out, never taking or
 * leaving an item.
 *
 * Caveat: a `get` or `put` that does not have to wait settles at once, without a switch, like
 * gevent's. So that a producer and a consumer that never wait cannot starve timers and I/O
 * (awaiting a settled promise does not yield to them), every 1024th such call goes through the
 * loop's run queue first, as `sleep(0)` does.
 *
 * @module
 */

import { _badBag, _badWaitOptions, _checkCount, _checkFn } from "./_check.ts";
import { _begin, _labelWaits, type _Waiter, sleep } from "./hub.ts";
import {
  type _AnyWaiter,
  _mustYield,
  _NO_WAIT,
  _waitIn,
  _WaitList,
  _waitTimeout,
} from "./_wait.ts";

/**
 * Raised (as a rejection) by `get` when the queue stays empty: `block: false`, or the timeout
 * elapsed. Also thrown by `getNowait` and `peekNowait`.
 *
 * @example
 * ```ts
 * import { Empty, Queue } from "@x/gevent/queue";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => new Queue().getNowait(), Empty);
 * ```
 */
export class Empty extends Error {
  /**
   * Creates the error.
   *
   * @param message The message.
   */
  constructor(message = "The queue is empty") {
    super(message);
    this.name = "Empty";
  }
}

/**
 * Raised (as a rejection) by `put` when the queue stays full: `block: false`, or the timeout
 * elapsed. Also thrown by `putNowait`.
 *
 * @example
 * ```ts
 * import { Full, Queue } from "@x/gevent/queue";
 * import assert from "node:assert/strict";
 *
 * const q = new Queue<number>(1);
 * q.putNowait(1);
 * assert.throws(() => q.putNowait(2), Full);
 * ```
 */
export class Full extends Error {
  /**
   * Creates the error.
   *
   * @param message The message.
   */
  constructor(message = "The queue is full") {
    super(message);
    this.name = "Full";
  }
}

/**
 * Raised by `put` on a queue that was shut down, and by `get` once such a queue is empty
 * (as Python 3.13's `queue.ShutDown`). Waiting getters and putters are woken with it.
 *
 * @example
 * ```ts
 * import { Queue, ShutDown } from "@x/gevent/queue";
 * import assert from "node:assert/strict";
 *
 * const q = new Queue<number>();
 * q.shutdown();
 * await assert.rejects(q.put(1), ShutDown);
 * ```
 */
export class ShutDown extends Error {
  /**
   * Creates the error.
   *
   * @param message The message.
   */
  constructor(message = "The queue was shut down") {
    super(message);
    this.name = "ShutDown";
  }
}

/** Options of a blocking `get`, `put` or `peek`. */
export interface QueueOptions {
  /** `false` does not wait: the call rejects with `Empty`/`Full` at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Queue.join}. */
export interface QueueJoinOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode SimpleQueue.shutdown}. */
export interface ShutdownOptions {
  /** Also discard the items still queued, so getters fail at once (default `false`). */
  immediate?: boolean;
}

const RESOLVED: Promise<void> = Promise.resolve();

function forgetJoiner(w: _Waiter<boolean, Queue<unknown>>): void {
  w._owner._joiners!.delete(w);
}
function getTimedOut(w: _AnyWaiter): void {
  w._fail(new Empty());
}
function putTimedOut(w: _AnyWaiter): void {
  w._fail(new Full());
}
_labelWaits(forgetJoiner, (w) => `${w._owner.constructor.name}.join`);
function joinTimedOut(w: _Waiter<boolean, Queue<unknown>>): void {
  forgetJoiner(w);
  w._wake(false);
}

// "No bound", as a small integer: `Infinity` would make the field a double, and a queue can
// never hold this many items anyway.
const UNBOUNDED = 2 ** 30 - 1;

function checkMaxsize(maxsize: unknown): number {
  if (maxsize === undefined || maxsize === null) return UNBOUNDED;
  const n = _checkCount("maxsize", maxsize, { infinite: true });
  return n === 0 || n > UNBOUNDED ? UNBOUNDED : n;
}

// The calls that settle at once but yield first (see `_mustYield`), for every queue class.
async function putLater<T>(
  q: { put(item: T, options?: QueueOptions): Promise<void> },
  item: T,
  options: QueueOptions | undefined,
): Promise<void> {
  await sleep(0);
  return q.put(item, options);
}
async function getLater<T>(
  q: { get(options?: QueueOptions): Promise<T> },
  options: QueueOptions | undefined,
): Promise<T> {
  await sleep(0);
  return q.get(options);
}

/**
 * A FIFO queue between greenlets, bounded by `maxsize` (unbounded by default), without
 * `taskDone`/`join` (see {@linkcode Queue} for those).
 *
 * Waiting getters and putters are served first come, first served: an item put while a getter
 * waits goes to that getter (one wake-up), room freed while a putter waits goes to that putter.
 * Iterating the queue with `for await` gets items until the queue is shut down and empty.
 *
 * @typeParam T The type of the items.
 *
 * @example Producer and consumer
 * ```ts
 * import { SimpleQueue } from "@x/gevent/queue";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const q = new SimpleQueue<number>(2);
 * const producer = spawn(async () => {
 *   for (const n of [1, 2, 3]) await q.put(n);
 *   q.shutdown();
 * });
 * const seen: number[] = [];
 * for await (const n of q) seen.push(n);
 * await producer.join();
 * assert.deepEqual(seen, [1, 2, 3]);
 * ```
 */
export class SimpleQueue<T> implements AsyncIterable<T> {
  /** @ignore */
  _getters: _WaitList = new _WaitList(this, "get");
  /** @ignore */
  _putters: _WaitList = new _WaitList(this, "put");
  /** @ignore */
  _peekers: _WaitList = new _WaitList(this, "peek");
  /** @ignore Items put and not yet marked done (used by `Queue`). */
  _unfinished = 0;
  #maxsize: number;
  #shutdown = false;
  #unlockQueued = false;
  /** @ignore The number of items (kept by this class around `_put` and `_get`). */
  _size = 0;
  // The FIFO storage: a ring buffer of `_size` items from `#head`.
  #buf: (T | undefined)[] = new Array(16);
  #head = 0;
  #mask = 15;

  /**
   * Creates a queue.
   *
   * @param maxsize The most items it holds; `undefined`, `Infinity` or `0` (as in Python) is
   *   unbounded.
   * @throws {RangeError} If `maxsize` is negative or not an integer.
   * @throws {TypeError} If `maxsize` is not a number.
   */
  constructor(maxsize?: number) {
    this.#maxsize = checkMaxsize(maxsize);
  }

  /**
   * @ignore Storage hooks, overridden by the priority and LIFO queues: `_put` stores an item
   * (before `_size` grows), `_get` removes the next one (before `_size` shrinks), `_peek`
   * returns it.
   */
  _put(item: T): void {
    const len = this._size;
    if (len === this.#buf.length) this.#grow();
    this.#buf[(this.#head + len) & this.#mask] = item;
  }
  /** @ignore */
  _get(): T {
    const x = this.#buf[this.#head] as T;
    this.#buf[this.#head] = undefined;
    this.#head = (this.#head + 1) & this.#mask;
    return x;
  }
  /** @ignore */
  _peek(): T {
    return this.#buf[this.#head] as T;
  }

  #grow(): void {
    const old = this.#buf;
    const n = old.length;
    const buf: (T | undefined)[] = new Array(n * 2);
    for (let i = 0; i < n; i++) buf[i] = old[(this.#head + i) & this.#mask];
    this.#buf = buf;
    this.#head = 0;
    this.#mask = n * 2 - 1;
  }

  /** The most items the queue holds (`Infinity` when unbounded). */
  get maxsize(): number {
    return this.#maxsize === UNBOUNDED ? Infinity : this.#maxsize;
  }

  /** Whether {@linkcode SimpleQueue.shutdown} was called. */
  get isShutdown(): boolean {
    return this.#shutdown;
  }

  /** The number of greenlets waiting in `get`. */
  get getters(): number {
    return this._getters.live;
  }

  /** The number of greenlets waiting in `put`. */
  get putters(): number {
    return this._putters.live;
  }

  /**
   * The number of items in the queue.
   *
   * @returns The count.
   */
  qsize(): number {
    return this._size;
  }

  /**
   * Whether the queue holds no item.
   *
   * @returns `true` when `qsize()` is 0.
   */
  empty(): boolean {
    return this._size === 0;
  }

  /**
   * Whether the queue holds `maxsize` items (never, when unbounded).
   *
   * @returns `true` when a `put` would wait.
   */
  full(): boolean {
    return this._size >= this.#maxsize;
  }

  /** Wakes waiting peekers with the item about to enter (or be handed over). */
  #feedPeekers(item: T): void {
    for (const w of this._peekers.drain()) w._wake(item);
  }

  /** Takes the next item (the queue is not empty); waiting putters are let in afterwards. */
  #take(): T {
    const item = this._get();
    this._size--;
    if (this._putters.live > 0) this.#scheduleUnlock();
    return item;
  }

  /** Puts an item that found room. */
  #enter(item: T): void {
    if (this._peekers.live > 0) this.#feedPeekers(item);
    this._put(item);
    this._size++;
    this._unfinished++;
  }

  /**
   * Queues the hand-over to waiting getters and putters, as gevent's `_schedule_unlock`: they
   * have first claim on the queued items and on the free room, in FIFO order. Until it runs
   * (one microtask later), a waiter interrupted by kill or Timeout simply drops out.
   */
  #scheduleUnlock(): void {
    if (this.#unlockQueued) return;
    this.#unlockQueued = true;
    queueMicrotask(this.#unlock);
  }

  #unlock = (): void => {
    this.#unlockQueued = false;
    for (;;) {
      while (this._putters.live > 0 && this._size < this.#maxsize) {
        const w = this._putters.shift();
        if (w === undefined) break;
        const item = this._putters.item as T;
        this._putters.item = undefined;
        this.#enter(item);
        w._wake(undefined);
      }
      if (this._getters.live === 0 || this._size === 0) break;
      while (this._getters.live > 0 && this._size > 0) {
        const w = this._getters.shift();
        if (w === undefined) break;
        const item = this._get();
        this._size--;
        w._wake(item);
      }
    }
    if (this.#shutdown && this._size === 0) {
      for (const w of this._getters.drain()) w._fail(new ShutDown());
      for (const w of this._peekers.drain()) w._fail(new ShutDown());
    }
  };

  /**
   * Puts an item, waiting while the queue is full. A blocking call: `kill()` and `Timeout`
   * interrupt it, and an interrupted put leaves nothing in the queue.
   *
   * @param item The item.
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns A promise that resolves once the item is in the queue (or handed to a getter).
   * @throws {Full} (as a rejection) If the queue stays full (`block: false`, or the timeout).
   * @throws {ShutDown} (as a rejection) If the queue was shut down.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  put(item: T, options?: QueueOptions): Promise<void> {
    const timeout = _waitTimeout(options, options?.block);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this.#shutdown) return Promise.reject(new ShutDown());
    if (this._size < this.#maxsize && this._putters.live === 0) {
      if (timeout !== _NO_WAIT && _mustYield()) return putLater(this, item, options);
      this.#enter(item);
      if (this._getters.live > 0) this.#scheduleUnlock();
      return RESOLVED;
    }
    if (timeout === _NO_WAIT) return Promise.reject(new Full());
    const p = _waitIn<void>(
      this._putters,
      item,
      timeout,
      putTimedOut,
      options?.signal,
    );
    if (this._size < this.#maxsize) this.#scheduleUnlock();
    return p;
  }

  /**
   * Puts an item without waiting.
   *
   * @param item The item.
   * @throws {Full} If the queue is full, or putters are waiting for the room.
   * @throws {ShutDown} If the queue was shut down.
   */
  putNowait(item: T): void {
    if (this.#shutdown) throw new ShutDown();
    if (this._size >= this.#maxsize || this._putters.live > 0) throw new Full();
    this.#enter(item);
    if (this._getters.live > 0) this.#scheduleUnlock();
  }

  /**
   * Removes and returns the next item, waiting while the queue is empty. A blocking call:
   * `kill()` and `Timeout` interrupt it, and an interrupted get never takes an item.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The item.
   * @throws {Empty} (as a rejection) If the queue stays empty (`block: false`, or the timeout).
   * @throws {ShutDown} (as a rejection) If the queue was shut down and is empty.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  get(options?: QueueOptions): Promise<T> {
    const timeout = _waitTimeout(options, options?.block);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this._size > this._getters.live) {
      if (timeout !== _NO_WAIT && _mustYield()) return getLater(this, options);
      return Promise.resolve(this.#take());
    }
    if (this.#shutdown) return Promise.reject(new ShutDown());
    if (timeout === _NO_WAIT) return Promise.reject(new Empty());
    return _waitIn<T>(
      this._getters,
      undefined,
      timeout,
      getTimedOut,
      options?.signal,
    );
  }

  /**
   * Removes and returns the next item without waiting.
   *
   * @returns The item.
   * @throws {Empty} If the queue is empty.
   * @throws {ShutDown} If the queue was shut down and is empty.
   */
  getNowait(): T {
    if (this._size > this._getters.live) return this.#take();
    if (this.#shutdown && this._size === 0) throw new ShutDown();
    throw new Empty();
  }

  /**
   * Returns the next item without removing it, waiting while the queue is empty. A blocking
   * call.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The item that the next `get` would return.
   * @throws {Empty} (as a rejection) If the queue stays empty (`block: false`, or the timeout).
   * @throws {ShutDown} (as a rejection) If the queue was shut down and is empty.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  peek(options?: QueueOptions): Promise<T> {
    const timeout = _waitTimeout(options, options?.block);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this._size > 0) return Promise.resolve(this._peek());
    if (this.#shutdown) return Promise.reject(new ShutDown());
    if (timeout === _NO_WAIT) return Promise.reject(new Empty());
    return _waitIn<T>(
      this._peekers,
      undefined,
      timeout,
      getTimedOut,
      options?.signal,
    );
  }

  /**
   * Returns the next item without removing it or waiting.
   *
   * @returns The item that the next `get` would return.
   * @throws {Empty} If the queue is empty.
   */
  peekNowait(): T {
    if (this._size > 0) return this._peek();
    throw new Empty();
  }

  /**
   * Shuts the queue down (Python 3.13's `Queue.shutdown`): later puts reject with
   * {@linkcode ShutDown}, and so do gets once the queue is empty. Waiting putters, and
   * getters and peekers (the queue is empty while they wait), are woken with `ShutDown`.
   * With `immediate`, the items still queued are discarded (and count as done for `join`).
   *
   * @param options `immediate`.
   * @throws {TypeError} If `options` is not an object.
   */
  shutdown(options?: ShutdownOptions): void {
    if (options === undefined) options = {};
    const bad = _badBag(options);
    if (bad !== undefined) throw bad;
    this.#shutdown = true;
    if (options.immediate) {
      while (this._size > 0) {
        this._get();
        this._size--;
        if (this._unfinished > 0) this._unfinished--;
      }
      this._allDone();
    }
    for (const w of this._putters.drain()) w._fail(new ShutDown());
    this.#unlock();
  }

  /** @ignore Hook: the unfinished count may have reached zero. */
  _allDone(): void {}

  /**
   * Gets items with `for await` until the queue is shut down and empty. Each step is a
   * blocking `get`.
   *
   * @returns An async iterator of items.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      let item: T;
      try {
        item = await this.get();
      } catch (error) {
        if (error instanceof ShutDown) return;
        throw error;
      }
      yield item;
    }
  }
}

/**
 * A FIFO queue with `taskDone` and `join`, as gevent's (and Python's) `Queue`: every item put
 * counts as an unfinished task until a consumer calls `taskDone()` for it, and `join()` waits
 * until none is left.
 *
 * @typeParam T The type of the items.
 *
 * @example Workers and join
 * ```ts
 * import { Queue } from "@x/gevent/queue";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const q = new Queue<number>();
 * let total = 0;
 * const worker = spawn(async () => {
 *   for await (const n of q) {
 *     total += n;
 *     q.taskDone();
 *   }
 * });
 * for (const n of [1, 2, 3]) q.putNowait(n);
 * assert.equal(await q.join(), true);
 * assert.equal(total, 6);
 * q.shutdown();
 * await worker.join();
 * ```
 */
export class Queue<T> extends SimpleQueue<T> {
  /** @ignore */
  _joiners: Set<_Waiter<boolean, Queue<unknown>>> | undefined = undefined;

  /** The number of items put and not yet marked done with {@linkcode Queue.taskDone}. */
  get unfinishedTasks(): number {
    return this._unfinished;
  }

  /**
   * Marks one item taken from the queue as processed. When every item put is done,
   * `join()` waiters wake.
   *
   * @throws {RangeError} If called more times than items were put.
   */
  taskDone(): void {
    if (this._unfinished <= 0) {
      throw new RangeError("taskDone() called more times than there were items");
    }
    if (--this._unfinished === 0) this._allDone();
  }

  /** @ignore */
  override _allDone(): void {
    if (this._unfinished !== 0) return;
    const js = this._joiners;
    if (js === undefined) return;
    this._joiners = undefined;
    for (const w of js) w._wake(true);
  }

  /**
   * Waits until every item put has been marked done. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns `true` once nothing is unfinished; `false` if the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  join(options?: QueueJoinOptions): Promise<boolean> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { timeout } = options;
    if (this._unfinished === 0) return Promise.resolve(true);
    if (timeout === 0) return Promise.resolve(false);
    const w = _begin<boolean, Queue<unknown>>();
    if (w instanceof Promise) return w;
    w._owner = this;
    w._onCancel = forgetJoiner;
    (this._joiners ??= new Set()).add(w);
    w._arm(timeout, joinTimedOut, options.signal);
    return w.promise;
  }
}

/** Options of {@linkcode PriorityQueue}. */
export interface PriorityQueueOptions<T> {
  /**
   * Orders items: negative when `a` comes first. The default compares numbers, strings and
   * bigints with `<`, and arrays element by element (like Python tuples, so
   * `[priority, item]` pairs work).
   */
  compare?: (a: T, b: T) => number;
}

/** @ignore The default ordering: `<` for primitives, lexicographic for arrays. */
function defaultCompare(a: unknown, b: unknown): number {
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const c = defaultCompare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
}

/**
 * A {@linkcode Queue} that returns the smallest item first (a binary heap).
 *
 * @typeParam T The type of the items.
 *
 * @example
 * ```ts
 * import { PriorityQueue } from "@x/gevent/queue";
 * import assert from "node:assert/strict";
 *
 * const q = new PriorityQueue<[number, string]>();
 * q.putNowait([3, "low"]);
 * q.putNowait([1, "high"]);
 * q.putNowait([2, "middle"]);
 * assert.deepEqual([q.getNowait(), q.getNowait(), q.getNowait()].map(([, s]) => s), [
 *   "high",
 *   "middle",
 *   "low",
 * ]);
 * ```
 */
export class PriorityQueue<T> extends Queue<T> {
  #heap: T[] = [];
  #compare: (a: T, b: T) => number;

  /**
   * Creates a priority queue.
   *
   * @param maxsize The most items it holds; `undefined`, `Infinity` or `0` is unbounded.
   * @param options `compare`, the ordering.
   * @throws {RangeError} If `maxsize` is negative or not an integer.
   * @throws {TypeError} If `maxsize` is not a number, `options` not an object, or `compare`
   *   not a function.
   */
  constructor(maxsize?: number, options?: PriorityQueueOptions<T>) {
    if (options === undefined) options = {};
    super(maxsize);
    const bad = _badBag(options);
    if (bad !== undefined) throw bad;
    const { compare = defaultCompare } = options;
    _checkFn(compare, "compare");
    this.#compare = compare;
  }

  /** @ignore */
  override _put(item: T): void {
    const heap = this.#heap;
    const cmp = this.#compare;
    let i = heap.length;
    heap.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (cmp(item, heap[parent]) >= 0) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = item;
  }
  /** @ignore */
  override _get(): T {
    const heap = this.#heap;
    const cmp = this.#compare;
    const top = heap[0];
    const last = heap.pop()!;
    const n = heap.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && cmp(heap[child + 1], heap[child]) < 0) child++;
        if (cmp(heap[child], last) >= 0) break;
        heap[i] = heap[child];
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
  /** @ignore */
  override _peek(): T {
    return this.#heap[0];
  }
}

/**
 * A {@linkcode Queue} that returns the most recently put item first.
 *
 * @typeParam T The type of the items.
 *
 * @example
 * ```ts
 * import { LifoQueue } from "@x/gevent/queue";
 * import assert from "node:assert/strict";
 *
 * const q = new LifoQueue<number>();
 * q.putNowait(1);
 * q.putNowait(2);
 * assert.equal(q.getNowait(), 2);
 * assert.equal(q.getNowait(), 1);
 * ```
 */
export class LifoQueue<T> extends Queue<T> {
  #stack: T[] = [];

  /** @ignore */
  override _put(item: T): void {
    this.#stack.push(item);
  }
  /** @ignore */
  override _get(): T {
    return this.#stack.pop()!;
  }
  /** @ignore */
  override _peek(): T {
    return this.#stack[this.#stack.length - 1];
  }
}

function afterHandOff(): void {}

/**
 * An unbuffered hand-off: `put` waits until a `get` takes the item, and `get` waits until a
 * `put` offers one. `qsize()` is always 0. Iterate it with `for await` (forever).
 *
 * Order of wake-ups, as gevent's: when a getter and a putter meet, the getter resumes first.
 * Its code after `await ch.get()` runs, up to its next `await`, before the putter's `put`
 * returns, whichever of the two came first (the one that comes second does not wait). This
 * holds for code that awaits `get()` directly; a getter that goes through more layers of
 * promises (`for await` over the channel) may see its item after the putter resumed.
 *
 * A getter interrupted by `kill()` or `Timeout` (even `Timeout(0)`) never takes an item: the
 * next `put` goes to the next getter or waits. A putter whose item was taken completes its
 * `put`: a kill that arrives while it waits to resume is thrown at its next blocking call.
 *
 * @typeParam T The type of the items.
 *
 * @example
 * ```ts
 * import { Channel } from "@x/gevent/queue";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const ch = new Channel<string>();
 * const log: string[] = [];
 * const producer = spawn(async () => {
 *   await ch.put("hello");
 *   log.push("put returned");
 * });
 * log.push(await ch.get());
 * await producer.join();
 * assert.deepEqual(log, ["hello", "put returned"]);
 * ```
 *
 * @example The getter resumes before the putter (gevent's `test_send`)
 * ```ts
 * import { Channel } from "@x/gevent/queue";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const ch = new Channel<string>();
 * const events: string[] = [];
 * const consumer = spawn(async () => {
 *   events.push(await ch.get());
 *   events.push(await ch.get());
 * });
 * events.push("sending");
 * await ch.put("hello");
 * events.push("sent hello");
 * await ch.put("world");
 * events.push("sent world");
 * assert.deepEqual(events, ["sending", "hello", "sent hello", "world", "sent world"]);
 * await consumer.join();
 * ```
 */
export class Channel<T> implements AsyncIterable<T> {
  /** @ignore */
  _getters: _WaitList = new _WaitList(this, "get");
  /** @ignore */
  _putters: _WaitList = new _WaitList(this, "put");

  /** Waiting putters minus waiting getters, as gevent's `balance`. */
  get balance(): number {
    return this._putters.live - this._getters.live;
  }

  /** The number of greenlets waiting in `get`. */
  get getters(): number {
    return this._getters.live;
  }

  /** The number of greenlets waiting in `put`. */
  get putters(): number {
    return this._putters.live;
  }

  /**
   * Always 0: a channel holds nothing.
   *
   * @returns 0.
   */
  qsize(): number {
    return 0;
  }

  /**
   * Always `true`.
   *
   * @returns `true`.
   */
  empty(): boolean {
    return true;
  }

  /**
   * Always `true`.
   *
   * @returns `true`.
   */
  full(): boolean {
    return true;
  }

  /**
   * Offers an item and waits until a getter takes it. A blocking call: an interrupted put
   * offers nothing. If a getter is waiting, it gets the item at once and resumes before the
   * caller does; else the put waits, and resumes after the getter that takes its item.
   *
   * @param item The item.
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns A promise that resolves once a getter has the item.
   * @throws {Full} (as a rejection) If no getter took it (`block: false`, or the timeout).
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  put(item: T, options?: QueueOptions): Promise<void> {
    const timeout = _waitTimeout(options, options?.block);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this._getters.live > 0) {
      if (timeout !== _NO_WAIT && _mustYield()) return putLater(this, item, options);
      const w = this._getters.shift();
      if (w !== undefined) {
        w._wake(item);
        return RESOLVED;
      }
    }
    if (timeout === _NO_WAIT) return Promise.reject(new Full());
    // One more step after the wake-up: a getter that takes the item resumes first.
    return _waitIn<void>(
      this._putters,
      item,
      timeout,
      putTimedOut,
      options?.signal,
    )
      .then(afterHandOff);
  }

  /**
   * Hands an item to a waiting getter without waiting.
   *
   * @param item The item.
   * @throws {Full} If no getter is waiting.
   */
  putNowait(item: T): void {
    const w = this._getters.shift();
    if (w === undefined) throw new Full();
    w._wake(item);
  }

  /**
   * Waits for a putter and takes its item. A blocking call: an interrupted get takes nothing.
   * The caller resumes before the putter whose item it took.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The item.
   * @throws {Empty} (as a rejection) If no putter came (`block: false`, or the timeout).
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  get(options?: QueueOptions): Promise<T> {
    const timeout = _waitTimeout(options, options?.block);
    if (typeof timeout === "object") return Promise.reject(timeout);
    if (this._putters.live > 0) {
      if (timeout !== _NO_WAIT && _mustYield()) return getLater(this, options);
      const w = this._putters.shift();
      if (w !== undefined) {
        const item = this._putters.item as T;
        this._putters.item = undefined;
        w._wake(undefined);
        return Promise.resolve(item);
      }
    }
    if (timeout === _NO_WAIT) return Promise.reject(new Empty());
    return _waitIn<T>(
      this._getters,
      undefined,
      timeout,
      getTimedOut,
      options?.signal,
    );
  }

  /**
   * Takes the item of a waiting putter without waiting.
   *
   * @returns The item.
   * @throws {Empty} If no putter is waiting.
   */
  getNowait(): T {
    const w = this._putters.shift();
    if (w === undefined) throw new Empty();
    const item = this._putters.item as T;
    this._putters.item = undefined;
    w._wake(undefined);
    return item;
  }

  /**
   * Gets items with `for await`, forever (break out of the loop to stop). Each step is a
   * blocking `get`.
   *
   * @returns An async iterator of items.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) yield await this.get();
  }
}
