/**
 * A short soak (see `bench/soak.ts`): 10 s of echo round trips, lookups and queue traffic
 * on loopback while a chaos greenlet kills clients, gives them short deadlines and restarts
 * the echo server, the DNS server and a consumer. `runSoak` throws `SoakFailure` on a lost
 * or corrupted byte, a lost or duplicated queue item, a wrong lookup answer, a greenlet left
 * running, an unhandled rejection, a failure reported by the hub, or heap growth over 10%.
 *
 * The load is kept moderate (40 clients, payloads up to 16 KiB, a little think time) so the
 * test stays well inside its time on a busy 2-core machine.
 *
 * Heap check: `deno task test` does not pass `--expose-gc`, so `exposeGc()` turns the flag
 * on at run time and takes `gc` from a new `node:vm` context; the 10% bound is then checked
 * exactly as in the long soak. Should that ever stop working, the check is skipped and the
 * test prints a note rather than comparing heap figures that include uncollected garbage.
 */
import "./_deadline.ts";
import assert from "node:assert/strict";
import { exposeGc, formatSample, runSoak } from "../bench/soak.ts";

Deno.test("soak: 10 s of traffic under kills and timeouts loses nothing", async () => {
  const gc = exposeGc();
  const result = await runSoak({
    durationMs: 10_000,
    clients: 40,
    sampleMs: 2500,
    maxPayload: 16384,
    thinkMs: 2,
    gc: gc ?? null,
    onSample: (sample) => console.log(formatSample(sample)),
  });
  const t = result.totals;
  console.log(
    `seed ${result.seed}: ${t.roundTrips} round trips, ${t.lookups} lookups, ${t.itemsGot} queue ` +
      `items, ${t.clientsStarted} clients, ${t.kills} kills, ${t.timeouts} timeouts, ` +
      `${t.serverRestarts} echo server, ${t.dnsRestarts} DNS and ${t.consumerRestarts} consumer ` +
      `restarts; heap ${
        result.heap.checked
          ? `${(result.heap.growth! * 100).toFixed(1)}% first third to last`
          : `not checked: ${result.heap.note}`
      }`,
  );
  // The run must have done enough of everything for its "nothing lost" to mean something.
  assert.ok(t.roundTrips >= 1000, `only ${t.roundTrips} round trips`);
  assert.ok(t.lookups >= 200, `only ${t.lookups} lookups`);
  assert.ok(t.itemsGot >= 500, `only ${t.itemsGot} queue items`);
  assert.equal(t.itemsGot, t.itemsPut);
  assert.ok(t.clientsStarted >= 500, `only ${t.clientsStarted} clients started`);
  assert.ok(t.kills >= 20, `only ${t.kills} kills`);
  assert.ok(t.timeouts >= 20, `only ${t.timeouts} timeouts`);
  assert.ok(t.serverRestarts >= 1, "the echo server was never restarted");
  assert.ok(t.dnsRestarts >= 1, "the DNS server was never restarted");
  assert.ok(t.consumerRestarts >= 1, "no consumer was restarted");
  if (gc === undefined) console.log(`note: ${result.heap.note}`);
  else assert.ok(result.heap.checked, result.heap.note);
});
