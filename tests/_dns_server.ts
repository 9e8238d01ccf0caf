/**
 * A loopback DNS server for tests, benchmarks and the demo: a real UDP server on 127.0.0.1
 * (port 0 by default) built on `node:dgram` (no `--unstable-net` needed) and `dns-packet`.
 *
 * Answers A, AAAA and PTR queries from a table; other names get NXDOMAIN. Latency, names
 * that get NXDOMAIN or another response code (SERVFAIL, REFUSED), silence (no answer at
 * all), answers held back until the test releases them, and a query counter are
 * configurable.
 * `close()` clears every pending reply timer and closes the socket, so test sanitizers
 * find nothing open.
 */
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

/** The records of one name. */
export interface DnsRecords {
  /** IPv4 addresses. */
  A?: string[];
  /** IPv6 addresses. */
  AAAA?: string[];
  /** Names, for reverse (`*.in-addr.arpa`) entries. */
  PTR?: string[];
}

/** Options of {@linkcode startDnsServer}. */
export interface DnsServerOptions {
  /** Records by name (case-insensitive, without the final dot). */
  records?: Record<string, DnsRecords>;
  /** Answer every name of the form `hostN.test` with `10.0.N/256.N%256` (for load tests). */
  synthetic?: boolean;
  /** Milliseconds to wait before each answer (default 0). */
  latency?: number;
  /** Milliseconds to wait before answering queries of one type, instead of `latency`. */
  latencyByType?: { A?: number; AAAA?: number; PTR?: number };
  /** Names to answer with NXDOMAIN even if they have records. */
  nxdomain?: string[];
  /** Never answer anything (a dead server). */
  silent?: boolean;
  /** Names never answered. */
  silentNames?: string[];
  /** Names answered with this response code (and no records), such as `"SERVFAIL"`. */
  rcodes?: Record<string, ResponseCode>;
  /** Names whose answers are held back until {@linkcode DnsServer.release}. */
  heldNames?: string[];
  /** The port (default 0: any free port). */
  port?: number;
  /**
   * `node:dgram`'s `recvBufferSize` (default 2048; 0 leaves `node:dgram`'s default). In Deno
   * it does not set the kernel's receive buffer (that stays at `net.core.rmem_default`,
   * about 256 small datagrams on Linux): it is the size of the buffer allocated, zeroed, for
   * every datagram received: 64 KiB by default, which made receiving a burst of 200 queries
   * about ten times slower (and answering it two to three times slower) than 2 KiB, far more
   * than a DNS query needs.
   */
  recvBufferSize?: number;
}

/** A DNS response code: a name of RFC 1035's, or its number. */
export type ResponseCode =
  | "NOERROR"
  | "FORMERR"
  | "SERVFAIL"
  | "NXDOMAIN"
  | "NOTIMP"
  | "REFUSED"
  | number;

const RCODES: Record<string, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
};

/** A running loopback DNS server. */
export interface DnsServer {
  /** Its address, for `Resolver({ nameservers: [server.nameserver] })`. */
  nameserver: { ipAddr: string; port: number };
  /** How many queries arrived (a query for A and one for AAAA count as two). */
  queries: number;
  /** The most queries received and not yet answered at one time (how much lookups overlapped). */
  maxInFlight: number;
  /** The names asked, in arrival order. */
  asked: string[];
  /** Resolves with the name of the next query that arrives. */
  nextQuery(): Promise<string>;
  /** Changes the latency of later answers. */
  latency: number;
  /** Whether the server ignores every query. */
  silent: boolean;
  /** Sends the answers held back for `name` (see `heldNames`); returns how many. */
  release(name: string): number;
  /** Stops the server: pending answers are dropped and the socket is closed. */
  close(): Promise<void>;
  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const NXDOMAIN = 3;

/** Starts a loopback DNS server; see {@linkcode DnsServerOptions}. */
export async function startDnsServer(options: DnsServerOptions = {}): Promise<DnsServer> {
  const records = new Map<string, DnsRecords>();
  for (const [name, recs] of Object.entries(options.records ?? {})) {
    records.set(name.toLowerCase().replace(/\.$/, ""), recs);
  }
  const nxdomain = new Set((options.nxdomain ?? []).map((n) => n.toLowerCase()));
  const silentNames = new Set((options.silentNames ?? []).map((n) => n.toLowerCase()));
  const rcodes = new Map<string, number>();
  for (const [name, code] of Object.entries(options.rcodes ?? {})) {
    rcodes.set(name.toLowerCase(), typeof code === "number" ? code : RCODES[code]);
  }
  const heldNames = new Set((options.heldNames ?? []).map((n) => n.toLowerCase()));
  const held = new Map<string, (() => void)[]>();
  const recvBufferSize = options.recvBufferSize ?? 2048;
  const socket = recvBufferSize > 0
    ? dgram.createSocket({ type: "udp4", recvBufferSize })
    : dgram.createSocket("udp4");
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let closed = false;
  let waiting: ((name: string) => void)[] = [];

  const lookup = (name: string): DnsRecords | undefined => {
    const hit = records.get(name);
    if (hit !== undefined) return hit;
    const m = options.synthetic ? /^host(\d+)\.test$/.exec(name) : null;
    if (m === null) return undefined;
    const n = Number(m[1]);
    return { A: [`10.0.${(n >> 8) & 255}.${n & 255}`] };
  };

  const server: DnsServer = {
    nameserver: { ipAddr: "127.0.0.1", port: 0 },
    queries: 0,
    maxInFlight: 0,
    asked: [],
    latency: options.latency ?? 0,
    silent: options.silent ?? false,
    nextQuery(): Promise<string> {
      return new Promise((resolve) => waiting.push(resolve));
    },
    release(name: string): number {
      const sends = held.get(name.toLowerCase()) ?? [];
      held.delete(name.toLowerCase());
      for (const send of sends) send();
      return sends.length;
    },
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      closed = true;
      held.clear();
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise((resolve) => socket.close(() => resolve()));
    },
    [Symbol.asyncDispose](): Promise<void> {
      return this.close();
    },
  };

  let inFlight = 0;
  socket.on("message", (msg: Uint8Array, rinfo: { port: number; address: string }) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg as Parameters<typeof dnsPacket.decode>[0]);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (question === undefined) return;
    const name = question.name.toLowerCase().replace(/\.$/, "");
    server.queries++;
    server.asked.push(name);
    inFlight++;
    if (inFlight > server.maxInFlight) server.maxInFlight = inFlight;
    const ws = waiting;
    waiting = [];
    for (const w of ws) w(name);
    if (server.silent || silentNames.has(name)) return;
    const rcode = rcodes.get(name);
    const recs = nxdomain.has(name) || rcode !== undefined ? undefined : lookup(name);
    const type = question.type as "A" | "AAAA" | "PTR";
    const data = recs?.[type] ?? [];
    const reply = dnsPacket.encode({
      type: "response",
      id: query.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE |
        (rcode ?? (recs === undefined ? NXDOMAIN : 0)),
      questions: [question],
      answers: data.map((d) => ({
        type,
        name: question.name,
        ttl: 60,
        data: d,
      })) as dnsPacket.Answer[],
    });
    const send = (): void => {
      inFlight--;
      if (!closed) socket.send(reply, rinfo.port, rinfo.address);
    };
    if (heldNames.has(name)) {
      let list = held.get(name);
      if (list === undefined) held.set(name, list = []);
      list.push(send);
      return;
    }
    const latency = options.latencyByType?.[type] ?? server.latency;
    if (latency <= 0) send();
    else {
      const t = setTimeout(() => {
        timers.delete(t);
        send();
      }, latency);
      timers.add(t);
    }
  });

  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(options.port ?? 0, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  server.nameserver.port = (socket.address() as { port: number }).port;
  return server;
}

/**
 * Runs the server in a process of its own (so a client under load does not slow it down):
 * `deno run --allow-net=127.0.0.1 tests/_dns_server.ts --synthetic --latency=50` (optionally
 * `--recv-buffer-size=N`) prints `{"port":N}` on one line and serves until its standard input
 * closes.
 */
if (import.meta.main) {
  const latency = Number(Deno.args.find((a) => a.startsWith("--latency="))?.slice(10) ?? 0);
  const rbs = Deno.args.find((a) => a.startsWith("--recv-buffer-size="))?.slice(19);
  const server = await startDnsServer({
    synthetic: Deno.args.includes("--synthetic"),
    latency,
    recvBufferSize: rbs === undefined ? undefined : Number(rbs),
  });
  console.log(JSON.stringify({ port: server.nameserver.port }));
  for await (const _ of Deno.stdin.readable) {
    // Serve until the parent closes our standard input.
  }
  console.error(JSON.stringify({ queries: server.queries }));
  await server.close();
}
