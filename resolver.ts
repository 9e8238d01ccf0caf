/**
 * The hub's cooperative DNS resolver, built on `Deno.resolveDns`.
 *
 * Every lookup is a blocking call: many greenlets resolve concurrently, and `kill()` or a
 * `Timeout` interrupts a lookup (its query is aborted through `Deno.resolveDns`'s `signal`).
 * IP literals come back without a query; `localhost` (and `*.localhost`) answer
 * `127.0.0.1` / `::1` without one; names in the hosts file are answered from it by Deno.
 *
 * Permissions: Deno checks `--allow-net` against the *name server's* address, not the name
 * looked up (`--allow-net=127.0.0.1:5353` for a local server; plain `--allow-net` for the
 * system's servers). Without it, lookups reject with `Deno.errors.NotCapable` whose message
 * says which flag to pass.
 *
 * Deno's own default is 15 s of silence before it gives up on a dead name server; ours is
 * {@linkcode ResolverOptions.timeout} (2000 ms) per try, {@linkcode ResolverOptions.tries}
 * (2) tries, rotating over the configured name servers.
 *
 * Identical lookups in flight share one query: a thousand greenlets asking for one name
 * that never answers hold one query slot, not a thousand, so other names stay fast.
 *
 * Limitation: `Deno.resolveDns` (2.9) reports a SERVFAIL or REFUSED answer exactly as it
 * reports NXDOMAIN (the same `NotFound` error and message, after one query), so such a
 * failure comes back as `EAI_NONAME` and is not retried, where a C resolver would say
 * `EAI_AGAIN` and try the next name server.
 *
 * @example A resolver for a private name server, installed as the hub's
 * ```ts
 * import { getHub } from "@x/gevent/hub";
 * import { Resolver } from "@x/gevent/resolver";
 * import assert from "node:assert/strict";
 *
 * const saved = getHub().resolver;
 * const resolver = new Resolver({ nameservers: [{ ipAddr: "127.0.0.1", port: 5353 }] });
 * getHub().resolver = resolver; // socket.gethostbyname() now asks 127.0.0.1:5353
 * assert.equal(await resolver.gethostbyname("10.1.2.3"), "10.1.2.3"); // a literal: no query
 * getHub().resolver = saved;
 * resolver.close();
 * ```
 *
 * @module
 */

import { GaiError, SocketError } from "./_errors.ts";
import { _clearTimer, _setTimer } from "./core.ts";
import { _badBag, _badTimeout, _render } from "./_check.ts";
import { _begin, _labelWaits, _setResolverFactory, type _Waiter, getHub } from "./hub.ts";
import { _deno } from "./_platform.ts";

export { GaiError, SocketError, type SocketErrorOptions } from "./_errors.ts";

/** A name server: an IP address and a port (default 53). */
export interface NameServer {
  /** The server's IP address (IPv4 or IPv6). */
  ipAddr: string;
  /** The UDP port (default 53). */
  port?: number;
}

/** Options of the optional cache of a {@linkcode Resolver}. */
export interface ResolverCacheOptions {
  /** How long an answer is reused, in milliseconds (default 60000). */
  ttl?: number;
  /** How many answers are kept at most; the oldest go first (default 10000). */
  maxSize?: number;
}

/** Options of {@linkcode Resolver}. */
export interface ResolverOptions {
  /**
   * Name servers to ask, rotated over the tries; default (or empty): the system's
   * configuration. Each `ipAddr` must be an IPv4 or IPv6 address (not a name).
   */
  nameservers?: NameServer[];
  /** Milliseconds to wait for an answer to one query (default 2000). */
  timeout?: number;
  /** How many queries to send before giving up with `EAI_AGAIN` (default 2). */
  tries?: number;
  /** Reuse answers: `true` for the defaults, or the cache's options (default: no cache). */
  cache?: boolean | ResolverCacheOptions;
  /**
   * How many queries may be in flight at once (default 256); more lookups wait their turn,
   * in order, before their query is sent (the per-try timeout starts when it is sent). A
   * burst of UDP queries larger than the name server's receive buffer is otherwise partly
   * dropped and only retried after a timeout. Lookups of the same name and record type
   * share one query, so they take one slot between them.
   */
  maxConcurrent?: number;
}

/** An address family: `4` (gevent `AF_INET`) or `6` (`AF_INET6`). */
export type AddressFamily = 4 | 6;

/** A socket type: `"stream"` (gevent `SOCK_STREAM`) or `"dgram"` (`SOCK_DGRAM`). */
export type SocketKind = "stream" | "dgram";

/** A socket address: `[host, port]`, as in Python. */
export type Address = [host: string, port: number];

/** Options of {@linkcode Resolver.getaddrinfo}. */
export interface GetaddrinfoOptions {
  /** Only addresses of this family (default: both, IPv4 first). */
  family?: AddressFamily;
  /** Only entries for this socket type (default: both, stream first). */
  type?: SocketKind;
}

/** One result of {@linkcode Resolver.getaddrinfo}: gevent's `(family, type, proto, canonname, sockaddr)`. */
export interface AddrInfo {
  /** `4` or `6`. */
  family: AddressFamily;
  /** `"stream"` or `"dgram"`. */
  type: SocketKind;
  /** `"tcp"` for stream, `"udp"` for dgram. */
  proto: "tcp" | "udp";
  /** The canonical name (the name asked for; empty for IP literals). */
  canonname: string;
  /** `[ip, port]`. */
  address: Address;
}

/** gevent's `gethostbyname_ex` / `gethostbyaddr` result: `[hostname, aliases, addresses]`. */
export type HostEntry = [hostname: string, aliases: string[], addresses: string[]];

/** Options of {@linkcode Resolver.getnameinfo}. */
export interface GetnameinfoOptions {
  /** Return the numeric address instead of asking for a name (gevent `NI_NUMERICHOST`). */
  numericHost?: boolean;
  /** Throw `EAI_NONAME` rather than fall back to the numeric address (`NI_NAMEREQD`). */
  nameRequired?: boolean;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Whether `host` is an IPv4 literal. */
function isIPv4(host: string): boolean {
  return IPV4.test(host);
}

/** Whether `host` is an IPv6 literal (without brackets). */
function isIPv6(host: string): boolean {
  if (!host.includes(":") || !/^[0-9a-fA-F:.]+(%[\w.-]+)?$/.test(host)) return false;
  try {
    new URL(`http://[${host.replace(/%.*$/, "")}]/`);
    return true;
  } catch {
    return false;
  }
}

function isLocalhost(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  return n === "localhost" || n.endsWith(".localhost");
}

/** @ignore Validates a host argument (rejects with TypeError for a non-string). */
export function _checkHost(host: unknown, name = "host"): void {
  if (typeof host !== "string") {
    throw new TypeError(`'${name}' must be a string: current value is ${render(host)}`);
  }
}

/** @ignore Validates a port argument. */
export function _checkPort(port: unknown, name = "port"): void {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    const msg = `'${name}' must be an integer from 0 to 65535: current value is ${render(port)}`;
    throw typeof port === "number" ? new RangeError(msg) : new TypeError(msg);
  }
}

function render(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function noName(host: string, cause?: unknown): GaiError {
  return new GaiError(
    `Cannot resolve ${JSON.stringify(host)}: Name or service not known`,
    "EAI_NONAME",
    { cause },
  );
}

function abortOwner<T>(w: _Waiter<T, AbortController>): void {
  w._owner.abort();
}
_labelWaits(abortOwner, () => "DNS lookup");

function never(): void {}

interface CacheEntry {
  expires: number;
  value: string[];
}

const TIMED_OUT = Symbol("timed out");

function abortTimedOut(ctl: AbortController): void {
  ctl.abort(TIMED_OUT);
}

/** One query on the wire and the lookups waiting for it. */
interface Flight {
  /** The query's outcome (after its tries). */
  promise: Promise<string[]>;
  /** Aborts the query. */
  ctl: AbortController;
  /** How many lookups wait for it. */
  waiters: number;
}

/** Validates the `nameservers` option; returns a copy with every port filled in. */
function checkNameservers(value: unknown): NameServer[] {
  if (value === undefined) return [];
  if (
    value === null || typeof value !== "object" ||
    typeof (value as Iterable<unknown>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `'nameservers' must be an array of { ipAddr, port } objects: current value is ${
        _render(value)
      }`,
    );
  }
  const out: NameServer[] = [];
  for (const ns of value as Iterable<unknown>) {
    const at = `nameservers[${out.length}]`;
    if (ns === null || typeof ns !== "object") {
      throw new TypeError(
        `'${at}' must be an object with an 'ipAddr': current value is ${_render(ns)}`,
      );
    }
    const { ipAddr, port } = ns as { ipAddr?: unknown; port?: unknown };
    if (typeof ipAddr !== "string") {
      throw new TypeError(
        `'${at}.ipAddr' must be an IP address string: current value is ${_render(ipAddr)}`,
      );
    }
    // Deno parses it as a bare address: no host name, brackets or IPv6 zone.
    if (!isIPv4(ipAddr) && !(isIPv6(ipAddr) && !ipAddr.includes("%"))) {
      throw new RangeError(
        `'${at}.ipAddr' must be an IPv4 or IPv6 address: current value is ${_render(ipAddr)}`,
      );
    }
    if (
      port !== undefined &&
      (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    ) {
      const msg = `'${at}.port' must be an integer from 1 to 65535: current value is ${
        _render(port)
      }`;
      throw typeof port === "number" ? new RangeError(msg) : new TypeError(msg);
    }
    out.push({ ipAddr, port: (port as number | undefined) ?? 53 });
  }
  return out;
}

/**
 * A cooperative DNS resolver: lookups are blocking calls that run concurrently and that
 * `kill()` and `Timeout` interrupt. The hub owns one (`getHub().resolver`), which the
 * `socket` functions use; create your own to use other name servers, timeouts or a cache.
 *
 * Lookups of the same name and record type made while one is in flight wait for its query
 * instead of sending their own (one query on the wire, many waiters). Each waiter is still
 * its own blocking call: a kill or `Timeout` ends that waiter alone, and the shared query
 * goes on until the last of its waiters has left; then it is aborted and its slot freed.
 * Waiters of one query get the same answer (or the same error object).
 *
 * Failures are {@linkcode GaiError}s: `EAI_NONAME` for a name that does not exist, has no
 * address of the wanted family or is empty, and also for a SERVFAIL or REFUSED answer
 * (Deno reports all of these as one and the same `NotFound`, so they cannot be told apart
 * or retried); `EAI_AGAIN` when no name server answered within `tries` x `timeout`,
 * `EAI_FAMILY` for an IP literal of the other family, `EAI_FAIL` otherwise; `cause` is
 * Deno's error. A missing `--allow-net` gives `Deno.errors.NotCapable` naming the flag.
 *
 * @example
 * ```ts
 * import { Resolver } from "@x/gevent/resolver";
 * import assert from "node:assert/strict";
 *
 * using resolver = new Resolver({ timeout: 500, tries: 1, cache: true });
 * assert.equal(await resolver.gethostbyname("localhost"), "127.0.0.1");
 * assert.deepEqual(await resolver.gethostbynameEx("192.0.2.7"), ["192.0.2.7", [], ["192.0.2.7"]]);
 * ```
 */
export class Resolver {
  /** The name servers asked, in rotation (empty: the system's configuration). */
  readonly nameservers: readonly NameServer[];
  /** Milliseconds to wait for one answer. */
  readonly timeout: number;
  /** Queries sent before giving up. */
  readonly tries: number;
  #cache: Map<string, CacheEntry> | undefined;
  #ttl = 60_000;
  #maxSize = 10_000;
  #active = new Set<AbortController>();
  #closed = false;
  #maxConcurrent: number;
  #inFlight = 0;
  #turns: (() => void)[] = [];
  /** Queries on the wire, by record type and name, each shared by its waiters. */
  #flights = new Map<string, Flight>();

  /**
   * Creates a resolver. Every option is checked here, name servers included, so that a bad
   * one fails at once rather than at the first lookup.
   *
   * @param options `nameservers`, `timeout`, `tries`, `cache`, `maxConcurrent`.
   * @throws {RangeError} For a bad `timeout`, `tries`, `maxConcurrent` or cache option, a
   *   name server `ipAddr` that is not an IP address, or a port outside 1-65535.
   * @throws {TypeError} For `nameservers` that is not an array of `{ ipAddr, port }`
   *   objects, a non-string `ipAddr`, or a `cache` that is neither a boolean nor an object.
   */
  constructor(options?: ResolverOptions) {
    if (options === undefined) options = {};
    const badOptions = _badBag(options);
    if (badOptions !== undefined) throw badOptions;
    const { nameservers, timeout = 2000, tries = 2, cache = false, maxConcurrent = 256 } = options;
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new RangeError(
        `'maxConcurrent' must be a positive integer: current value is ${maxConcurrent}`,
      );
    }
    this.#maxConcurrent = maxConcurrent;
    const bad = _badTimeout(timeout);
    if (bad !== undefined) throw bad;
    if (timeout === 0) throw new RangeError(`'timeout' must be positive: current value is 0`);
    if (!Number.isInteger(tries) || tries < 1) {
      throw new RangeError(`'tries' must be a positive integer: current value is ${tries}`);
    }
    this.nameservers = checkNameservers(nameservers);
    this.timeout = timeout;
    this.tries = tries;
    if (typeof cache !== "boolean" && (cache === null || typeof cache !== "object")) {
      throw new TypeError(
        `'cache' must be a boolean or { ttl, maxSize }: current value is ${_render(cache)}`,
      );
    }
    if (cache !== false) {
      const opts = cache === true ? {} : cache;
      if (opts.ttl !== undefined) {
        const badTtl = _badTimeout(opts.ttl);
        if (badTtl !== undefined) throw badTtl;
        this.#ttl = opts.ttl;
      }
      if (opts.maxSize !== undefined) {
        if (!Number.isInteger(opts.maxSize) || opts.maxSize < 1) {
          throw new RangeError(
            `'maxSize' must be a positive integer: current value is ${opts.maxSize}`,
          );
        }
        this.#maxSize = opts.maxSize;
      }
      this.#cache = new Map();
    }
  }

  /**
   * Resolves a host name to one IPv4 address (the first answer). A blocking call, except
   * for IP literals, `localhost` and cached answers, which return without switching.
   *
   * @param host A host name or an IPv4 literal.
   * @returns The address, such as `"93.184.215.14"`.
   * @throws {TypeError} (as a rejection) If `host` is not a string.
   * @throws {GaiError} (as a rejection) If the name cannot be resolved (`EAI_NONAME` for an
   *   empty name).
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * using resolver = new Resolver();
   * assert.equal(await resolver.gethostbyname("127.0.0.1"), "127.0.0.1");
   * ```
   */
  gethostbyname(host: string): Promise<string> {
    const cache = this.#cache;
    if (cache !== undefined && typeof host === "string") {
      const hit = cache.get(host);
      if (hit !== undefined && hit.expires > performance.now()) {
        return Promise.resolve(hit.value[0]);
      }
    }
    return this.#addresses(host, 4).then(first);
  }

  /**
   * Resolves a host name to its IPv4 addresses: gevent's `gethostbyname_ex`. Aliases are
   * not reported (Deno's resolver does not expose the CNAME chain): the list is empty.
   *
   * @param host A host name or an IPv4 literal.
   * @returns `[hostname, aliases, addresses]`.
   * @throws {TypeError} (as a rejection) If `host` is not a string.
   * @throws {GaiError} (as a rejection) If the name cannot be resolved.
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * using resolver = new Resolver();
   * assert.deepEqual(await resolver.gethostbynameEx("localhost"), ["localhost", [], ["127.0.0.1"]]);
   * ```
   */
  async gethostbynameEx(host: string): Promise<HostEntry> {
    const addrs = await this.#addresses(host, 4);
    return [host, [], [...addrs]];
  }

  /**
   * Resolves a host and port into socket addresses: gevent's `getaddrinfo`, returning
   * IPv4 before IPv6 and stream before dgram entries. A blocking call: both families are
   * queried at once, and a kill or a `Timeout` interrupts the lookup as a whole (both
   * queries stop) even when one family has already answered. A family that has no address
   * is left out.
   *
   * @param host A host name or an IP literal.
   * @param port A port from 0 to 65535.
   * @param options `family` (4 or 6) and `type` ("stream" or "dgram") to filter on.
   * @returns The entries, at least one.
   * @throws {TypeError} (as a rejection) If `host` is not a string.
   * @throws {RangeError} (as a rejection) For a bad port, family or type.
   * @throws {GaiError} (as a rejection) If the name cannot be resolved.
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * using resolver = new Resolver();
   * const infos = await resolver.getaddrinfo("::1", 80, { type: "stream" });
   * assert.deepEqual(infos, [
   *   { family: 6, type: "stream", proto: "tcp", canonname: "", address: ["::1", 80] },
   * ]);
   * ```
   */
  async getaddrinfo(
    host: string,
    port: number,
    options?: GetaddrinfoOptions,
  ): Promise<AddrInfo[]> {
    if (options === undefined) options = {};
    _checkHost(host);
    _checkPort(port);
    const { family, type } = options;
    if (family !== undefined && family !== 4 && family !== 6) {
      throw new RangeError(`'family' must be 4 or 6: current value is ${render(family)}`);
    }
    if (type !== undefined && type !== "stream" && type !== "dgram") {
      throw new RangeError(`'type' must be "stream" or "dgram": current value is ${render(type)}`);
    }
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    const literal = isIPv4(bare) || isIPv6(bare);
    let v4: readonly string[] = [];
    let v6: readonly string[] = [];
    if (family === 4) v4 = await this.#addresses(bare, 4);
    else if (family === 6) v6 = await this.#addresses(bare, 6);
    else [v4, v6] = await this.#bothFamilies(bare);
    const kinds: SocketKind[] = type === undefined ? ["stream", "dgram"] : [type];
    const canonname = literal ? "" : bare;
    const out: AddrInfo[] = [];
    for (const [fam, list] of [[4, v4], [6, v6]] as const) {
      for (const ip of list) {
        for (const kind of kinds) {
          out.push({
            family: fam,
            type: kind,
            proto: kind === "stream" ? "tcp" : "udp",
            canonname,
            address: [ip, port],
          });
        }
      }
    }
    return out;
  }

  /**
   * Finds the names of an address by a reverse (PTR) query: gevent's `gethostbyaddr`. A host
   * name is resolved first.
   *
   * @param ip An IP address (or a host name).
   * @returns `[hostname, aliases, [ip]]`.
   * @throws {TypeError} (as a rejection) If `ip` is not a string.
   * @throws {GaiError} (as a rejection) If the address has no name.
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * // 127.0.0.1 is in every hosts file: Deno answers from it without asking the server.
   * using resolver = new Resolver({ nameservers: [{ ipAddr: "127.0.0.1", port: 5353 }] });
   * const [name, , addrs] = await resolver.gethostbyaddr("127.0.0.1");
   * assert.equal(typeof name, "string");
   * assert.deepEqual(addrs, ["127.0.0.1"]);
   * ```
   */
  async gethostbyaddr(ip: string): Promise<HostEntry> {
    _checkHost(ip, "ip");
    let addr = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
    if (!isIPv4(addr) && !isIPv6(addr)) addr = (await this.#addresses(addr, 4))[0];
    const names = (await this.#reverse(reverseName(addr), addr)).map((n) => n.replace(/\.$/, ""));
    return [names[0], names.slice(1), [addr]];
  }

  /**
   * Turns a socket address into a host name and a service: gevent's `getnameinfo`. The
   * service is the port number as a string (there is no services database).
   *
   * @param address `[ip, port]`.
   * @param options `numericHost`, `nameRequired`.
   * @returns `[host, port]`: the name, or the numeric address when it has none.
   * @throws {TypeError} (as a rejection) If the address is not `[string, number]`.
   * @throws {RangeError} (as a rejection) For a bad port.
   * @throws {GaiError} (as a rejection) With `nameRequired`, if the address has no name.
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * using resolver = new Resolver();
   * const info = await resolver.getnameinfo(["127.0.0.1", 80], { numericHost: true });
   * assert.deepEqual(info, ["127.0.0.1", "80"]);
   * ```
   */
  async getnameinfo(
    address: Address,
    options?: GetnameinfoOptions,
  ): Promise<[host: string, port: string]> {
    if (options === undefined) options = {};
    if (!Array.isArray(address)) {
      throw new TypeError(`'address' must be [host, port]: current value is ${render(address)}`);
    }
    const [host, port] = address;
    _checkHost(host);
    _checkPort(port);
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    const ip = isIPv4(bare) || isIPv6(bare) ? bare : (await this.#addresses(bare, 4))[0];
    if (options.numericHost) return [ip, String(port)];
    try {
      const [name] = await this.gethostbyaddr(ip);
      return [name, String(port)];
    } catch (error) {
      if (!(error instanceof GaiError) || options.nameRequired) throw error;
      return [ip, String(port)];
    }
  }

  /**
   * The fully qualified name of `name` (default: this machine's host name, which needs
   * `--allow-sys`): the first of its reverse names that contains a dot, else `name` itself.
   * Like Python's, it never fails on a lookup error.
   *
   * @param name A host name or address; empty or `0.0.0.0` means this machine.
   * @returns The fully qualified name.
   * @throws {TypeError} (as a rejection) If `name` is not a string.
   *
   * @example
   * ```ts
   * import { Resolver } from "./resolver.ts";
   * import assert from "node:assert/strict";
   *
   * using resolver = new Resolver({ nameservers: [{ ipAddr: "127.0.0.1", port: 5353 }] });
   * assert.equal(typeof await resolver.getfqdn("127.0.0.1"), "string");
   * ```
   */
  async getfqdn(name = ""): Promise<string> {
    _checkHost(name, "name");
    let target = name.trim();
    if (target === "" || target === "0.0.0.0") target = Deno.hostname();
    let entry: HostEntry;
    try {
      entry = await this.gethostbyaddr(target);
    } catch (error) {
      if (error instanceof GaiError) return target;
      throw error;
    }
    for (const candidate of [entry[0], ...entry[1]]) {
      if (candidate.includes(".")) return candidate;
    }
    return entry[0] ?? target;
  }

  /**
   * Stops every lookup in progress (they fail with a `SocketError`, code `EBADF`) and drops
   * the cache; later lookups that need a query fail the same way.
   */
  close(): void {
    this.#closed = true;
    const reason = new SocketError("Resolver closed", "EBADF");
    for (const ctl of this.#active) ctl.abort(reason);
    this.#active.clear();
    for (const flight of this.#flights.values()) flight.ctl.abort(reason);
    this.#flights.clear();
    this.#cache?.clear();
  }

  /** Same as {@linkcode Resolver.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Resolves the addresses of one family: a fast path, or one blocking lookup. */
  #addresses(host: string, family: AddressFamily): Promise<readonly string[]> {
    return this.#answered(host, family) ??
      this.#blocking((signal) => this.#lookup(host, family, signal));
  }

  /**
   * Resolves both families as one blocking call (none when both have a fast path), so that
   * a kill or a Timeout interrupts the whole lookup, whichever family is still waiting, and
   * stops both queries.
   */
  #bothFamilies(host: string): Promise<[readonly string[], readonly string[]]> {
    const v4 = this.#answered(host, 4);
    const v6 = this.#answered(host, 6);
    if (v4 !== undefined && v6 !== undefined) return bothFamilies(v4, v6);
    return this.#blocking((signal) =>
      bothFamilies(v4 ?? this.#lookup(host, 4, signal), v6 ?? this.#lookup(host, 6, signal))
    );
  }

  /**
   * The answer of one family when no query is needed (a bad or empty host, an IP literal,
   * `localhost`, a cached answer), else `undefined`.
   */
  #answered(host: string, family: AddressFamily): Promise<readonly string[]> | undefined {
    if (typeof host !== "string") {
      return Promise.reject(
        new TypeError(`'host' must be a string: current value is ${render(host)}`),
      );
    }
    if (host === "") return Promise.reject(noName(host));
    if (isIPv4(host)) {
      if (family === 4) return Promise.resolve([host]);
      return Promise.reject(
        new GaiError(`Cannot resolve ${JSON.stringify(host)} as IPv6`, "EAI_FAMILY"),
      );
    }
    if (isIPv6(host)) {
      if (family === 6) return Promise.resolve([host]);
      return Promise.reject(
        new GaiError(
          `Cannot resolve ${JSON.stringify(host)}: Address family for hostname not supported`,
          "EAI_FAMILY",
        ),
      );
    }
    if (isLocalhost(host)) return Promise.resolve([family === 4 ? "127.0.0.1" : "::1"]);
    const cache = this.#cache;
    if (cache !== undefined) {
      const key = cacheKey(host, family);
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.expires > performance.now()) return Promise.resolve(hit.value);
        cache.delete(key);
      }
    }
    return undefined;
  }

  /** The query of one family (inside a blocking call), its answer kept in the cache. */
  #lookup(host: string, family: AddressFamily, signal: AbortSignal): Promise<readonly string[]> {
    const p = this.#query(host, family === 4 ? "A" : "AAAA", host, signal);
    const cache = this.#cache;
    if (cache === undefined) return p;
    return p.then((value) => {
      if (this.#cache === cache) {
        if (cache.size >= this.#maxSize) cache.delete(cache.keys().next().value!);
        cache.set(cacheKey(host, family), { expires: performance.now() + this.#ttl, value });
      }
      return value;
    });
  }

  /** One blocking lookup of the names of address `shown` (a PTR query for `name`). */
  #reverse(name: string, shown: string): Promise<string[]> {
    return this.#blocking((signal) => this.#query(name, "PTR", shown, signal));
  }

  /**
   * Waits, until `signal` aborts, for the query of `name` and `type`: the one in flight if
   * there is one, else a new one. The query is aborted when its last waiter leaves.
   */
  #query(
    name: string,
    type: "A" | "AAAA" | "PTR",
    shown: string,
    signal: AbortSignal,
  ): Promise<string[]> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const key = `${type} ${name}`;
    let flight = this.#flights.get(key);
    if (flight === undefined) {
      const ctl = new AbortController();
      const f: Flight = { promise: this.#run(name, type, shown, ctl.signal), ctl, waiters: 0 };
      const landed = (): void => {
        if (this.#flights.get(key) === f) this.#flights.delete(key);
      };
      f.promise.then(landed, landed); // also keeps a query nobody waits for from going unhandled
      this.#flights.set(key, f);
      flight = f;
    }
    const f = flight;
    f.waiters++;
    return new Promise<string[]>((resolve, reject) => {
      let gone = false;
      /** Stops waiting; returns whether this was the last waiter. */
      const leave = (): boolean => {
        gone = true;
        signal.removeEventListener("abort", onAbort);
        return --f.waiters === 0;
      };
      const onAbort = (): void => {
        if (gone) return;
        if (leave()) {
          // The last waiter left before the answer: nobody needs the query any more.
          if (this.#flights.get(key) === f) this.#flights.delete(key);
          f.ctl.abort(signal.reason);
        }
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      f.promise.then((value) => {
        if (gone) return;
        leave();
        resolve(value);
      }, (error) => {
        if (gone) return;
        leave();
        reject(error);
      });
    });
  }

  /**
   * Runs `work` as one blocking call: a waiter that kill/Timeout can fail, which aborts
   * `signal` and so every query `work` sent. A failure of `work` itself fails the waiter,
   * which aborts `signal` too: nothing of it keeps running.
   */
  #blocking<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new SocketError("Resolver closed", "EBADF"));
    const w = _begin<T, AbortController>();
    if (w instanceof Promise) return w;
    const ctl = new AbortController();
    w._owner = ctl;
    w._onCancel = abortOwner;
    w._arm(undefined, never);
    this.#active.add(ctl);
    work(ctl.signal).then(
      (value) => {
        this.#active.delete(ctl);
        w._wake(value);
      },
      (error) => {
        this.#active.delete(ctl);
        w._fail(error);
      },
    );
    return w.promise;
  }

  /** Waits for a query slot, in order; rejects when `outer` aborts first. */
  #turn(outer: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        outer.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#turns.indexOf(go);
        if (i >= 0) this.#turns.splice(i, 1);
        reject(outer.reason);
      };
      if (outer.aborted) return reject(outer.reason);
      outer.addEventListener("abort", onAbort, { once: true });
      this.#turns.push(go);
    });
  }

  async #run(
    name: string,
    type: "A" | "AAAA" | "PTR",
    shown: string,
    outer: AbortSignal,
  ): Promise<string[]> {
    const servers = this.nameservers;
    let last: unknown;
    for (let i = 0; i < this.tries; i++) {
      const server = servers.length === 0 ? undefined : servers[i % servers.length];
      if (this.#inFlight < this.#maxConcurrent) this.#inFlight++;
      else await this.#turn(outer); // the slot is handed over: #inFlight stays the same
      const ctl = new AbortController();
      const onOuter = (): void => ctl.abort(outer.reason);
      outer.addEventListener("abort", onOuter);
      const timer = _setTimer(abortTimedOut, this.timeout, ctl);
      try {
        const answers = await _deno.resolveDns(
          name,
          type,
          server === undefined
            ? { signal: ctl.signal }
            : { nameServer: server as Required<NameServer>, signal: ctl.signal },
        );
        if (answers.length === 0) throw new Deno.errors.NotFound("no records");
        return answers;
      } catch (error) {
        if (outer.aborted) throw outer.reason;
        if (ctl.signal.reason === TIMED_OUT) {
          last = new Deno.errors.TimedOut(
            `No answer from ${where(server)} within ${this.timeout} ms`,
          );
          continue;
        }
        if (error instanceof Deno.errors.NotFound) {
          if (type === "PTR") {
            throw new GaiError(`No name for address ${shown}`, "EAI_NONAME", { cause: error });
          }
          throw noName(shown, error);
        }
        if (error instanceof Deno.errors.NotCapable) throw permissionError(shown, server, error);
        if (
          error instanceof Deno.errors.TimedOut || error instanceof Deno.errors.ConnectionRefused
        ) {
          last = error;
          continue;
        }
        throw new GaiError(
          `Cannot resolve ${JSON.stringify(shown)}: ${(error as Error)?.message ?? error}`,
          "EAI_FAIL",
          { cause: error },
        );
      } finally {
        _clearTimer(timer);
        outer.removeEventListener("abort", onOuter);
        const next = this.#turns.shift();
        if (next !== undefined) next();
        else this.#inFlight--;
      }
    }
    throw new GaiError(
      `Cannot resolve ${JSON.stringify(shown)}: Temporary failure in name resolution ` +
        `(${this.tries} ${this.tries === 1 ? "try" : "tries"} of ${this.timeout} ms)`,
      "EAI_AGAIN",
      { cause: last },
    );
  }
}

/**
 * Combines the lookups of the two families into `[v4, v6]`. A family that failed with a DNS
 * error (a `GaiError`) is empty; when both did, the more telling error is thrown (anything but
 * `EAI_FAMILY`, else IPv4's). Any other failure (`NotCapable`, a closed resolver, an aborted
 * query) rejects at once, without waiting for the other family.
 */
function bothFamilies(
  v4: Promise<readonly string[]>,
  v6: Promise<readonly string[]>,
): Promise<[readonly string[], readonly string[]]> {
  return new Promise((resolve, reject) => {
    const got: (readonly string[] | GaiError)[] = [];
    let left = 2;
    const settle = (i: 0 | 1, result: readonly string[] | GaiError): void => {
      got[i] = result;
      if (--left > 0) return;
      const [a, b] = got;
      if (a instanceof GaiError && b instanceof GaiError) reject(a.code === "EAI_FAMILY" ? b : a);
      else resolve([a instanceof GaiError ? [] : a, b instanceof GaiError ? [] : b]);
    };
    const fail = (i: 0 | 1, error: unknown): void => {
      if (error instanceof GaiError) settle(i, error);
      else reject(error);
    };
    v4.then((value) => settle(0, value), (error) => fail(0, error));
    v6.then((value) => settle(1, value), (error) => fail(1, error));
  });
}

function cacheKey(host: string, family: AddressFamily): string {
  return family === 4 ? host : `6:${host}`;
}

function first(addrs: readonly string[]): string {
  return addrs[0];
}

function where(server: NameServer | undefined): string {
  if (server === undefined) return "the system's name server";
  const host = server.ipAddr.includes(":") ? `[${server.ipAddr}]` : server.ipAddr;
  return `${host}:${server.port ?? 53}`;
}

function permissionError(
  name: string,
  server: NameServer | undefined,
  cause: unknown,
): Deno.errors.NotCapable {
  const asked = /"([^"]+)"/.exec((cause as Error)?.message ?? "")?.[1] ??
    (server === undefined ? undefined : where(server));
  const flag = asked === undefined ? "--allow-net" : `--allow-net=${asked} (or --allow-net)`;
  return new Deno.errors.NotCapable(
    `Cannot resolve ${JSON.stringify(name)}: Deno needs network permission for the name ` +
      `server${asked === undefined ? "" : ` ${asked}`}: pass ${flag}`,
    { cause },
  );
}

function reverseName(ip: string): string {
  if (isIPv4(ip)) return `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
  // Expand the IPv6 address to 32 nibbles.
  const [head, tail = ""] = ip.replace(/%.*$/, "").split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  const nibbles = groups.map((g) => g.padStart(4, "0")).join("");
  return `${[...nibbles].reverse().join(".")}.ip6.arpa`;
}

/**
 * The hub's resolver, typed: `getHub().resolver` as a {@linkcode Resolver}.
 *
 * @returns The resolver the `socket` functions use.
 * @throws {TypeError} If the hub's resolver was replaced by an object that is not a Resolver.
 *
 * @example
 * ```ts
 * import { getHub } from "@x/gevent/hub";
 * import { getResolver } from "@x/gevent/resolver";
 * import assert from "node:assert/strict";
 *
 * assert.equal(getResolver(), getHub().resolver);
 * ```
 */
export function getResolver(): Resolver {
  const r = getHub().resolver;
  if (!(r instanceof Resolver)) {
    throw new TypeError(`The hub's resolver must be a Resolver: current value is ${r}`);
  }
  return r;
}

_setResolverFactory(() => new Resolver());

// Monkey patching: `_dns.ts` implements the patched `Deno.resolveDns` and `node:dns`'s
// `lookup` (`monkey.patchDns()` installs them). The code above calls the saved originals
// (`_deno`), so a patched `Deno.resolveDns` never reaches it.
