/**
 * Argument checks shared by every module, with one error convention:
 *
 * - `_check*(...)` throw: for constructors and calls that fail synchronously.
 * - `_bad*(...)` return the error (or `undefined` when the value is valid): for blocking calls,
 *   which reject their promise instead of throwing.
 *
 * A message names the argument and shows its value (`_render`): `'timeout' must be a finite,
 * non-negative number of milliseconds: current value is -1`. A value of the wrong type is a
 * `TypeError`; a number out of range is a `RangeError`.
 *
 * @module
 */

/** @ignore `value` as an error message shows it: strings quoted, the rest with `String()`. */
export function _render(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "symbol") return value.toString();
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * @ignore Checks a duration in milliseconds (finite, non-negative).
 * @throws {TypeError} If it is not a number.
 * @throws {RangeError} If it is negative, NaN or infinite.
 */
export function _checkMs(name: string, value: unknown): void {
  if (typeof value !== "number") {
    throw new TypeError(
      `'${name}' must be a number of milliseconds: current value is ${_render(value)}`,
    );
  }
  if (!(value >= 0) || value === Infinity) {
    throw new RangeError(
      `'${name}' must be a finite, non-negative number of milliseconds: current value is ${value}`,
    );
  }
}

/** @ignore A blocking call's `timeout`: `undefined` (wait forever) or a valid duration. */
export function _badTimeout(timeout: unknown): Error | undefined {
  if (timeout === undefined) return undefined;
  try {
    _checkMs("timeout", timeout);
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

/** @ignore An options bag named `name`: `undefined` or an object. */
export function _badBag(options: unknown, name = "options"): TypeError | undefined {
  if (options === undefined || (options !== null && typeof options === "object")) return undefined;
  return new TypeError(`'${name}' must be an object: current value is ${_render(options)}`);
}

/** @ignore The options bag of a blocking call: `undefined`, or an object with a valid `timeout`. */
export function _badWaitOptions(options: unknown): Error | undefined {
  if (options === undefined) return undefined;
  return _badBag(options) ?? _badTimeout((options as { timeout?: unknown }).timeout);
}

/** @ignore Throws the error of {@linkcode _badBag}. */
export function _checkBag(options: unknown, name = "options"): void {
  const bad = _badBag(options, name);
  if (bad !== undefined) throw bad;
}

/** @ignore A `signal` option: `undefined` or an `AbortSignal`. */
export function _badSignal(signal: unknown): TypeError | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return undefined;
  return new TypeError(`'signal' must be an AbortSignal: current value is ${_render(signal)}`);
}

/** @ignore Checks that `fn` (the argument named `name`) is a function. */
export function _checkFn(fn: unknown, name = "fn"): void {
  if (typeof fn !== "function") {
    throw new TypeError(`'${name}' must be a function: current value is ${_render(fn)}`);
  }
}

/**
 * @ignore Checks a count: an integer of at least `min`, or `Infinity` when `infinite` says
 * it may be. Returns it.
 */
export function _checkCount(
  name: string,
  value: unknown,
  { min = 0, infinite = false }: { min?: number; infinite?: boolean } = {},
): number {
  if (infinite && value === Infinity) return value;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    const E = typeof value === "number" ? RangeError : TypeError;
    const kind = min === 0
      ? "a non-negative integer"
      : min === 1
      ? "a positive integer"
      : `an integer >= ${min}`;
    throw new E(
      `'${name}' must be ${kind}${infinite ? " or Infinity" : ""}: current value is ${
        _render(value)
      }`,
    );
  }
  return value;
}

/** @ignore The error of {@linkcode _checkCount} for an optional count, or `undefined`. */
export function _badCount(name: string, value: unknown): Error | undefined {
  if (value === undefined) return undefined;
  try {
    _checkCount(name, value);
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

/** @ignore Spreads an iterable argument; a TypeError naming it for anything else. */
export function _list<T>(name: string, items: Iterable<T>): T[] {
  if (
    items === null || items === undefined ||
    typeof (items as Iterable<T>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(`'${name}' must be iterable: current value is ${_render(items)}`);
  }
  return [...items];
}
