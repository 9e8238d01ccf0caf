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
import { _begin, _labelWaits, type _Waiter } from "./hub.ts";

// Each request gets its own AbortController, linked to the greenlet's `currentSignal()` by one
// listener per signal: passing the long-lived signal itself would hang a dependent signal on
// it for every request of the greenlet (Deno's Request follows its init signal), and a read
// of the body in another greenlet could not abort that one request.
/** The requests linked to each scope signal, not yet unlinked. */
const linked = new WeakMap<AbortSignal, Ring>();
/** The link of each response of a patched fetch whose body is not read yet. */
const links = new WeakMap<Response, Link>();
/** The body stream handed out for each response (cooperative or Deno's own). */
const bodies = new WeakMap<Response, ReadableStream<Uint8Array<ArrayBuffer>> | null>();

/**
 * A node of a circular list (no hashing, no allocation to add or remove): the head of a
 * scope's list of requests, or a request itself (pointing at itself when in no list).
 */
class Ring {
  prev: Ring = this;
  next: Ring = this;
}

/** A request's own controller, in its scope's list until its body is read. */
class Link extends Ring {
  readonly ctl: AbortController = new AbortController();
  /** What the request is, for run-info: `fetch https://example.com/`. */
  what = "fetch";
}

function link(scope: AbortSignal): Link {
  const l = new Link();
  if (scope.aborted) {
    l.ctl.abort(scope.reason);
    return l;
  }
  let head = linked.get(scope);
  if (head === undefined) {
    const ring = head = new Ring();
    linked.set(scope, ring);
    scope.addEventListener("abort", () => abortAll(ring, scope.reason), { once: true });
  }
  const last = head.prev;
  l.prev = last;
  l.next = head;
  last.next = l;
  head.prev = l;
  return l;
}

/** Aborts (and unlinks) every request in the list of `head`. */
function abortAll(head: Ring, reason: unknown): void {
  let node = head.next;
  head.prev = head.next = head;
  while (node !== head) {
    const next = node.next;
    node.prev = node.next = node;
    (node as Link).ctl.abort(reason);
    node = next;
  }
}

function unlink(l: Link | undefined): void {
  if (l === undefined || l.next === l) return;
  l.prev.next = l.next;
  l.next.prev = l.prev;
  l.prev = l.next = l;
}

function noop(): void {}

/** `_onCancel` of a request's blocking calls: the kill or Timeout aborts the request. */
function abortOwner<T>(w: _Waiter<T, Link>): void {
  w._owner.ctl.abort();
}
_labelWaits(abortOwner, (w) => w._owner.what);

/**
 * The end of a blocking body read `p` (started after `begin(l)` returned `w`), in one `.then`:
 * when `p` settles the request of `l` is unlinked from its scope and `w` gets the outcome.
 */
function settle<T>(w: _Waiter<T, Link>, p: Promise<T>, l: Link | undefined): Promise<T> {
  p.then((value) => {
    unlink(l);
    w._wake(value);
  }, (error) => {
    unlink(l);
    w._onCancel = undefined;
    w._fail(error);
  });
  return w.promise;
}

/**
 * `_blocking`'s start, without closures: begins a blocking call of the current flow whose
 * interruption aborts the request of `l`. An exception already pending is returned as a
 * rejected promise, and that request is aborted and unlinked all the same.
 */
function begin<T>(l: Link | undefined): _Waiter<T, Link> | Promise<never> {
  const w = _begin<T, Link>();
  if (w instanceof Promise) {
    // An exception was pending: the request is interrupted all the same.
    if (l !== undefined) {
      l.ctl.abort();
      unlink(l);
    }
    return w;
  }
  if (l !== undefined) {
    w._owner = l;
    w._onCancel = abortOwner;
  }
  w._arm(undefined, noop);
  return w;
}

type BodyMethod = (this: Response) => Promise<unknown>;

/** `Response.prototype[name]`, a blocking call inside a greenlet. */
function makeBodyMethod(original: BodyMethod): BodyMethod {
  return function (this: Response): Promise<unknown> {
    if (!_cooperative()) return original.call(this);
    const l = links.get(this);
    if (l !== undefined) links.delete(this);
    const w = begin<unknown>(l);
    if (w instanceof Promise) return w;
    let p: Promise<unknown>;
    try {
      p = original.call(this);
    } catch (error) {
      unlink(l);
      w._onCancel = undefined;
      w._fail(error);
      return w.promise;
    }
    return settle(w, p, l);
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
    const w = _begin<Response, Link>();
    if (w instanceof Promise) return w; // an exception was pending: no request at all
    const l = link(currentSignal());
    l.what = `fetch ${
      typeof input === "string" ? input : input instanceof URL ? input.href : input.url
    }`;
    w._owner = l;
    w._onCancel = abortOwner;
    w._arm(undefined, noop);
    const theirs = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    const signal = _combine(l.ctl.signal, theirs);
    let p: Promise<Response>;
    try {
      p = original(input, init === undefined ? { signal } : { ...init, signal });
    } catch (error) {
      unlink(l);
      w._onCancel = undefined;
      w._fail(error);
      return w.promise;
    }
    p.then((res) => {
      links.set(res, l);
      w._wake(res);
    }, (error) => {
      unlink(l);
      w._onCancel = undefined;
      w._fail(error);
    });
    return w.promise;
  } as typeof globalThis.fetch;
}

const BODY_METHODS = ["arrayBuffer", "blob", "bytes", "formData", "json", "text"] as const;

/**
 * `Response.prototype`, read when the patches are installed: the first read of the global
 * `Response` loads Deno's fetch implementation (~10 ms of start-up).
 */
const responsePrototype = (): object => Response.prototype;

/** @ignore The globals this module implements, for `monkey.patchFetch()`. */
export const _patches: readonly _Patch[] = [
  { area: "fetch", target: globalThis, name: "fetch", make: makeFetch },
  ...BODY_METHODS.map((name): _Patch => ({
    area: "fetch",
    target: responsePrototype,
    name,
    make: makeBodyMethod,
  })),
  { area: "fetch", target: responsePrototype, name: "clone", make: makeClone },
  { area: "fetch", target: responsePrototype, name: "body", getter: true, make: makeBodyGetter },
];
