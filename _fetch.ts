/**
 * Internal: a cooperative `fetch`, installed by `monkey.patchFetch()` (declared here as
 * `_patches`).
 *
 * Inside a greenlet the request runs with the greenlet's `currentSignal()` combined with the
 * caller's signal, and the request and every read of its response body (`text()`, `json()`,
 * `arrayBuffer()`, `bytes()`, `blob()`, `formData()`, reads of `body`) are blocking calls: a
 * kill or Timeout rejects the pending one with the exception, once, and aborts the request,
 * which closes its connection. Outside any greenlet `fetch` is Deno's own.
 *
 * @module
 */

import { _blocking, _combine, _cooperative, type _Patch } from "./_platform.ts";
import { currentSignal } from "./greenlet.ts";

const BODY_METHODS = ["arrayBuffer", "blob", "bytes", "formData", "json", "text"] as const;

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
      if (!_cooperative()) return method.call(this);
      return _blocking(() => method.call(this));
    },
  });
}
Object.defineProperty(COOPERATIVE, "clone", {
  configurable: true,
  writable: true,
  value: function (this: Response): Response {
    return wrapResponse(Response.prototype.clone.call(this));
  },
});
Object.defineProperty(COOPERATIVE, "body", {
  configurable: true,
  get(this: Response): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    let body = bodies.get(this);
    if (body === undefined) {
      const inner = bodyGetter.call(this) as ReadableStream<Uint8Array<ArrayBuffer>> | null;
      body = inner === null ? null : cooperativeBody(inner);
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
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let reader: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>> | undefined;
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller): Promise<void> {
      reader ??= inner.getReader();
      const r = reader;
      const { done, value } = _cooperative() ? await _blocking(() => r.read()) : await r.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason): Promise<void> {
      return reader === undefined ? inner.cancel(reason) : reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function makeFetch(original: typeof globalThis.fetch): typeof globalThis.fetch {
  return function fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    if (!_cooperative()) return original(input, init);
    const own = currentSignal();
    const theirs = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    const options: RequestInit = { ...init, signal: _combine(own, theirs) };
    return _blocking(() => original(input, options).then(wrapResponse));
  } as typeof globalThis.fetch;
}

/** @ignore The global this module implements, for `monkey.patchFetch()`. */
export const _patches: readonly _Patch[] = [
  { area: "fetch", target: globalThis, name: "fetch", make: makeFetch },
];
