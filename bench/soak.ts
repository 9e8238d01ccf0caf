/**
 * The soak: minutes of mixed traffic, all on loopback in one process, under kills, short
 * deadlines and restarts, checking that nothing is lost, corrupted, duplicated or leaked.
 *
 * ```sh
 * deno task soak -- --duration 300 [--clients 200] [--seed 42] [--sample 5]
 * ```
 *
 * What runs:
 * - an echo `StreamServer` (each connection echoes its bytes back through `Socket`s);
 * - the loopback DNS server of `tests/_dns_server.ts`, with a `Resolver` that asks it alone
 *   (it is also installed as the hub's resolver for the run, so no lookup can reach the
 *   machine's resolver);
 * - a `Queue` with a few consumer greenlets;
 * - `clients` client greenlets at a time (each is replaced when it ends, so thousands run
 *   over a long soak). A client makes a short random series of operations: checked echo
 *   round trips (a frame of random length with a sequence number and a checksum, compared
 *   byte for byte when it comes back), lookups of a few names (each answer compared with
 *   the records) and queue puts (every item put must be got exactly once);
 * - a chaos greenlet that kills random clients, gives random clients short deadlines (their
 *   next operations run under `withTimeout`), pauses accepting, and now and then restarts
 *   the echo server (same port or a new one), the DNS server with its resolver, or a
 *   consumer.
 *
 * Interrupted work is not a failure: a client abandons an interrupted round trip (and closes
 * its connection), a killed client closes its socket in its `finally`. A connection dropped
 * or refused, or a lookup failed, is accepted only if a restart of that server (or resolver)
 * began after the connection (or lookup) began; otherwise it is a failure too. Clients do
 * not connect while the echo server restarts, so they never reach a port it has left.
 *
 * The run fails (`runSoak` throws {@linkcode SoakFailure}) on: a completed round trip whose
 * echo differs from what was sent; a queue item lost, got twice, got after its put was
 * interrupted, or corrupted; a lookup with a wrong answer; an error no interruption
 * explains; a greenlet (or a client's code) still running after shutdown; a failure the hub
 * reported; an unhandled rejection or uncaught error; or heap used after GC growing more
 * than `maxHeapGrowth` (10%) from the first third of the run to the last third (medians of
 * the samples in each third). It stops at the first failure, shuts down, and then throws.
 *
 * Memory: the soak keeps only what is in flight (items not yet accounted for, live
 * greenlets, one sample per `sampleMs`), and empties the DNS fixture's log of names asked
 * at every sample, so that its own bookkeeping does not grow with the run.
 *
 * Heap samples need `gc()`: `--v8-flags=--expose-gc` (the task passes it), or else
 * {@linkcode exposeGc} turns the flag on at run time through `node:v8` and takes `gc` from a
 * fresh `node:vm` context (verified with Deno 2.9.6). If neither works, the heap check is
 * skipped and the result says so (`heap.checked` is `false`, with a note).
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";
import { Event } from "../event.ts";
import { getCurrent, type Greenlet, isKill, killAll, spawn } from "../greenlet.ts";
import { getHub, type HubResolver, sleep } from "../hub.ts";
import { Full, Queue, ShutDown } from "../queue.ts";
import { type Address, GaiError, Resolver } from "../resolver.ts";
import { StreamServer } from "../server.ts";
import { createConnection, type Socket, SocketError } from "../socket.ts";
import { withTimeout } from "../timeout.ts";
import { type DnsServer, startDnsServer } from "../tests/_dns_server.ts";

/** One sample of a running soak, taken every `sampleMs`. */
export interface SoakSample {
  /** Milliseconds since the traffic started. */
  elapsedMs: number;
  /** Checked echo round trips completed per second since the previous sample. */
  roundTripsPerSec: number;
  /** Checked lookups completed per second since the previous sample. */
  lookupsPerSec: number;
  /** Queue items got per second since the previous sample. */
  queueItemsPerSec: number;
  /** Greenlets killed by the chaos greenlet so far (clients and consumers). */
  kills: number;
  /** Operations cut off by a `withTimeout` deadline so far. */
  timeouts: number;
  /** Restarts so far (echo server, DNS server with its resolver, consumers). */
  restarts: number;
  /** Client greenlets started so far. */
  clientsStarted: number;
  /** Bytes of heap used right after a full GC; `undefined` without `gc()`. */
  heapUsed: number | undefined;
}

/** Options of {@linkcode runSoak}. */
export interface SoakOptions {
  /** How long the traffic runs, in milliseconds (shutdown and checks come after). */
  durationMs: number;
  /** Client greenlets running at once (default 200). */
  clients?: number;
  /** Called with each sample. */
  onSample?: (sample: SoakSample) => void;
  /** Milliseconds between samples (default 5000). */
  sampleMs?: number;
  /** Milliseconds between heap samples (default: a 30th of the run, from 250 to 1000). */
  heapSampleMs?: number;
  /** The largest allowed growth of heap used after GC, first third to last (default 0.1). */
  maxHeapGrowth?: number;
  /** The most payload bytes in one round trip (default 65536). */
  maxPayload?: number;
  /** Consumer greenlets of the queue (default 3). */
  consumers?: number;
  /** Clients sleep up to this many ms between operations, to lighten the load (default 0). */
  thinkMs?: number;
  /** Seed of the random choices (default: from the clock); reported in the result. */
  seed?: number;
  /** The `gc` function to sample heap with (default: {@linkcode exposeGc}'s). */
  gc?: (() => void) | null;
}

/** Totals of a finished soak. */
export interface SoakTotals {
  /** Checked round trips completed. */
  roundTrips: number;
  /** Bytes echoed in completed round trips. */
  bytesEchoed: number;
  /** Round trips abandoned (interrupted, or their connection dropped by a restart). */
  roundTripsAbandoned: number;
  /** Lookups completed with the right answer (negative answers included). */
  lookups: number;
  /** Lookups abandoned (interrupted, or their resolver closed by a restart). */
  lookupsAbandoned: number;
  /** Queue items put (puts that completed). */
  itemsPut: number;
  /** Queue items got. */
  itemsGot: number;
  /** Puts interrupted (their items never entered the queue). */
  putsInterrupted: number;
  /** Client greenlets started. */
  clientsStarted: number;
  /** Greenlets killed by the chaos greenlet. */
  kills: number;
  /** Operations cut off by a `withTimeout` deadline. */
  timeouts: number;
  /** Connects refused while the echo server was restarting. */
  connectsRefused: number;
  /** Echo server restarts. */
  serverRestarts: number;
  /** Echo server restarts on the port of the server they replaced. */
  serverSamePort: number;
  /** Restarts on the same port whose first attempt to bind it failed (`EADDRINUSE`). */
  portBusy: number;
  /** Restarts on the same port that got a new one because the old one stayed in use. */
  portInUse: number;
  /** Pauses of accepting (`stopAccepting()` then `startAccepting()`). */
  acceptPauses: number;
  /** DNS server (and resolver) restarts. */
  dnsRestarts: number;
  /** Consumer restarts. */
  consumerRestarts: number;
}

/** The heap check of a finished soak. */
export interface SoakHeapCheck {
  /** Whether heap growth was checked (it needs `gc()`). */
  checked: boolean;
  /** Median heap used after GC over the first third of the run, in bytes. */
  firstThird?: number;
  /** Median heap used after GC over the last third of the run, in bytes. */
  lastThird?: number;
  /** `lastThird / firstThird - 1`. */
  growth?: number;
  /** Why the check was skipped. */
  note?: string;
}

/** What {@linkcode runSoak} resolves with when nothing failed. */
export interface SoakResult {
  /** Milliseconds the traffic ran. */
  durationMs: number;
  /** The seed of the random choices. */
  seed: number;
  /** The totals. */
  totals: SoakTotals;
  /** Every sample, in order. */
  samples: SoakSample[];
  /** The heap check. */
  heap: SoakHeapCheck;
}

/** Thrown by {@linkcode runSoak} when the run found problems; `failures` lists them all. */
export class SoakFailure extends Error {
  /** Every problem found, in the order found. */
  readonly failures: string[];
  /** The seed of the failed run. */
  readonly seed: number;

  /**
   * Creates the error.
   *
   * @param failures The problems found.
   * @param seed The seed of the run.
   * @param elapsedMs When the run stopped.
   */
  constructor(failures: string[], seed: number, elapsedMs: number) {
    const shown = failures.slice(0, 10).map((f) => `\n  - ${f}`).join("");
    const more = failures.length > 10 ? `\n  ... and ${failures.length - 10} more` : "";
    super(
      `Soak failed after ${(elapsedMs / 1000).toFixed(1)} s (seed ${seed}) with ` +
        `${failures.length} problem${failures.length === 1 ? "" : "s"}:${shown}${more}`,
    );
    this.name = "SoakFailure";
    this.failures = failures;
    this.seed = seed;
  }
}

declare const gc: (() => void) | undefined;

/**
 * Returns a `gc()` function: the global one under `--v8-flags=--expose-gc`, else one made
 * by turning `--expose-gc` on at run time (`node:v8`) and taking `gc` from a new `node:vm`
 * context; `undefined` if neither works.
 *
 * @returns The function, or `undefined`.
 */
export function exposeGc(): (() => void) | undefined {
  if (typeof gc === "function") return gc;
  try {
    v8.setFlagsFromString("--expose-gc");
    const fn = vm.runInNewContext("gc");
    return typeof fn === "function" ? fn as () => void : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// The records the DNS server answers, and what each lookup must give

const DOMAIN = "soak.test";
const RECORDS = {
  [`alpha.${DOMAIN}`]: { A: ["10.77.0.1"] },
  [`multi.${DOMAIN}`]: { A: ["10.77.0.2", "10.77.0.3"], AAAA: ["fd77::3"] },
  ["1.0.77.10.in-addr.arpa"]: { PTR: [`alpha.${DOMAIN}`] },
};
const MISSING = `missing.${DOMAIN}`;
const LOOKUP_PORT = 7;

interface Lookup {
  what: string;
  run(r: Resolver): Promise<unknown>;
  /** The answer, rendered as JSON after sorting lists; a negative answer is `"EAI_NONAME"`. */
  expected: string;
}

const sortedJson = (value: unknown): string =>
  JSON.stringify(
    value,
    (_k, v) => Array.isArray(v) && v.every((x) => typeof x === "string") ? [...v].sort() : v,
  );

const LOOKUPS: Lookup[] = [
  {
    what: `gethostbyname(${JSON.stringify(`alpha.${DOMAIN}`)})`,
    run: (r) => r.gethostbyname(`alpha.${DOMAIN}`),
    expected: JSON.stringify("10.77.0.1"),
  },
  {
    what: `gethostbynameEx(${JSON.stringify(`multi.${DOMAIN}`)})`,
    run: (r) => r.gethostbynameEx(`multi.${DOMAIN}`),
    expected: sortedJson([`multi.${DOMAIN}`, [], ["10.77.0.2", "10.77.0.3"]]),
  },
  {
    what: `getaddrinfo(${JSON.stringify(`multi.${DOMAIN}`)}, ${LOOKUP_PORT})`,
    run: async (r) =>
      (await r.getaddrinfo(`multi.${DOMAIN}`, LOOKUP_PORT, { type: "stream" }))
        .map((i) => `${i.family} ${i.address[0]} ${i.address[1]}`),
    expected: sortedJson([
      `4 10.77.0.2 ${LOOKUP_PORT}`,
      `4 10.77.0.3 ${LOOKUP_PORT}`,
      `6 fd77::3 ${LOOKUP_PORT}`,
    ]),
  },
  {
    what: `gethostbyaddr("10.77.0.1")`,
    run: (r) => r.gethostbyaddr("10.77.0.1"),
    expected: sortedJson([`alpha.${DOMAIN}`, [], ["10.77.0.1"]]),
  },
  {
    what: `gethostbyname(${JSON.stringify(MISSING)})`,
    run: (r) => r.gethostbyname(MISSING),
    expected: "EAI_NONAME",
  },
];

// ---------------------------------------------------------------------------------------
// Frames: [seq u32][length u32][FNV-1a of the payload u32][payload]

const HEADER = 12;

function fnv1a(bytes: Uint8Array, from: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

const hex = (b: number | undefined): string =>
  b === undefined ? "nothing" : `0x${b.toString(16).padStart(2, "0")}`;

// ---------------------------------------------------------------------------------------
// The run

const TIMED_OUT: unique symbol = Symbol("timed out");
/** Why a client gave up on an operation without it being a failure (see `Soak.excused`). */
class Abandoned extends Error {}

interface Client {
  id: number;
  /** Set by the chaos greenlet: the client's next operations run under `withTimeout`. */
  deadlineMs: number | undefined;
}

interface Item {
  id: number;
  /** `id` scrambled: a corrupted item does not match it. */
  check: number;
  /** Set once its put completed. */
  put: boolean;
  /** Set when its put was interrupted (it must then never be got). */
  putFailed: boolean;
  /** How many times consumers got it. */
  gets: number;
}

const scramble = (id: number): number => Math.imul(id ^ 0x5bd1e995, 0x9e3779b1) >>> 0;

/** A small, fast, seeded generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return String(error);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

class Soak {
  readonly rand: () => number;
  readonly maxPayload: number;
  readonly thinkMs: number;
  readonly failures: string[] = [];
  readonly failed = new Event();
  stopping = false;
  t0 = performance.now();

  // The pieces, replaced by restarts. A generation is bumped when a restart begins and again
  // once the new piece is in place (before the old resolver is closed), so an operation that
  // began while the old piece was in use sees a different number when the restart fails it.
  server!: StreamServer;
  address!: Address;
  serverGen = 0;
  serverUp = new Event();
  dns!: DnsServer;
  resolver!: Resolver;
  dnsGen = 0;
  readonly queue = new Queue<Item>(64);

  readonly clients = new Map<Greenlet<unknown>, Client>();
  readonly consumers = new Set<Greenlet<unknown>>();
  /** Every greenlet spawned by the soak that has not been seen dead yet. */
  readonly live = new Set<Greenlet<unknown>>();
  /** Client and consumer functions that have started and not left their `finally` yet. */
  bodies = 0;
  /** Items whose put began and that are not yet accounted for (got, or put interrupted). */
  readonly outstanding = new Map<number, Item>();
  nextItem = 0;
  nextClient = 0;
  nextConsumer = 0;
  readonly totals: SoakTotals = {
    roundTrips: 0,
    bytesEchoed: 0,
    roundTripsAbandoned: 0,
    lookups: 0,
    lookupsAbandoned: 0,
    itemsPut: 0,
    itemsGot: 0,
    putsInterrupted: 0,
    clientsStarted: 0,
    kills: 0,
    timeouts: 0,
    connectsRefused: 0,
    serverRestarts: 0,
    serverSamePort: 0,
    portBusy: 0,
    portInUse: 0,
    acceptPauses: 0,
    dnsRestarts: 0,
    consumerRestarts: 0,
  };

  constructor(seed: number, maxPayload: number, thinkMs: number) {
    this.rand = random(seed);
    this.maxPayload = maxPayload;
    this.thinkMs = thinkMs;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }

  fail(message: string): void {
    const at = ((performance.now() - this.t0) / 1000).toFixed(1);
    this.failures.push(`[${at} s] ${message}`);
    this.failed.set();
  }

  /** Spawns a greenlet that the final check expects to find dead. */
  track<A extends unknown[]>(fn: (...args: A) => Promise<void>, ...args: A): Greenlet<unknown> {
    const g = spawn(fn, ...args) as Greenlet<unknown>;
    this.live.add(g);
    g.rawlink(this.#untrack);
    return g;
  }

  #untrack = (g: Greenlet<unknown>): void => {
    this.live.delete(g);
    // An error a greenlet died with was reported by the hub too; this names it plainly.
    if (!g.successful()) this.fail(`greenlet ${g.name} failed: ${describe(g.exception)}`);
  };

  // ---- clients ----

  spawnClient(): void {
    const client: Client = { id: ++this.nextClient, deadlineMs: undefined };
    this.totals.clientsStarted++;
    const g = this.track(this.#client, client);
    g.name = `client-${client.id}`;
    this.clients.set(g, client);
    g.rawlink(this.#clientEnded);
  }

  #clientEnded = (g: Greenlet<unknown>): void => {
    this.clients.delete(g);
    if (!this.stopping) this.spawnClient();
  };

  /** Runs `op` under the client's deadline, if the chaos greenlet gave it one. */
  async guarded<T>(client: Client, op: () => Promise<T>): Promise<T | typeof TIMED_OUT> {
    const ms = client.deadlineMs;
    if (ms === undefined) return await op();
    const r = await withTimeout<T, typeof TIMED_OUT>(ms, op, { timeoutValue: TIMED_OUT });
    if (r === TIMED_OUT) this.totals.timeouts++;
    return r;
  }

  /**
   * Whether an error ends an operation without being a failure: a round trip given up, a
   * queue shut down at teardown, or a socket error (refused, reset, broken pipe, closed)
   * that a restart of the echo server begun since the operation began explains.
   */
  excused(error: unknown, serverGen: number): boolean {
    if (error instanceof Abandoned) return true;
    if (error instanceof ShutDown) return this.stopping;
    if (error instanceof SocketError && !(error instanceof GaiError)) {
      if (serverGen === this.serverGen) return false;
      if (error.code === "ECONNREFUSED") this.totals.connectsRefused++;
      return true;
    }
    return false;
  }

  #client = async (client: Client): Promise<void> => {
    this.bodies++;
    let sock: Socket | undefined;
    let seq = 0;
    /** The echo server's generation when the connection (or its attempt) began. */
    let serverGen = this.serverGen;
    try {
      const ops = this.int(3, 20);
      for (let i = 0; i < ops && !this.stopping; i++) {
        if (this.thinkMs > 0) await sleep(this.int(0, this.thinkMs));
        const pick = this.rand();
        const dnsGen = this.dnsGen;
        try {
          if (pick < 0.55) {
            if (sock === undefined) {
              if (!this.serverUp.isSet()) await this.serverUp.wait();
              serverGen = this.serverGen;
              const address = this.address;
              const connected = await this.guarded(client, () => createConnection(address));
              if (connected === TIMED_OUT) continue;
              sock = connected;
            }
            const s = sock;
            const r = await this.guarded(client, () => this.roundTrip(s, client, ++seq, serverGen));
            if (r === true) continue;
            // Interrupted, or dropped by a restart: the echo may still be on its way, so this
            // connection cannot be trusted for another round trip.
            throw new Abandoned();
          } else if (pick < 0.8) {
            const lookup = LOOKUPS[this.int(0, LOOKUPS.length - 1)];
            const resolver = this.resolver;
            const r = await this.guarded(client, () => this.lookup(resolver, lookup, dnsGen));
            if (r !== true) this.totals.lookupsAbandoned++;
          } else {
            await this.produce(client);
          }
        } catch (error) {
          if (isKill(error)) throw error;
          if (!this.excused(error, serverGen)) {
            this.fail(`client-${client.id} failed: ${describe(error)}`);
            return;
          }
          if (sock !== undefined) {
            this.totals.roundTripsAbandoned++;
            sock.close();
            sock = undefined;
          }
        }
      }
    } finally {
      sock?.close();
      this.bodies--;
      this.checkNotAbandoned();
    }
  };

  /**
   * Fails if the calling greenlet was declared dead while its code still ran: a kill that
   * reached none of its blocking calls (every await here is one).
   */
  checkNotAbandoned(): void {
    const me = getCurrent();
    if (me?.dead) {
      this.fail(
        `${me.name} was declared dead while its code still ran (its kill was not delivered)`,
      );
    }
  }

  /** One checked round trip; `true` once the echo came back whole and correct. */
  async roundTrip(sock: Socket, client: Client, seq: number, serverGen: number): Promise<boolean> {
    const big = this.rand() < 0.1;
    const payload = big ? this.int(4096, this.maxPayload) : this.int(1, 1024);
    const len = HEADER + payload;
    const frame = new Uint8Array(len);
    let x = (this.rand() * 4294967296) >>> 0 || 1;
    for (let i = HEADER; i < len; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      frame[i] = x;
    }
    const view = new DataView(frame.buffer);
    view.setUint32(0, seq);
    view.setUint32(4, len);
    view.setUint32(8, fnv1a(frame, HEADER));
    await sock.sendall(frame);
    const back = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const n = await sock.recvInto(back.subarray(got));
      if (n === 0) {
        if (serverGen !== this.serverGen) return false; // the server was restarted
        this.fail(
          `client-${client.id}: the echo server closed the connection after ${got} of ${len} ` +
            `bytes of round trip ${seq}, while no restart had begun`,
        );
        return false;
      }
      got += n;
    }
    for (let i = 0; i < len; i++) {
      if (back[i] !== frame[i]) {
        const bv = new DataView(back.buffer);
        this.fail(
          `client-${client.id}: round trip ${seq} (${len} bytes) came back corrupted: byte ${i} ` +
            `is ${hex(back[i])}, sent ${hex(frame[i])} (echoed header: seq ${bv.getUint32(0)}, ` +
            `length ${bv.getUint32(4)}, checksum ${
              bv.getUint32(8) === fnv1a(back, HEADER) ? "matches" : "does not match"
            } the echoed payload)`,
        );
        return false;
      }
    }
    this.totals.roundTrips++;
    this.totals.bytesEchoed += len;
    return true;
  }

  /** One checked lookup; `true` once answered correctly. */
  async lookup(resolver: Resolver, lookup: Lookup, dnsGen: number): Promise<boolean> {
    let answer: string;
    try {
      answer = sortedJson(await lookup.run(resolver));
    } catch (error) {
      if (isKill(error)) throw error;
      if (error instanceof GaiError && error.code === "EAI_NONAME") {
        answer = "EAI_NONAME";
      } else if (error instanceof SocketError && dnsGen !== this.dnsGen) {
        return false; // its resolver was closed (EBADF) or its server stopped by a restart
      } else {
        this.fail(`${lookup.what} failed with no restart to explain it: ${describe(error)}`);
        return false;
      }
    }
    if (answer !== lookup.expected) {
      this.fail(`${lookup.what} answered ${answer}, expected ${lookup.expected}`);
      return false;
    }
    this.totals.lookups++;
    return true;
  }

  // ---- the queue ----

  async produce(client: Client): Promise<void> {
    const count = this.int(1, 4);
    for (let k = 0; k < count && !this.stopping; k++) {
      const id = ++this.nextItem;
      const item: Item = { id, check: scramble(id), put: false, putFailed: false, gets: 0 };
      this.outstanding.set(id, item);
      // Some puts may give up after a few ms (Full): they must then leave nothing queued.
      const options = this.rand() < 0.2 ? { timeout: this.int(0, 5) } : undefined;
      let r: void | typeof TIMED_OUT;
      try {
        r = await this.guarded(client, () => this.queue.put(item, options));
      } catch (error) {
        this.putInterrupted(item);
        if (error instanceof Full) continue; // its own put timeout: nothing was queued
        throw error;
      }
      if (r === TIMED_OUT) {
        this.putInterrupted(item);
        continue;
      }
      item.put = true;
      this.totals.itemsPut++;
      if (item.gets > 0) this.outstanding.delete(id);
    }
  }

  putInterrupted(item: Item): void {
    this.totals.putsInterrupted++;
    item.putFailed = true;
    this.outstanding.delete(item.id);
    if (item.gets > 0) {
      this.fail(`queue item ${item.id} was got although its put was interrupted`);
    }
  }

  /** Accounts for an item a consumer got. */
  received(item: Item, consumer: string): void {
    this.totals.itemsGot++;
    if (item === null || typeof item !== "object" || item.check !== scramble(item.id)) {
      this.fail(`${consumer} got a corrupted queue item: ${JSON.stringify(item)}`);
      return;
    }
    item.gets++;
    if (item.gets > 1) {
      this.fail(`queue item ${item.id} was got ${item.gets} times (a duplicate)`);
    } else if (item.putFailed) {
      this.fail(`queue item ${item.id} was got although its put was interrupted`);
    } else if (!this.outstanding.has(item.id)) {
      this.fail(`queue item ${item.id} was got but was never outstanding`);
    } else if (item.put) {
      this.outstanding.delete(item.id);
    }
    // Otherwise its producer has not seen its put complete yet: `produce` removes it then.
  }

  spawnConsumer(): void {
    const name = `consumer-${++this.nextConsumer}`;
    const g = this.track(this.#consumer, name);
    g.name = name;
    this.consumers.add(g);
    g.rawlink((dead) => this.consumers.delete(dead));
  }

  #consumer = async (name: string): Promise<void> => {
    this.bodies++;
    try {
      for (;;) {
        const item = await this.queue.get();
        this.received(item, name);
        this.queue.taskDone();
        // Some work after the item is accounted for: a place where kills land.
        if (this.rand() < 0.05) await sleep(this.int(0, 2));
      }
    } catch (error) {
      if (error instanceof ShutDown) return;
      if (isKill(error)) throw error;
      this.fail(`${name} failed: ${describe(error)}`);
    } finally {
      this.bodies--;
      this.checkNotAbandoned();
    }
  };

  // ---- restarts ----

  /**
   * Starts an echo server on `port`. A port that is still in use is tried again a few times,
   * a millisecond apart (right after `stop()` resolves, the listening socket is still held
   * until the event loop turns once), then a new port is taken.
   */
  async startServer(port: number): Promise<void> {
    let server: StreamServer | undefined;
    for (let attempt = 0; server === undefined; attempt++) {
      const candidate = new StreamServer(["127.0.0.1", attempt < 5 ? port : 0], echo);
      try {
        candidate.start();
        server = candidate;
      } catch (error) {
        if (port === 0 || !(error instanceof SocketError) || error.code !== "EADDRINUSE") {
          throw error;
        }
        if (attempt === 0) this.totals.portBusy++;
        if (attempt === 4) this.totals.portInUse++;
        await sleep(1);
      }
    }
    this.server = server;
    this.address = server.address;
  }

  /** Stops the echo server and starts a new one, on the same port or (half the time) a new one. */
  async restartServer(): Promise<void> {
    this.serverGen++;
    this.serverUp.clear();
    const old = this.server;
    await old.stop({ timeout: 0 });
    const port = old.address[1];
    await this.startServer(this.rand() < 0.5 ? port : 0);
    if (this.address[1] === port) this.totals.serverSamePort++;
    this.serverGen++;
    this.serverUp.set();
    this.totals.serverRestarts++;
  }

  async startDns(): Promise<void> {
    this.dns = await startDnsServer({ records: RECORDS });
    this.resolver = new Resolver({ nameservers: [this.dns.nameserver], timeout: 2000, tries: 2 });
    getHub().resolver = this.resolver;
  }

  async restartDns(): Promise<void> {
    this.dnsGen++;
    const oldDns = this.dns;
    const oldResolver = this.resolver;
    await this.startDns();
    // Lookups begun from here on use the new resolver; those of the old one, which fail
    // with EBADF when it closes, all began before this second bump.
    this.dnsGen++;
    oldResolver.close();
    await oldDns.close();
    this.totals.dnsRestarts++;
  }

  // ---- chaos ----

  #chaos = async (stop: Event): Promise<void> => {
    this.bodies++;
    let nextRestart = performance.now() + 500;
    let restarts = 0;
    try {
      while (!this.stopping) {
        if (await stop.wait({ timeout: this.int(5, 30) })) break;
        const pick = this.rand();
        if (pick < 0.4) {
          const victims = this.pick([...this.clients.keys()], this.int(1, 3));
          for (const g of victims) {
            if (g.dead) continue;
            this.totals.kills++;
            await g.kill({ timeout: 2000 });
            if (!g.dead) this.fail(`${g.name} did not die within 2000 ms of its kill`);
          }
        } else if (pick < 0.8) {
          for (const c of this.pick([...this.clients.values()], this.int(1, 5))) {
            c.deadlineMs = this.int(1, 30);
          }
        } else if (performance.now() >= nextRestart) {
          // One piece at a time, in turn, so that even a short run restarts each of them.
          nextRestart = performance.now() + this.int(500, 2500);
          const what = restarts++ % 4;
          if (what === 0) await this.restartServer();
          else if (what === 1) await this.restartDns();
          else if (what === 2) {
            const victim = this.pick([...this.consumers], 1)[0];
            if (victim !== undefined) {
              this.totals.kills++;
              this.totals.consumerRestarts++;
              await victim.kill({ timeout: 2000 });
              if (!victim.dead) this.fail(`${victim.name} did not die within 2000 ms of its kill`);
              this.spawnConsumer();
            }
          } else {
            this.totals.acceptPauses++;
            this.server.stopAccepting();
            await sleep(this.int(5, 100));
            if (!this.server.closed) this.server.startAccepting();
          }
        }
      }
    } finally {
      this.bodies--;
      this.checkNotAbandoned();
    }
  };

  pick<T>(items: T[], n: number): T[] {
    const out: T[] = [];
    for (let i = 0; i < n && items.length > 0; i++) {
      out.push(items.splice(this.int(0, items.length - 1), 1)[0]);
    }
    return out;
  }

  startChaos(stop: Event): Greenlet<unknown> {
    const g = this.track(this.#chaos, stop);
    g.name = "chaos";
    return g;
  }
}

/** The echo handler: every byte received is sent back, until the client goes away. */
async function echo(sock: Socket): Promise<void> {
  try {
    for (let data; (data = await sock.recv()).length > 0;) await sock.sendall(data);
  } catch (error) {
    if (error instanceof SocketError) return; // reset, broken pipe, or closed by stop()
    throw error;
  }
}

/**
 * Runs the soak for `durationMs`, then shuts everything down and checks the outcome.
 *
 * @param options `durationMs`, `clients`, `onSample`, and the rest of {@linkcode SoakOptions}.
 * @returns The totals, samples and heap check.
 * @throws {SoakFailure} (as a rejection) If any check failed; its message lists them.
 * @throws {RangeError} (as a rejection) For a `durationMs` or `clients` that is not positive.
 */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { durationMs, clients = 200, onSample, sampleMs = 5000 } = options;
  if (!Number.isFinite(durationMs) || durationMs <= 0) {
    throw new RangeError(`'durationMs' must be a positive number: current value is ${durationMs}`);
  }
  if (!Number.isInteger(clients) || clients < 1) {
    throw new RangeError(`'clients' must be a positive integer: current value is ${clients}`);
  }
  const heapSampleMs = options.heapSampleMs ??
    Math.min(1000, Math.max(250, Math.floor(durationMs / 30)));
  const maxHeapGrowth = options.maxHeapGrowth ?? 0.1;
  const seed = options.seed ?? (Date.now() % 2147483647);
  const collect = options.gc === undefined ? exposeGc() : options.gc ?? undefined;
  const soak = new Soak(seed, options.maxPayload ?? 65536, options.thinkMs ?? 0);

  const hub = getHub();
  const savedStream = hub.exceptionStream;
  const savedResolver: HubResolver = hub.resolver;
  const alive0 = hub._alive;
  const onRejection = (event: PromiseRejectionEvent): void => {
    event.preventDefault();
    soak.fail(`unhandled rejection: ${describe(event.reason)}`);
  };
  const onError = (event: ErrorEvent): void => {
    event.preventDefault();
    soak.fail(`uncaught error: ${describe(event.error)}`);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  hub.exceptionStream = {
    write: (text) => soak.fail(`the hub reported: ${text.trimEnd()}`),
  };

  const samples: SoakSample[] = [];
  const heap: { at: number; bytes: number }[] = [];
  const stopChaos = new Event();
  let chaos: Greenlet<unknown> | undefined;
  let elapsed = 0;
  try {
    await soak.startDns();
    await soak.startServer(0);
    soak.serverUp.set();
    for (let i = 0; i < (options.consumers ?? 3); i++) soak.spawnConsumer();
    soak.t0 = performance.now();
    for (let i = 0; i < clients; i++) soak.spawnClient();
    chaos = soak.startChaos(stopChaos);

    // Sample until the end, or the first failure.
    let last = { at: 0, roundTrips: 0, lookups: 0, itemsGot: 0 };
    let nextSample = sampleMs;
    let nextHeap = heapSampleMs;
    while (soak.failures.length === 0) {
      const wake = Math.min(nextSample, nextHeap, durationMs);
      elapsed = performance.now() - soak.t0;
      if (elapsed < wake) await soak.failed.wait({ timeout: wake - elapsed });
      elapsed = performance.now() - soak.t0;
      soak.dns.asked.length = 0; // the fixture logs every name asked: keep that log empty
      const due = elapsed >= nextSample || elapsed >= durationMs;
      let heapUsed: number | undefined;
      if (collect !== undefined && (elapsed >= nextHeap || due)) {
        collect();
        heapUsed = Deno.memoryUsage().heapUsed;
        heap.push({ at: elapsed, bytes: heapUsed });
        while (nextHeap <= elapsed) nextHeap += heapSampleMs;
      }
      if (due) {
        const t = soak.totals;
        const secs = (elapsed - last.at) / 1000;
        const sample: SoakSample = {
          elapsedMs: elapsed,
          roundTripsPerSec: (t.roundTrips - last.roundTrips) / secs,
          lookupsPerSec: (t.lookups - last.lookups) / secs,
          queueItemsPerSec: (t.itemsGot - last.itemsGot) / secs,
          kills: t.kills,
          timeouts: t.timeouts,
          restarts: t.serverRestarts + t.dnsRestarts + t.consumerRestarts,
          clientsStarted: t.clientsStarted,
          heapUsed,
        };
        samples.push(sample);
        onSample?.(sample);
        last = { at: elapsed, roundTrips: t.roundTrips, lookups: t.lookups, itemsGot: t.itemsGot };
        while (nextSample <= elapsed) nextSample += sampleMs;
      }
      if (elapsed >= durationMs) break;
    }

    // Shutdown: chaos first, then the clients; then drain the queue.
    soak.stopping = true;
    await stopChaosGreenlet(soak, chaos, stopChaos);
    try {
      await killAll([...soak.clients.keys()], { timeout: 5000 });
    } catch (error) {
      soak.fail(`clients did not die when killed: ${describe(error)}`);
    }
    // Drain: every item put must be got before the consumers stop.
    if (!await soak.queue.join({ timeout: 10_000 })) {
      soak.fail(`the queue did not drain: ${soak.queue.unfinishedTasks} items unfinished`);
    }
    const lost = [...soak.outstanding.values()].filter((item) => item.put && item.gets === 0);
    if (lost.length > 0) {
      soak.fail(
        `${lost.length} queue item${lost.length === 1 ? " was" : "s were"} put but never got: ` +
          lost.slice(0, 10).map((item) => item.id).join(", "),
      );
    }
    if (soak.queue.qsize() !== 0) soak.fail(`${soak.queue.qsize()} items left in the queue`);
    const gotAll = soak.totals.itemsPut === soak.totals.itemsGot;
    if (!gotAll && lost.length === 0) {
      soak.fail(`${soak.totals.itemsPut} items put but ${soak.totals.itemsGot} got`);
    }
  } finally {
    // Teardown, whatever happened: nothing may be left open for the sanitizers.
    soak.stopping = true;
    await stopChaosGreenlet(soak, chaos, stopChaos);
    soak.queue.shutdown();
    try {
      await killAll([...soak.live], { timeout: 5000 });
    } catch (error) {
      soak.fail(`greenlets did not die when killed at teardown: ${describe(error)}`);
    }
    const server = soak.server;
    if (server !== undefined) {
      const stopped = await withTimeout<void, typeof TIMED_OUT>(
        5000,
        () => server.stop({ timeout: 0 }),
        {
          timeoutValue: TIMED_OUT,
        },
      );
      if (stopped === TIMED_OUT) soak.fail("the echo server did not stop within 5000 ms");
    }
    soak.resolver?.close();
    hub.resolver = savedResolver;
    await soak.dns?.close();
    // Client and consumer code must have left its `finally`; a few ms for stragglers.
    for (let i = 0; i < 100 && soak.bodies > 0; i++) await sleep(10);
    if (soak.bodies > 0) {
      soak.fail(`${soak.bodies} client or consumer functions still running after shutdown`);
    }
    await sleep(10); // let rejections left unhandled reach the listener
    const running = [...soak.live].filter((g) => !g.dead);
    if (running.length > 0) {
      soak.fail(
        `${running.length} greenlets still running after shutdown: ` +
          running.slice(0, 10).map((g) => g.name).join(", "),
      );
    }
    if (hub._alive !== alive0) {
      soak.fail(
        `the hub counts ${hub._alive - alive0} greenlets still alive after shutdown ` +
          `(the server's included)`,
      );
    }
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
    hub.exceptionStream = savedStream;
  }

  const heapCheck = checkHeap(heap, elapsed, collect !== undefined);
  if (heapCheck.checked && heapCheck.growth! > maxHeapGrowth) {
    soak.fail(
      `heap used after GC grew ${(heapCheck.growth! * 100).toFixed(1)}% from the first third ` +
        `of the run (median ${mib(heapCheck.firstThird!)}) to the last third ` +
        `(median ${mib(heapCheck.lastThird!)}); the limit is ${maxHeapGrowth * 100}%`,
    );
  }
  if (soak.failures.length > 0) throw new SoakFailure(soak.failures, seed, elapsed);
  return { durationMs: elapsed, seed, totals: soak.totals, samples, heap: heapCheck };
}

/**
 * Stops the chaos greenlet by asking it (so it never dies half-way through a restart), and
 * kills it only if it does not stop within 10 s.
 */
async function stopChaosGreenlet(
  soak: Soak,
  chaos: Greenlet<unknown> | undefined,
  stop: Event,
): Promise<void> {
  stop.set();
  if (chaos === undefined || chaos.dead) return;
  if (!await chaos.join({ timeout: 10_000 })) {
    soak.fail("the chaos greenlet did not stop within 10000 ms of being asked");
    await chaos.kill({ timeout: 1000 });
  }
}

/** Compares the medians of the heap samples in the first and last thirds of the run. */
function checkHeap(
  heap: { at: number; bytes: number }[],
  elapsed: number,
  haveGc: boolean,
): SoakHeapCheck {
  if (!haveGc) {
    return { checked: false, note: "gc() is not available: heap growth was not checked" };
  }
  const first = heap.filter((s) => s.at < elapsed / 3).map((s) => s.bytes);
  const lastThird = heap.filter((s) => s.at >= (2 * elapsed) / 3).map((s) => s.bytes);
  if (first.length < 3 || lastThird.length < 3) {
    return {
      checked: false,
      note: `too few heap samples (${first.length} and ${lastThird.length}) to compare thirds`,
    };
  }
  const a = median(first);
  const b = median(lastThird);
  return { checked: true, firstThird: a, lastThird: b, growth: b / a - 1 };
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Renders a sample as one line, as the runnable script prints it. */
export function formatSample(s: SoakSample): string {
  const n = (x: number) => Math.round(x).toString().padStart(6);
  return `[${(s.elapsedMs / 1000).toFixed(1).padStart(6)} s] round trips/s ${
    n(s.roundTripsPerSec)
  }` +
    `  lookups/s ${n(s.lookupsPerSec)}  queue items/s ${n(s.queueItemsPerSec)}` +
    `  kills ${n(s.kills)}  timeouts ${n(s.timeouts)}  restarts ${
      s.restarts.toString().padStart(4)
    }` +
    `  clients ${n(s.clientsStarted)}  heap after GC ${
      s.heapUsed === undefined ? "n/a" : mib(s.heapUsed)
    }`;
}

function argValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

if (import.meta.main) {
  const args = Deno.args.filter((a) => a !== "--");
  const num = (name: string, fallback: number): number => {
    const v = argValue(args, name);
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      console.error(`--${name} must be a positive number: current value is ${v}`);
      Deno.exit(2);
    }
    return n;
  };
  const durationMs = num("duration", 60) * 1000;
  const clients = num("clients", 200);
  const sampleMs = num("sample", 5) * 1000;
  const seedArg = argValue(args, "seed");
  console.log(
    `soak: ${durationMs / 1000} s, ${clients} clients, a sample every ${sampleMs / 1000} s` +
      (typeof gc === "function" ? "" : " (no --expose-gc: gc() made at run time)"),
  );
  try {
    const result = await runSoak({
      durationMs,
      clients,
      sampleMs,
      seed: seedArg === undefined ? undefined : Number(seedArg),
      onSample: (s) => console.log(formatSample(s)),
    });
    const t = result.totals;
    const secs = result.durationMs / 1000;
    console.log(
      `totals: ${t.roundTrips} round trips (${(t.roundTrips / secs).toFixed(0)}/s, ` +
        `${mib(t.bytesEchoed)} echoed), ${t.lookups} lookups (${
          (t.lookups / secs).toFixed(0)
        }/s), ` +
        `${t.itemsGot} queue items (${(t.itemsGot / secs).toFixed(0)}/s), ` +
        `${t.clientsStarted} clients, ${t.kills} kills, ${t.timeouts} timeouts`,
    );
    console.log(
      `abandoned: ${t.roundTripsAbandoned} round trips, ${t.lookupsAbandoned} lookups, ` +
        `${t.putsInterrupted} puts; ${t.connectsRefused} connects refused during restarts; ` +
        `restarts: ${t.serverRestarts} echo server (${t.serverSamePort} on the same port, ` +
        `${t.portBusy} of them bound only on a retry, ${t.portInUse} moved as the port ` +
        `stayed in use), ` +
        `${t.dnsRestarts} DNS, ${t.consumerRestarts} consumer; ${t.acceptPauses} accept pauses`,
    );
    const h = result.heap;
    console.log(
      h.checked
        ? `heap after GC: first third ${mib(h.firstThird!)}, last third ${mib(h.lastThird!)} ` +
          `(${h.growth! >= 0 ? "+" : ""}${(h.growth! * 100).toFixed(1)}%, limit +10%)`
        : `heap after GC: not checked (${h.note})`,
    );
    console.log(`PASS (seed ${result.seed})`);
  } catch (error) {
    console.log(`FAIL: ${error instanceof SoakFailure ? error.message : describe(error)}`);
    Deno.exit(1);
  }
}
