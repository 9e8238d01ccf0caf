/**
 * `deno bench` for pools, against a raw-promise baseline (100 promise workers) and p-map. The
 * sizes are a tenth of the issue's; `bench/compare_toolbox.ts` runs the full sizes side by
 * side with gevent.
 *
 * ```sh
 * deno bench -A bench/pool_bench.ts
 * ```
 *
 * Every `fn` is an `async` function: `deno bench` only awaits functions declared `async`.
 *
 * @module
 */

import { libImap, pMapImap, rawImap } from "./compare_toolbox.ts";
import { Group, Pool } from "../mod.ts";

const ITEMS = 10_000;

Deno.bench({
  name: `raw promises: ordered map, concurrency 100, ${ITEMS.toLocaleString("en-US")} items`,
  group: "pool_imap",
  n: 20,
  warmup: 5,
  baseline: true,
  async fn() {
    await rawImap(ITEMS);
  },
});

Deno.bench({
  name: `Pool(100).imap over ${ITEMS.toLocaleString("en-US")} items`,
  group: "pool_imap",
  n: 20,
  warmup: 5,
  async fn() {
    await libImap(ITEMS);
  },
});

Deno.bench({
  name: `p-map, concurrency 100, ${ITEMS.toLocaleString("en-US")} items`,
  group: "pool_imap",
  n: 20,
  warmup: 5,
  async fn() {
    await pMapImap(ITEMS);
  },
});

Deno.bench({
  name: `Pool(100).spawn of ${ITEMS.toLocaleString("en-US")} greenlets, then join`,
  group: "pool_spawn",
  n: 20,
  warmup: 5,
  async fn() {
    const pool = new Pool(100);
    for (let i = 0; i < ITEMS; i++) await pool.spawn(() => i);
    await pool.join();
  },
});

Deno.bench({
  name: `Group.spawn of ${ITEMS.toLocaleString("en-US")} greenlets, then join`,
  group: "pool_spawn",
  n: 20,
  warmup: 5,
  baseline: true,
  async fn() {
    const group = new Group();
    for (let i = 0; i < ITEMS; i++) group.spawn(() => i);
    await group.join();
  },
});
