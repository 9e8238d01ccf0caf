/**
 * Internal: a cooperative `fetch`, installed by `monkey.patchFetch()` (declared here as
 * `_patches`).
 *
 * Inside a greenlet the request runs with the greenlet's `currentSignal()` combined with the
 * caller's signal (through a controller of its own, unlinked once the body is read), and the
 * request and every read of a response body (`text()`, `json()`, `arrayBuffer()`, `bytes()`,
 * `blob()`, `formData()`, reads of `body`) are blocking calls: a kill or Timeout rejects the
 * pending one with the exception, once, and aborts the request, which closes its connection.
 * The body readers are patched on `Response.prototype`, so responses keep their prototype.
 * Outside any greenlet all of them are Deno's own.
 *
 * @module
 */

import { _blocking, _combine, _cooperative, type _Patch } from "./_platform.ts";
import { currentSignal } from "./greenlet.ts";

// Each request gets its own AbortController, linked to the greenlet's `currentSignal()` by one
// listener per signal: passing the long-lived signal itself would hang a dependent signal on
// it for every request of the greenlet (Deno's Request follows its init signal).
const linked = new WeakMap<AbortSignal, Set<AbortController>>();
/** The link of each response of a patched fetch whose body is not read yet. */
const links = new WeakMap<Response, Link>();
/** The body stream handed out for each response (cooperative or Deno's own). */
const bodies = new WeakMap<Response, ReadableStream<Uint8Array<ArrayBuffer>> | null>();

interface Link {
  scope: AbortSignal;
  ctl: AbortController;
}

function link(scope: AbortSignal): Link {
  const ctl = new AbortController();
  if (scope.aborted) {
    ctl.abort(scope.reason);
    return { scope, ctl };
  }
  let set = linked.get(scope);
  if (set === undefined) {
    const ctls = set = new Set();
    linked.set(scope, ctls);
    scope.addEventListener("abort", () => {
      for (const c of ctls) c.abort(scope.reason);
      ctls.clear();
    }, { once: true });
  }
  set.add(ctl);
  return { scope, ctl };
}

function unlink(l: Link | undefined): void {
  if (l !== undefined) linked.get(l.scope)?.delete(l.ctl);
}

type BodyMethod = (this: Response) => Promise<unknown>;

/** `Response.prototype[name]`, a blocking call inside a greenlet. */
function makeBodyMethod(original: BodyMethod): BodyMethod {
  return function (this: Response): Promise<unknown> {
    if (!_cooperative()) return original.call(this);
    const l = links.get(this);
    if (l === undefined) return _blocking(() => original.call(this));
    links.delete(this);
    const p = _blocking(() => original.call(this), () => l.ctl.abort());
    p.then(() => unlink(l), () => unlink(l));
    return p;
  };
}

function makeClone(original: (this: Response) => Response): (this: Response) => Response {
  return function (this: Response): Response {
    const copy = original.call(this);
    const l = links.get(this);
    if (l !== undefined) links.set(copy, l);
    return copy;
  };
}

/** The `body` getter: asked for inside a greenlet first, a stream of blocking reads. */
function makeBodyGetter(
  original: (this: Response) => ReadableStream<Uint8Array<ArrayBuffer>> | null,
): (this: Response) => ReadableStream<Uint8Array<ArrayBuffer>> | null {
  return function (this: Response): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    let body = bodies.get(this);
    if (body !== undefined) return body;
    const inner = original.call(this);
    if (inner === null || !_cooperative()) {
      body = inner;
    } else {
      const l = links.get(this);
      links.delete(this);
      body = cooperativeBody(inner, l);
    }
    bodies.set(this, body);
    return body;
  };
}

/** A stream over `inner` whose every read is a blocking call of the reading greenlet. */
function cooperativeBody(
  inner: ReadableStream<Uint8Array<ArrayBuffer>>,
  l: Link | undefined,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let reader: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>> | undefined;
  const abort = l === undefined ? undefined : (): void => l.ctl.abort();
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller): Promise<void> {
      reader ??= inner.getReader();
      const r = reader;
      let chunk: ReadableStreamReadResult<Uint8Array<ArrayBuffer>>;
      try {
        chunk = _cooperative() ? await _blocking(() => r.read(), abort) : await r.read();
      } catch (error) {
        unlink(l);
        throw error;
      }
      if (chunk.done) {
        unlink(l);
        controller.close();
      } else controller.enqueue(chunk.value);
    },
    cancel(reason): Promise<void> {
      unlink(l);
      return reader === undefined ? inner.cancel(reason) : reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function makeFetch(original: typeof globalThis.fetch): typeof globalThis.fetch {
  return function fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    if (!_cooperative()) return original(input, init);
    const l = link(currentSignal());
    const theirs = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    const options: RequestInit = { ...init, signal: _combine(l.ctl.signal, theirs) };
    return _blocking(
      () =>
        original(input, options).then((res) => {
          links.set(res, l);
          return res;
        }, (error) => {
          unlink(l);
          throw error;
        }),
      () => l.ctl.abort(),
    );
  } as typeof globalThis.fetch;
}

const BODY_METHODS = ["arrayBuffer", "blob", "bytes", "formData", "json", "text"] as const;

/** @ignore The globals this module implements, for `monkey.patchFetch()`. */
export const _patches: readonly _Patch[] = [
  { area: "fetch", target: globalThis, name: "fetch", make: makeFetch },
  ...BODY_METHODS.map((name): _Patch => ({
    area: "fetch",
    target: Response.prototype,
    name,
    make: makeBodyMethod,
  })),
  { area: "fetch", target: Response.prototype, name: "clone", make: makeClone },
  { area: "fetch", target: Response.prototype, name: "body", getter: true, make: makeBodyGetter },
];
