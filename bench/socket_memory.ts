/**
 * Memory per idle connection, side by side: N loopback TCP connections, client and server in
 * one process, on @x/gevent's `Socket` and on raw `Deno.Conn`s doing the same reads.
 *
 * ```sh
 * deno run -A bench/socket_memory.ts [--connections=2000] [--bufsize=4096] [--runs=3]
 * ```
 *
 * Every measurement runs in a fresh process (`--child lib|raw`, started with
 * `--v8-flags=--expose-gc`), the runs of the two interleaved; the table shows medians. A child
 * takes a baseline (full collections, then `Deno.memoryUsage()`), opens N connections, and
 * lets each side do one read: the client sends 6 bytes, the server side receives them with
 * `recv(bufsize)` (raw: `read()` into a new `bufsize`-byte array), answers 3 bytes, and the
 * client side receives those the same way. Then it measures two states, each against the
 * baseline and divided by N (a connection is both its ends):
 *
 * - idle: every read has returned; nothing is outstanding (the issue's "N idle connections,
 *   each having done one recv");
 * - pending: a `recv(bufsize)` (raw: a `read()`) waits on every server side, as on an idle
 *   server whose handlers wait for the next request.
 *
 * "heap" is V8's `heapUsed + external` (array buffers count in `external`), "RSS" the
 * resident set. Target (issue 12): lib at most 2x raw per idle connection.
 *
 * @module
 */

import { socket } from "../mod.ts";

declare const gc: (() => void) | undefined;

interface Figures {
  heap: number;
  rss: number;
}

interface ChildResult {
  idle: Figures;
  pending: Figures;
}

function option(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

const HELLO = new TextEncoder().encode("hello\n");
const HI = new TextEncoder().encode("hi\n");

async function measure(): Promise<Figures> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10)); // lets freed buffers be swept
    gc!();
  }
  const m = Deno.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss };
}

function perConnection(now: Figures, base: Figures, n: number): Figures {
  return { heap: (now.heap - base.heap) / n, rss: (now.rss - base.rss) / n };
}

// ---------------------------------------------------------------------------------------
// The two implementations (run in a child process)

async function libChild(n: number, bufsize: number): Promise<ChildResult> {
  const server = socket.listen(["127.0.0.1", 0], { backlog: 4096 });
  const address = server.getsockname();
  const base = await measure();
  const pairs: [socket.Socket, socket.Socket][] = [];
  for (let i = 0; i < n; i++) {
    const client = await socket.createConnection(address);
    const [peer] = await server.accept();
    pairs.push([client, peer]);
  }
  for (const [client, peer] of pairs) {
    await client.sendall(HELLO);
    if ((await peer.recv(bufsize)).length === 0) throw new Error("unexpected end of stream");
    await peer.sendall(HI);
    if ((await client.recv(bufsize)).length === 0) throw new Error("unexpected end of stream");
  }
  const idle = perConnection(await measure(), base, n);
  const waiting = pairs.map(([, peer]) => peer.recv(bufsize).catch(() => undefined));
  const pending = perConnection(await measure(), base, n);
  for (const [client, peer] of pairs) {
    client.close();
    peer.close();
  }
  await Promise.all(waiting);
  server.close();
  return { idle, pending };
}

async function rawRead(conn: Deno.Conn, bufsize: number): Promise<void> {
  const n = await conn.read(new Uint8Array(bufsize));
  if (n === null) throw new Error("unexpected end of stream");
}

async function rawWrite(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

async function rawChild(n: number, bufsize: number): Promise<ChildResult> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const base = await measure();
  const pairs: [Deno.Conn, Deno.Conn][] = [];
  for (let i = 0; i < n; i++) {
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    const peer = await listener.accept();
    pairs.push([client, peer]);
  }
  for (const [client, peer] of pairs) {
    await rawWrite(client, HELLO);
    await rawRead(peer, bufsize);
    await rawWrite(peer, HI);
    await rawRead(client, bufsize);
  }
  const idle = perConnection(await measure(), base, n);
  const waiting = pairs.map(([, peer]) => peer.read(new Uint8Array(bufsize)).catch(() => null));
  const pending = perConnection(await measure(), base, n);
  for (const [client, peer] of pairs) {
    client.close();
    peer.close();
  }
  await Promise.all(waiting);
  listener.close();
  return { idle, pending };
}

// ---------------------------------------------------------------------------------------
// The parent: interleaved runs, the table

async function child(kind: "lib" | "raw", n: number, bufsize: number): Promise<ChildResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      import.meta.filename!,
      "--child",
      kind,
      `--connections=${n}`,
      `--bufsize=${bufsize}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`child ${kind} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function bytes(x: number): string {
  return `${Math.round(x).toLocaleString("en-US")} B`;
}

async function main(): Promise<void> {
  const n = option("connections", 2000);
  const bufsize = option("bufsize", 4096);
  const at = Deno.args.indexOf("--child");
  if (at >= 0) {
    if (typeof gc !== "function") throw new Error("The child needs --v8-flags=--expose-gc");
    const kind = Deno.args[at + 1];
    const result = kind === "lib" ? await libChild(n, bufsize) : await rawChild(n, bufsize);
    console.log(JSON.stringify(result));
    return;
  }
  const runs = option("runs", 3);
  const lib: ChildResult[] = [];
  const raw: ChildResult[] = [];
  for (let i = 0; i < runs; i++) {
    raw.push(await child("raw", n, bufsize));
    lib.push(await child("lib", n, bufsize));
  }
  console.log(
    `Memory per connection (both ends): ${n} loopback connections, recv(${bufsize}), ` +
      `median of ${runs} runs\n`,
  );
  console.log("| state | lib heap | raw heap | lib / raw | lib RSS | raw RSS | lib / raw |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  let idleRatio = 0;
  for (const state of ["idle", "pending"] as const) {
    const lh = median(lib.map((r) => r[state].heap));
    const rh = median(raw.map((r) => r[state].heap));
    const lr = median(lib.map((r) => r[state].rss));
    const rr = median(raw.map((r) => r[state].rss));
    if (state === "idle") idleRatio = Math.max(lh / rh, lr / rr);
    console.log(
      `| ${state} | ${bytes(lh)} | ${bytes(rh)} | ${(lh / rh).toFixed(2)} | ${bytes(lr)} | ` +
        `${bytes(rr)} | ${(lr / rr).toFixed(2)} |`,
    );
  }
  console.log(
    `\nidle lib / raw = ${idleRatio.toFixed(2)} at most (target <= 2: ${
      idleRatio <= 2 ? "met" : "MISSED"
    })`,
  );
}

if (import.meta.main) await main();
