/**
 * The socket error classes, shared by `resolver.ts`, `socket.ts` and `server.ts` (and
 * re-exported by `socket.ts`, which is where users import them from). Everything here is
 * public: `socket.ts` re-exports this module with `export *`, the form `deno doc` follows
 * into the root's `socket` namespace.
 *
 * @module
 */

/** Options of the socket error constructors. */
export interface SocketErrorOptions {
  /** The underlying error (usually a `Deno.errors.*` instance). */
  cause?: unknown;
}

/**
 * An operational socket failure: connection refused or reset, writing to a closed socket, an
 * address in use, ... (gevent: `socket.error`, that is `OSError`). `code` is the POSIX-style
 * name (`ECONNREFUSED`, `ECONNRESET`, `EPIPE`, `EBADF`, ...) and `cause` the Deno error.
 * These are expected conditions of network code, not programming errors: catch them.
 *
 * @example Catching a refused connection
 * ```ts
 * import { createConnection, listen, SocketError } from "@x/gevent/socket";
 * import assert from "node:assert/strict";
 *
 * const server = listen(["127.0.0.1", 0]);
 * const port = server.getsockname()[1];
 * server.close(); // nobody listens on that port any more
 * const err = await createConnection(["127.0.0.1", port]).catch((e) => e);
 * assert.ok(err instanceof SocketError);
 * assert.equal(err.code, "ECONNREFUSED");
 * ```
 */
export class SocketError extends Error {
  /** The POSIX-style error name, such as `ECONNREFUSED`. */
  readonly code: string;

  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param code The POSIX-style error name.
   * @param options `cause`.
   */
  constructor(message: string, code: string, options?: SocketErrorOptions) {
    super(
      message,
      options !== undefined && "cause" in options ? { cause: options.cause } : undefined,
    );
    this.name = "SocketError";
    this.code = code;
  }
}

/**
 * A name-resolution failure (gevent: `socket.gaierror`). `code` is one of `EAI_NONAME` (the
 * name does not exist, has no address of the wanted family, or is empty: Deno reports the
 * first two alike), `EAI_AGAIN` (no name server answered in time), `EAI_FAMILY` (an IP
 * literal of the other family) or `EAI_FAIL` (any other failure); `cause` is the Deno error.
 *
 * @example
 * ```ts
 * import { GaiError, gethostbyname } from "@x/gevent/socket";
 * import assert from "node:assert/strict";
 *
 * const err = await gethostbyname("").catch((e) => e);
 * assert.ok(err instanceof GaiError);
 * assert.equal(err.code, "EAI_NONAME");
 * ```
 */
export class GaiError extends SocketError {
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param code `EAI_NONAME`, `EAI_AGAIN`, `EAI_FAMILY` or `EAI_FAIL`.
   * @param options `cause`.
   */
  constructor(message: string, code: string, options?: SocketErrorOptions) {
    super(message, code, options);
    this.name = "GaiError";
  }
}

/**
 * A socket operation did not complete within the socket's `timeout` (gevent:
 * `socket.timeout`). Its `code` is `ETIMEDOUT`. A `recv` that times out loses no bytes: what
 * arrives later is returned by the next `recv`.
 *
 * @example
 * ```ts
 * import { createConnection, listen, SocketTimeout } from "@x/gevent/socket";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * using sock = await createConnection(server.getsockname(), { timeout: 10 });
 * const [peer] = await server.accept(); // accepted, but it never writes
 * const err = await sock.recv(10).catch((e) => e);
 * assert.ok(err instanceof SocketTimeout);
 * peer.close();
 * ```
 */
export class SocketTimeout extends SocketError {
  /**
   * Creates the error.
   *
   * @param message What timed out (default `timed out`, like Python).
   * @param options `cause`.
   */
  constructor(message = "timed out", options?: SocketErrorOptions) {
    super(message, "ETIMEDOUT", options);
    this.name = "SocketTimeout";
  }
}
