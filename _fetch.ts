/**
 * Internal: a cooperative `fetch`, installed by `monkey.patchFetch()` (declared here as
 * `_patches`).
 *
 * Inside a greenlet the request runs with the greenlet's `currentSignal()` combined with the
 * caller's signal (through a controller of its own, unlinked once the body is read), and the request and every read of its response body (`text()`, `json()`,
 * `arrayBuffer()`, `bytes()`, `blob()`, `formData()`, reads of `body`) are blocking calls: a
 * kill or Timeout rejects the pending one with the exception, once, and aborts the request,
 * which closes its connection. Outside any greenlet `fetch` is Deno's own.
 *
 * @module
 */

import { _blocking, _combine, _cooperative, type _Patch } from "./_platform.ts";
import { currentSignal } from "./greenlet.ts";

const BODY_METHODS = ["arrayBuffer", "blob", "bytes", "formData", "json", "text"] as const;

// Each request gets its own AbortController, linked to the greenlet's `currentSignal()` by one
// listener per signal: passing the long-lived signal itself would hang a dependent signal on
// it for every request of the greenlet (Deno's Request follows its init signal).
const linked = new WeakMap<AbortSignal, Set<AbortController>>();
/** The link of each response still being fetched or read: unlinked once its body is done. */
const links = new WeakMap<Response, Link>();

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

const bodyGetter = Object.getOwnPropertyDescriptor(Response.prototype, "body")!.get!;
const bodies = new WeakMap<Response, ReadableStream<Uint8Array<ArrayBuffer>> | null>();

/**
 * The prototype of the responses of a patched `fetch`: `Response.prototype` with cooperative
 * body readers in front. One shared object, so every such response has the same shape
 * (`instanceof Response` and `constructor` are unchanged).
 */
const COOPERATIVE: Response = Object.create(Response.prototype);
for (const name of BODY_METHODS) {
  const method = (Response.prototype as unknown as Record<string, BodyMethod>)[name];
  Object.defineProperty(COOPERATIVE, name, {
    configurable: true,
    writable: true,
    value: function (this: Response): Promise<unknown> {
      const l = links.get(this);
      if (l !== undefined) {
        links.delete(this);
        const p = _cooperative()
          ? _blocking(() => method.call(this), () => l.ctl.abort())
          : method.call(this);
        p.then(() => unlink(l), () => unlink(l));
        return p;
      }
      if (!_cooperative()) return method.call(this);
      return _blocking(() => method.call(this));
    },
  });
}
Object.defineProperty(COOPERATIVE, "clone", {
  configurable: true,
  writable: true,
  value: function (this: Response): Response {
    const copy = wrapResponse(Response.prototype.clone.call(this));
    const l = links.get(this);
    if (l !== undefined) links.set(copy, l);
    return copy;
  },
});
Object.defineProperty(COOPERATIVE, "body", {
  configurable: true,
  get(this: Response): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    let body = bodies.get(this);
    if (body === undefined) {
      const inner = bodyGetter.call(this) as ReadableStream<Uint8Array<ArrayBuffer>> | null;
      const l = links.get(this);
      links.delete(this);
      if (inner === null) unlink(l);
      body = inner === null ? null : cooperativeBody(inner, l);
      bodies.set(this, body);
    }
    return body;
  },
});

/** Makes the body reads of `res` blocking calls of whichever greenlet reads. */
function wrapResponse(res: Response): Response {
  Object.setPrototypeOf(res, COOPERATIVE);
  return res;
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
          return wrapResponse(res);
        }, (error) => {
          unlink(l);
          throw error;
        }),
      () => l.ctl.abort(),
    );
  } as typeof globalThis.fetch;
}

/** @ignore The global this module implements, for `monkey.patchFetch()`. */
export const _patches: readonly _Patch[] = [
  { area: "fetch", target: globalThis, name: "fetch", make: makeFetch },
];
