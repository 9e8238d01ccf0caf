/**
 * Greenlet-local storage: {@linkcode Local} holds one value per greenlet, as gevent's
 * `gevent.local.local`.
 *
 * A value belongs to the greenlet that set it (code outside every greenlet shares one slot of
 * its own). Children do not inherit it. When a greenlet dies, its values are dropped at once,
 * even if the greenlet object itself is kept: a `Local` never keeps anything alive.
 *
 * @module
 */

import { getCurrent, type Greenlet } from "./greenlet.ts";
import { _addLink } from "./_wait.ts";

type Slots = Map<Local<unknown>, unknown>;

// The slots of each greenlet; the top-level flow uses TOP as its key.
const TOP = {};
const stores = new WeakMap<object, Slots>();
let used = false;

// Dropped from a greenlet's link list when it dies: clears that greenlet's slots at once.
const clearer = {
  _notify(g: Greenlet<unknown>): void {
    stores.delete(g);
  },
};

function slotsFor(create: boolean): Slots | undefined {
  const g = getCurrent();
  const key = g ?? TOP;
  let slots = stores.get(key);
  if (slots === undefined && create) {
    used = true;
    slots = new Map();
    if (g !== undefined) {
      if (g.dead) return slots; // dropped at once: a dead greenlet keeps nothing
      _addLink(g, clearer);
    }
    stores.set(key, slots);
  }
  return slots;
}

/** @ignore Drops every value of `g` (pool workers call it between items). */
export function _clearLocals(g: Greenlet<unknown>): void {
  if (used) stores.delete(g);
}

/**
 * One value per greenlet. `get()` returns the calling greenlet's value (creating it with
 * `init` on first use, if given), `set()` replaces it. A greenlet never sees another's value,
 * not even its parent's.
 *
 * @typeParam T The type of the value.
 *
 * @example Each greenlet sees its own value
 * ```ts
 * import { Local } from "@x/gevent/local";
 * import { joinAll, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const requestId = new Local<string>();
 * const handle = async (id: string) => {
 *   requestId.set(id);
 *   await sleep(1); // other greenlets run meanwhile
 *   return requestId.get();
 * };
 * const gs = [spawn(handle, "a"), spawn(handle, "b")];
 * await joinAll(gs);
 * assert.deepEqual(gs.map((g) => g.value), ["a", "b"]);
 * assert.equal(requestId.get(), undefined); // the top level has its own slot
 * ```
 */
export class Local<T> {
  #init: (() => T) | undefined;

  /**
   * Creates the storage.
   *
   * @param init Called (in the greenlet) to create the value on that greenlet's first `get()`,
   *   like the `__init__` of a gevent `local` subclass.
   * @throws {TypeError} If `init` is given and is not a function.
   */
  constructor(init?: () => T) {
    if (init !== undefined && typeof init !== "function") {
      throw new TypeError(`'init' must be a function: current value is ${init}`);
    }
    this.#init = init;
  }

  /**
   * The calling greenlet's value.
   *
   * @returns The value; without `init`, `undefined` if this greenlet set none.
   */
  get(): T | undefined {
    const slots = slotsFor(false);
    const self = this as Local<unknown>;
    if (slots !== undefined && slots.has(self)) return slots.get(self) as T;
    if (this.#init === undefined) return undefined;
    const value = this.#init();
    slotsFor(true)!.set(self, value);
    return value;
  }

  /**
   * Sets the calling greenlet's value.
   *
   * @param value The value.
   */
  set(value: T): void {
    slotsFor(true)!.set(this as Local<unknown>, value);
  }

  /**
   * Whether the calling greenlet has a value (set, or created by `init`).
   *
   * @returns `true` if it has one.
   */
  has(): boolean {
    return slotsFor(false)?.has(this as Local<unknown>) ?? false;
  }

  /**
   * Removes the calling greenlet's value (`init`, if given, runs again on the next `get`).
   *
   * @returns `true` if there was a value.
   */
  delete(): boolean {
    return slotsFor(false)?.delete(this as Local<unknown>) ?? false;
  }

  /**
   * @ignore The value `greenlet` holds, for tests (`undefined` once it is dead).
   * @param greenlet The greenlet.
   */
  _peek(greenlet: Greenlet<unknown>): T | undefined {
    return stores.get(greenlet)?.get(this as Local<unknown>) as T | undefined;
  }
}
