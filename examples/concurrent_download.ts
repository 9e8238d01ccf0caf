/**
 * gevent's `concurrent_download` example: plain `fetch` calls, written without any
 * knowledge of greenlets, run in greenlets after `monkey.patchAll()`. Each download has its
 * own time limit (`withTimeout`) and the whole batch a total one (`joinAll`); a download that
 * is cut off has its request aborted and its socket released.
 *
 *     deno run --allow-net examples/concurrent_download.ts [URL...]
 *
 * With no URLs it starts a local server with fast, slow and silent routes and shows, at the
 * end, that the server has no connection left open.
 */

import { type Greenlet, joinAll, killAll, monkey, spawn, Timeout, withTimeout } from "../mod.ts";

const PER_DOWNLOAD_MS = 500;
const TOTAL_MS = 2000;

monkey.patchAll();

/** Code that has never heard of greenlets: it just uses `fetch`. */
async function download(url: string): Promise<number> {
  const res = await fetch(url);
  const body = await res.arrayBuffer();
  return body.byteLength;
}

interface Outcome {
  url: string;
  outcome: string;
  bytes: number | undefined;
  ms: number;
}

async function job(url: string): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const bytes = await withTimeout(PER_DOWNLOAD_MS, () => download(url));
    return { url, outcome: "ok", bytes, ms: performance.now() - t0 };
  } catch (error) {
    const outcome = error instanceof Timeout
      ? `cut off after ${PER_DOWNLOAD_MS} ms`
      : `failed: ${(error as Error)?.name ?? error}`;
    return { url, outcome, bytes: undefined, ms: performance.now() - t0 };
  }
}

// ---- A local server: /fast, /slow/<ms> (answers after <ms>), /silent (never answers) ----

interface LocalServer {
  origin: string;
  open: number;
  allClosed(): Promise<void>;
  close(): void;
}

function startLocalServer(): LocalServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const enc = new TextEncoder();
  const waiters: (() => void)[] = [];
  const server: LocalServer = {
    origin: `http://127.0.0.1:${listener.addr.port}`,
    open: 0,
    allClosed: () => server.open === 0 ? Promise.resolve() : new Promise((r) => waiters.push(r)),
    close: () => listener.close(),
  };
  const handle = async (conn: Deno.Conn): Promise<void> => {
    const buf = new Uint8Array(4096);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const n = await conn.read(buf);
      const path = new TextDecoder().decode(buf.subarray(0, n ?? 0)).split(" ")[1] ?? "/";
      const answer = (): void => {
        const body = "x".repeat(path === "/fast" ? 1024 : 2048);
        conn.write(enc.encode(
          `HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        )).catch(() => {});
      };
      const slow = /^\/slow\/(\d+)$/.exec(path);
      if (path === "/fast") answer();
      else if (slow !== null) timer = setTimeout(answer, Number(slow[1]));
      // Until the client closes (or, for /silent, gives up):
      while (await conn.read(buf) !== null) { /* discard */ }
    } catch {
      // Reset by the client.
    } finally {
      clearTimeout(timer);
      conn.close();
      if (--server.open === 0) {
        for (const w of waiters.splice(0)) w();
      }
    }
  };
  (async () => {
    for await (const conn of listener) {
      server.open++;
      handle(conn);
    }
  })().catch(() => {});
  return server;
}

// ---- Run ----

const local = Deno.args.length === 0 ? startLocalServer() : undefined;
const urls = local === undefined ? Deno.args : [
  `${local.origin}/fast`,
  `${local.origin}/slow/100`,
  `${local.origin}/fast`,
  `${local.origin}/slow/300`,
  `${local.origin}/slow/1500`,
  `${local.origin}/silent`,
  `${local.origin}/silent`,
];

const t0 = performance.now();
const jobs: Greenlet<Outcome>[] = urls.map((url) => spawn(job, url));
const finished = await joinAll(jobs, { timeout: TOTAL_MS });
await killAll(jobs.filter((g) => !finished.includes(g)));
const elapsed = performance.now() - t0;

const rows = jobs.map((g, i) =>
  g.value instanceof Object && "outcome" in g.value
    ? g.value
    : { url: urls[i], outcome: `killed after ${TOTAL_MS} ms total`, bytes: undefined, ms: elapsed }
);
const width = Math.max(...rows.map((r) => r.url.length));
console.log(
  `${"URL".padEnd(width)}  ${"OUTCOME".padEnd(24)} ${"BYTES".padStart(6)} ${"MS".padStart(6)}`,
);
for (const r of rows) {
  console.log(
    `${r.url.padEnd(width)}  ${r.outcome.padEnd(24)} ${String(r.bytes ?? "-").padStart(6)} ${
      r.ms.toFixed(0).padStart(6)
    }`,
  );
}
console.log(`${jobs.length} downloads in ${elapsed.toFixed(0)} ms (limit ${TOTAL_MS} ms)`);

if (local !== undefined) {
  await local.allClosed(); // every cut-off download released its socket
  console.log(`connections still open on the local server: ${local.open}`);
  local.close();
}
monkey.unpatchAll();
