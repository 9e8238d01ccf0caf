/**
 * A loopback HTTP/1.1 server for the monkey tests and benchmark, on a raw `Deno.listen` so
 * the tests see each connection's life. Routes: `/fast` answers at once, `/silent` never
 * answers (until `release()`), `/stall` sends the headers and part of the body and then
 * nothing. Connections are kept alive. `close()` closes the listener and every connection.
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A running loopback HTTP server. */
export interface HttpServer {
  /** `http://127.0.0.1:<port>`. */
  origin: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections open now. */
  open: number;
  /** Resolves when the next request for `path` has arrived. */
  nextRequest(path: string): Promise<void>;
  /** Resolves when the next connection closes (the client went away). */
  nextClose(): Promise<void>;
  /** Answers every pending `/silent` request with `late`. */
  release(): void;
  /** Closes the listener and every connection, and waits until they are all released. */
  close(): Promise<void>;
}

/** Starts the server on 127.0.0.1 and a free port. */
export function startHttpServer(): HttpServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const silent: Deno.Conn[] = [];
  const requestWaiters = new Map<string, (() => void)[]>();
  let closeWaiters: (() => void)[] = [];
  const server: HttpServer = {
    origin: `http://127.0.0.1:${listener.addr.port}`,
    accepted: 0,
    open: 0,
    nextRequest(path) {
      return new Promise((resolve) => {
        const list = requestWaiters.get(path) ?? [];
        list.push(resolve);
        requestWaiters.set(path, list);
      });
    },
    nextClose() {
      return new Promise((resolve) => closeWaiters.push(resolve));
    },
    release() {
      for (const conn of silent.splice(0)) respond(conn, "late").catch(() => {});
    },
    async close() {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await acceptLoop;
      await Promise.all([...loops]);
    },
  };
  const loops = new Set<Promise<void>>();
  const respond = (conn: Deno.Conn, body: string): Promise<number> =>
    conn.write(enc.encode(
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    ));
  const serve = async (conn: Deno.Conn): Promise<void> => {
    const buf = new Uint8Array(4096);
    let pending = "";
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        pending += dec.decode(buf.subarray(0, n));
        let end;
        while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
          const head = pending.slice(0, end);
          pending = pending.slice(end + 4);
          const path = head.split(" ")[1] ?? "/";
          const waiters = requestWaiters.get(path);
          requestWaiters.delete(path);
          if (path === "/silent") silent.push(conn);
          else if (path === "/stall") {
            await conn.write(enc.encode(
              "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\npart",
            ));
          } else await respond(conn, path === "/fast" ? "fast" : "not found");
          for (const w of waiters ?? []) w();
        }
      }
    } catch {
      // Reset or closed by close().
    } finally {
      conns.delete(conn);
      server.open--;
      const i = silent.indexOf(conn);
      if (i >= 0) silent.splice(i, 1);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      const ws = closeWaiters;
      closeWaiters = [];
      for (const w of ws) w();
    }
  };
  const acceptLoop = (async () => {
    try {
      for (;;) {
        const conn = await listener.accept();
        conns.add(conn);
        server.accepted++;
        server.open++;
        const loop = serve(conn);
        loops.add(loop);
        loop.then(() => loops.delete(loop));
      }
    } catch {
      // The listener was closed.
    }
  })();
  return server;
}
