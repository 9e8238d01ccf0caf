/**
 * Internal: the switch marks that the blocked-loop monitor (`monitor.ts`) and
 * `assertSwitches` (`util.ts`) read. Every hook in `core.ts`, `hub.ts` and `greenlet.ts` is
 * `if (_marking) _mark(kind, flow)`: while neither tool is active nothing else runs.
 *
 * With a monitor attached, each mark is appended to a small log in shared memory, in program
 * order: `[kind, ident + 1]` pairs (`0` for code outside any greenlet), and the count of marks
 * is the heartbeat the monitor thread watches.
 *
 * @module
 */

/** @ignore Whether marks are being taken (a monitor or an `assertSwitches` is active). */
export let _marking = false;

/** @ignore The loop began draining its run queue. */
export const _DRAIN_START = 1;
/** @ignore The loop finished a drain (microtasks, that is woken greenlets, run next). */
export const _DRAIN_END = 2;
/** @ignore A greenlet's first step begins, synchronously, inside the drain. */
export const _START = 3;
/** @ignore That first step returned to the drain. */
export const _START_END = 4;
/** @ignore A flow was woken: its code runs next as a promise continuation, in wake order. */
export const _WAKE = 5;
/** @ignore A flow began a blocking call or died: its current step ends. */
export const _YIELD = 6;
/** @ignore The monitor's heartbeat timer fired (the loop is idle or cycling normally). */
export const _TICK = 7;

/** @ignore Index of the mark count (the heartbeat) in the shared `Int32Array`. */
export const _COUNT = 0;
/** @ignore Index of the block serial the monitor thread sets when it reported a block. */
export const _FLAG = 1;
/** @ignore Index of the first log entry. */
export const _LOG = 8;
/** @ignore Entries in the log (a power of two). */
export const _LOG_SIZE = 1024;
/** @ignore Bytes of shared memory: the ints, then two float64s. */
export const _SHARED_BYTES = (_LOG + 2 * _LOG_SIZE) * 4 + 16;
/** @ignore Index, in a `Float64Array` over the same memory, of the block's start. */
export const _START_AT = (_LOG + 2 * _LOG_SIZE) / 2;
/**
 * @ignore Index, in that `Float64Array`, of the `performance.now()` of the last drain start or
 * heartbeat (a clock read costs about 200 ns on Deno: too much for every mark).
 */
export const _LAST_AT = _START_AT + 1;

/** @ignore What a monitor attaches (see {@linkcode _attach}). */
export interface _Sink {
  /** The shared memory to log into. */
  shared: Int32Array;
  /** The same memory as float64s. */
  times: Float64Array;
  /** A greenlet starts (to tell the monitor thread its name when it has a custom one). */
  onStart(flow: unknown): void;
  /** The first mark after the monitor thread flagged a block: the block is over. */
  onFlag(kind: number, flow: unknown): void;
}

/** @ignore Something told of every mark with its time (`assertSwitches`). */
export type _Tracer = (kind: number, flow: unknown) => void;

let sink: _Sink | undefined;
let count = 0;
const tracers: _Tracer[] = [];

function refresh(): void {
  _marking = sink !== undefined || tracers.length !== 0;
}

/** @ignore Attaches a monitor's shared log (one at a time). */
export function _attach(s: _Sink): void {
  sink = s;
  count = 0;
  refresh();
}

/** @ignore Detaches it. */
export function _detach(s: _Sink): void {
  if (sink === s) sink = undefined;
  refresh();
}

/** @ignore Adds a tracer; returns the function that removes it. */
export function _addTracer(t: _Tracer): () => void {
  tracers.push(t);
  refresh();
  return () => {
    const i = tracers.indexOf(t);
    if (i >= 0) tracers.splice(i, 1);
    refresh();
  };
}

/** @ignore The greenlet's ident plus one, or 0 for any other flow. */
export function _identOf(flow: unknown): number {
  if (flow === undefined || flow === null) return 0;
  const id = (flow as { minimalIdent?: number }).minimalIdent;
  return typeof id === "number" ? id + 1 : 0;
}

/** @ignore Records a switch. Never throws. */
export function _mark(kind: number, flow: unknown): void {
  const s = sink;
  if (s !== undefined) {
    const a = s.shared;
    const n = count;
    const i = _LOG + ((n & (_LOG_SIZE - 1)) << 1);
    a[i] = kind;
    a[i + 1] = _identOf(flow);
    count = (n + 1) & 0x3fffffff;
    a[_COUNT] = count; // a plain store: the monitor thread reads it only to see it move
    if (kind === _DRAIN_START || kind === _TICK) s.times[_LAST_AT] = performance.now();
    if (kind === _START) s.onStart(flow);
    if (a[_FLAG] !== 0) s.onFlag(kind, flow);
  }
  for (let i = 0; i < tracers.length; i++) tracers[i](kind, flow);
}
