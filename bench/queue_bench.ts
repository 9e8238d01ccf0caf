/**
 * `deno bench` for queues and locks, each group against a raw-promise baseline. The sizes are
 * a tenth of the issue's; `bench/compare_toolbox.ts` runs the full sizes side by side with
 * gevent and p-map.
 *
 * ```sh
 * deno bench -A bench/queue_bench.ts
 * ```
 *
 * Every `fn` is an `async` function: `deno bench` only awaits functions declared `async`.
 *
 * @module
 */

import {
  libQueue,
  libSemaphore,
  rawBounded1,
  rawSemaphore,
  rawUnbounded,
} from "./compare_toolbox.ts";
import { Channel, joinAll, spawn } from "../mod.ts";

const ITEMS = 100_000;
const PAIRS = 500_000;

Deno.bench({
  name: `raw promises: one-slot hand-off of ${ITEMS.toLocaleString("en-US")} items`,
  group: "queue_bounded1",
  n: 20,
  warmup: 5,
  baseline: true,
  async fn() {
    await rawBounded1(ITEMS);
  },
});

Deno.bench({
  name: `Queue(1) producer/consumer, ${ITEMS.toLocaleString("en-US")} items`,
  group: "queue_bounded1",
  n: 20,
  warmup: 5,
  async fn() {
    await libQueue(1, ITEMS);
  },
});

Deno.bench({
  name: `raw promises: the same awaits without a queue, ${ITEMS.toLocaleString("en-US")} items`,
  group: "queue_unbounded",
  n: 20,
  warmup: 5,
  baseline: true,
  async fn() {
    await rawUnbounded(ITEMS);
  },
});

Deno.bench({
  name: `unbounded Queue producer/consumer, ${ITEMS.toLocaleString("en-US")} items`,
  group: "queue_unbounded",
  n: 20,
  warmup: 5,
  async fn() {
    await libQueue(undefined, ITEMS);
  },
});

Deno.bench({
  name: `Channel hand-off, ${ITEMS.toLocaleString("en-US")} items`,
  group: "queue_bounded1",
  n: 20,
  warmup: 5,
  async fn() {
    const ch = new Channel<number>();
    const consumer = spawn(async () => {
      let s = 0;
      for (let i = 0; i < ITEMS; i++) s += await ch.get();
      return s;
    });
    const producer = spawn(async () => {
      for (let i = 0; i < ITEMS; i++) await ch.put(i);
    });
    await joinAll([producer, consumer], { raiseError: true });
    if (consumer.value !== ITEMS * (ITEMS - 1) / 2) throw new Error("lost items");
  },
});

Deno.bench({
  name: `raw promises: ${PAIRS.toLocaleString("en-US")} awaited acquire/release pairs`,
  group: "semaphore",
  n: 20,
  warmup: 5,
  baseline: true,
  async fn() {
    await rawSemaphore(PAIRS);
  },
});

Deno.bench({
  name: `Semaphore acquire/release uncontended, ${PAIRS.toLocaleString("en-US")} pairs`,
  group: "semaphore",
  n: 20,
  warmup: 5,
  async fn() {
    await libSemaphore(PAIRS);
  },
});
