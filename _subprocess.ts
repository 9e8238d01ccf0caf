/**
 * Internal: a cooperative `Deno.Command`, installed by `monkey.patchSubprocess()` (declared
 * here as `_patches`).
 *
 * A child started by `spawn()` or `output()` inside a greenlet is tied to that greenlet: when
 * it is killed or a Timeout of its fires, the child gets SIGTERM, then SIGKILL after
 * `killGrace` milliseconds if it is still running. `output()` and the child's `status` and
 * `output()` are blocking calls that settle only once the child has exited, so by the time
 * `kill()` returns, the child is gone. Outside any greenlet `Deno.Command` behaves as Deno's.
 *
 * @module
 */

import { _begin } from "./hub.ts";
import { _cooperative, _denoNamespace, type _Patch, type _PatchOptions } from "./_platform.ts";
import { currentSignal } from "./greenlet.ts";

function noop(): void {}

/** Terminates `child` when `signal` aborts: SIGTERM, then SIGKILL after `grace` ms. */
function tie(child: Deno.ChildProcess, signal: AbortSignal, grace: number): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const send = (sig: Deno.Signal): void => {
    try {
      child.kill(sig);
    } catch {
      // Already exited.
    }
  };
  const onAbort = (): void => {
    send("SIGTERM");
    timer = setTimeout(send, grace, "SIGKILL");
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  child.status.then(() => {
    signal.removeEventListener("abort", onAbort);
    if (timer !== undefined) clearTimeout(timer);
  }, noop);
}

/**
 * Waits for `work` as a blocking call that is never cut short: an interruption is remembered
 * and rethrown once `work` has settled (the child has exited), and it is delivered once.
 */
function untilExit<T>(work: Promise<T>): Promise<T> {
  const w = _begin<T>();
  if (w instanceof Promise) return w;
  let caught: { error: unknown } | undefined;
  const done = Promise.withResolvers<T>();
  // A waiter that the kill fails; the exception is held until the child exits.
  w._arm(undefined, noop);
  w.promise.then(noop, (error) => caught = { error });
  work.then(
    (value) => {
      w._wake(value);
      if (caught !== undefined) done.reject(caught.error);
      else done.resolve(value);
    },
    (error) => {
      w._fail(error);
      done.reject(caught !== undefined ? caught.error : error);
    },
  );
  return done.promise;
}

function makeCommand(original: typeof Deno.Command, options: _PatchOptions): typeof Deno.Command {
  const grace = options.killGrace;
  const wrapChild = (child: Deno.ChildProcess): Deno.ChildProcess => {
    tie(child, currentSignal(), grace);
    const status = child.status;
    const output = child.output;
    Object.defineProperty(child, "status", {
      configurable: true,
      get: (): Promise<Deno.CommandStatus> => _cooperative() ? untilExit(status) : status,
    });
    Object.defineProperty(child, "output", {
      configurable: true,
      writable: true,
      value: (): Promise<Deno.CommandOutput> => {
        const p = output.call(child);
        return _cooperative() ? untilExit(p) : p;
      },
    });
    return child;
  };
  class Command extends original {
    #options: Deno.CommandOptions | undefined;
    #command: string | URL;
    constructor(command: string | URL, options?: Deno.CommandOptions) {
      super(command, options);
      this.#command = command;
      this.#options = options;
    }
    override spawn(): Deno.ChildProcess {
      const child = super.spawn();
      return _cooperative() ? wrapChild(child) : child;
    }
    override output(): Promise<Deno.CommandOutput> {
      if (!_cooperative() || this.#options?.stdin === "piped") return super.output();
      const o = this.#options ?? {};
      let child: Deno.ChildProcess;
      try {
        child = new original(this.#command, {
          ...o,
          stdin: o.stdin ?? "null",
          stdout: o.stdout ?? "piped",
          stderr: o.stderr ?? "piped",
        }).spawn();
      } catch (error) {
        return Promise.reject(error);
      }
      return wrapChild(child).output();
    }
  }
  Object.defineProperty(Command, "name", { value: original.name });
  return Command;
}

/** @ignore The global this module implements, for `monkey.patchSubprocess()`. */
export const _patches: readonly _Patch[] = [
  { area: "subprocess", target: _denoNamespace, name: "Command", make: makeCommand },
];
