/**
 * Shared test fixtures: the timeout contract every blocking API must honour, and a way to
 * capture what the hub prints.
 */
import assert from "node:assert/strict";
import { getHub } from "../hub.ts";

/** How a blocking API is exercised by {@linkcode assertTimeoutContract}. */
export interface TimeoutCase<R> {
  /** Starts the blocking call on an object that will not become ready by itself. */
  call(timeout: number | undefined): Promise<R>;
  /** Checks the outcome of a wait whose timeout elapsed (a value or the rejection). */
  elapsed(outcome: { value?: R; error?: unknown }): void;
}

async function outcomeOf<R>(p: Promise<R>): Promise<{ value?: R; error?: unknown }> {
  try {
    return { value: await p };
  } catch (error) {
    return { error };
  }
}

/**
 * The shared timeout contract: `timeout: 0` does not wait (it settles before a 5 ms timer),
 * an elapsed timeout gives the documented result, and a negative or non-finite timeout
 * rejects with `RangeError` (never a synchronous throw).
 */
export async function assertTimeoutContract<R>(t: Deno.TestContext, c: TimeoutCase<R>) {
  await t.step("timeout 0 does not wait", async () => {
    let timerFired = false;
    const timer = setTimeout(() => timerFired = true, 5);
    const outcome = await outcomeOf(c.call(0));
    clearTimeout(timer);
    assert.equal(timerFired, false, "timeout: 0 waited for a timer");
    c.elapsed(outcome);
  });
  await t.step("an elapsed timeout gives the documented result", async () => {
    // Order, not elapsed time: a timer due at half the timeout fires before the call ends.
    let halfway = false;
    const timer = setTimeout(() => halfway = true, 10);
    const outcome = await outcomeOf(c.call(20));
    clearTimeout(timer);
    assert.equal(halfway, true, "returned before its timeout elapsed");
    c.elapsed(outcome);
  });
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.step(`timeout ${bad} rejects with RangeError`, async () => {
      let p: Promise<R> | undefined;
      assert.doesNotThrow(() => p = c.call(bad), "threw synchronously instead of rejecting");
      await assert.rejects(p!, RangeError);
    });
  }
}

/** Captures the hub's failure reports while `fn` runs; returns what was written. */
export async function captureReports(fn: () => unknown): Promise<string> {
  const hub = getHub();
  const saved = hub.exceptionStream;
  let text = "";
  hub.exceptionStream = { write: (s: string) => text += s };
  try {
    await fn();
  } finally {
    hub.exceptionStream = saved;
  }
  return text;
}

/** Asserts that `actual` holds exactly the objects of `expected`, by identity and in order. */
export function assertSame<T>(
  actual: readonly T[],
  expected: readonly T[],
  message?: string,
): void {
  assert.equal(actual.length, expected.length, message ?? "lengths differ");
  actual.forEach((a, i) => assert.ok(a === expected[i], message ?? `item ${i} is another object`));
}

/** Whichever settles first: `p`, or a `ms` timer (then "timer"). The timer is cleared. */
export async function firstOf<T>(p: Promise<T>, ms: number): Promise<T | "timer"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const elapsed = new Promise<"timer">((resolve) => timer = setTimeout(resolve, ms, "timer"));
  try {
    return await Promise.race([p, elapsed]);
  } finally {
    clearTimeout(timer);
  }
}
