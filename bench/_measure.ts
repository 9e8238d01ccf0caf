/**
 * Measurement helpers shared by the side-by-side benchmarks (run inside a child process
 * started with `--v8-flags=--expose-gc`).
 *
 * @module
 */

declare const gc: (() => void) | undefined;

/** Two full collections (the second one frees what the first one's finalizers released). */
export function fullGc(): void {
  if (typeof gc !== "function") {
    throw new Error("Run with --v8-flags=--expose-gc: the memory workloads need gc()");
  }
  gc();
  gc();
}

/** Waits for a macrotask so that queued work and timers settle. */
export function settle(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A batch of blocked tasks and the way to release them. */
export interface Blocked {
  release(): Promise<void>;
}

/**
 * Heap bytes per blocked task: warms up with a small batch, collects, then blocks `n` tasks
 * made by `block`, collects again, and divides the growth of `heapUsed` by `n`.
 */
export async function heapPerTask(
  n: number,
  block: (n: number) => Promise<Blocked>,
): Promise<number> {
  const warm = await block(Math.max(1, Math.floor(n / 100)));
  await warm.release();
  await settle(50);
  fullGc();
  const before = Deno.memoryUsage().heapUsed;
  const held = await block(n);
  await settle(50);
  fullGc();
  const after = Deno.memoryUsage().heapUsed;
  await held.release();
  return (after - before) / n;
}
