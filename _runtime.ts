/**
 * Internal: what the library needs from the runtime, for Deno, Node (22 and later) and Bun.
 * Nothing here touches a `Deno` global unless there is one, so every module imports anywhere.
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
const D: any = (globalThis as any).Deno;
// Node's and Bun's `process`, read only where there is no `Deno`: in Deno the first read of
// the global `process` sets up its Node compatibility layer, about 20 ms of start-up, and
// every function below has a `Deno` way.
// deno-lint-ignore no-explicit-any
const P: any = D === undefined ? (globalThis as any).process : undefined;

/** @ignore Whether the library runs on Deno (the networking modules need it). */
export const _isDeno: boolean = D !== undefined && typeof D.connect === "function";

/** The runtime's name and version, for messages. */
function runtimeName(): string {
  // deno-lint-ignore no-explicit-any
  const bun = (globalThis as any).Bun;
  if (bun !== undefined) return `Bun ${bun.version}`;
  if (D !== undefined) return `Deno ${D.version?.deno ?? ""}`.trim();
  if (P?.versions?.node !== undefined) return `Node ${P.versions.node}`;
  return "this runtime";
}

/**
 * @ignore Throws an error that names the runtime: `what` (a module or function) needs Deno.
 */
export function _needsDeno(what: string): never {
  throw new Error(
    `${what} needs Deno: it is not available on ${runtimeName()} yet (the core, greenlets, ` +
      `timeouts, events, queues, locks, pools and local storage are)`,
  );
}

type Timer = ReturnType<typeof setTimeout>;

/** @ignore Lets a timer not keep the process alive. */
export function _unrefTimer(timer: Timer): void {
  const t = timer as unknown as { unref?: () => void };
  if (typeof t.unref === "function") t.unref();
  else D?.unrefTimer(timer);
}

/** @ignore Lets a timer keep the process alive again. */
export function _refTimer(timer: Timer): void {
  const t = timer as unknown as { ref?: () => void };
  if (typeof t.ref === "function") t.ref();
  else D?.refTimer(timer);
}

type Inspect = (value: unknown, options: { depth: number; breakLength: number }) => string;

let inspector: Inspect | undefined;

/** @ignore `value` rendered as the runtime's console renders it (for reports and names). */
export function _inspect(value: unknown, depth = 2): string {
  inspector ??= D !== undefined
    ? (v, o) => D.inspect(v, { ...o, colors: false })
    : P?.getBuiltinModule?.("node:util")?.inspect ?? ((v) => String(v));
  try {
    return inspector!(value, { depth, breakLength: Infinity });
  } catch {
    return Object.prototype.toString.call(value);
  }
}

const encoder = new TextEncoder();

/** @ignore Writes `text` to standard error, synchronously where the runtime allows. */
export function _writeStderr(text: string): void {
  if (D !== undefined) {
    let bytes = encoder.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(D.stderr.writeSync(bytes));
  } else if (P?.stderr !== undefined) {
    P.stderr.write(text);
  } else {
    console.error(text.endsWith("\n") ? text.slice(0, -1) : text);
  }
}

/**
 * @ignore Calls `drained()` each time the event loop runs dry (Deno's `beforeunload`, Node's
 * and Bun's `beforeExit`); when it returns `true` it has scheduled more work and the process
 * goes on.
 */
export function _onLoopDrained(drained: () => boolean): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (D !== undefined && typeof g.addEventListener === "function") {
    g.addEventListener("beforeunload", (event: Event) => {
      if (drained()) event.preventDefault();
    });
  } else if (typeof P?.on === "function") {
    P.on("beforeExit", () => void drained());
  }
}

/** @ignore Calls `listener` each time the process receives `signal` ("SIGUSR1", ...). */
export function _addSignalListener(signal: string, listener: () => void): void {
  if (D !== undefined) D.addSignalListener(signal, listener);
  else if (typeof P?.on === "function") P.on(signal, listener);
  else _needsDeno(`signalHandler("${signal}")`);
}

/** @ignore Undoes {@linkcode _addSignalListener}. */
export function _removeSignalListener(signal: string, listener: () => void): void {
  if (D !== undefined) D.removeSignalListener(signal, listener);
  else P?.off?.(signal, listener);
}
