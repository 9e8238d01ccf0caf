/**
 * Internal: a cooperative `Deno.resolveDns` and `node:dns`'s `lookup`, installed by
 * `monkey.patchDns()`.
 *
 * Inside a greenlet, `A` and `AAAA` lookups without a `nameServer` or `signal` option go
 * through the hub's resolver (`getHub().resolver`: its name servers, timeouts and cache); the
 * other lookups call Deno's function with a signal that the greenlet's kill or Timeout aborts.
 * Outside any greenlet both are Deno's own.
 *
 * @module
 */

import {
  _blocking,
  _builtin,
  _combine,
  _cooperative,
  _denoNamespace,
  type _Patch,
} from "./_platform.ts";
import { getHub } from "./hub.ts";
import "./resolver.ts"; // sets the hub's resolver, which the lookups below go through
import type dns from "node:dns";

/** What this module needs of the hub's resolver (`resolver.ts`'s `Resolver` has it). */
interface Lookups {
  gethostbynameEx(host: string): Promise<[string, string[], string[]]>;
  getaddrinfo(
    host: string,
    port: number,
    options: { family?: 4 | 6; type?: "stream" | "dgram" },
  ): Promise<{ family: 4 | 6; address: [string, number] }[]>;
}

function hubLookups(): Lookups | undefined {
  const r = getHub().resolver as unknown as Partial<Lookups>;
  return typeof r.gethostbynameEx === "function" && typeof r.getaddrinfo === "function"
    ? r as Lookups
    : undefined;
}

function isLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** Turns the resolver's `GaiError` back into the `Deno.errors` class Deno would throw. */
function denoError(error: unknown): unknown {
  const code = (error as { code?: unknown })?.code;
  const cause = (error as { cause?: unknown })?.cause;
  if (code === "EAI_NONAME") {
    return cause instanceof Error ? cause : new Deno.errors.NotFound((error as Error).message);
  }
  if (code === "EAI_AGAIN") {
    return cause instanceof Error ? cause : new Deno.errors.TimedOut((error as Error).message);
  }
  return error;
}

function makeResolveDns(original: typeof Deno.resolveDns): typeof Deno.resolveDns {
  return function resolveDns(
    query: string,
    recordType: Deno.RecordType,
    options?: Deno.ResolveDnsOptions,
  ): Promise<unknown> {
    if (!_cooperative()) return original(query, recordType as "A", options);
    const viaHub = (recordType === "A" || recordType === "AAAA") && typeof query === "string" &&
      options?.nameServer === undefined && options?.signal === undefined && !isLiteral(query);
    const r = viaHub ? hubLookups() : undefined;
    if (r !== undefined) {
      const p = recordType === "A"
        ? r.gethostbynameEx(query).then((entry) => [...entry[2]])
        : r.getaddrinfo(query, 0, { family: 6, type: "stream" }).then((infos) =>
          infos.map((i) => i.address[0])
        );
      return p.catch((error) => Promise.reject(denoError(error)));
    }
    const ctl = new AbortController();
    const opts = { ...options, signal: _combine(ctl.signal, options?.signal) };
    return _blocking(() => original(query, recordType as "A", opts), () => ctl.abort());
  } as typeof Deno.resolveDns;
}

type LookupCallback = (err: Error | null, address?: unknown, family?: number) => void;

function nodeError(error: unknown, host: string): Error {
  const code = (error as { code?: unknown })?.code;
  if (code === "EAI_NONAME" || code === "EAI_AGAIN") {
    const name = code === "EAI_NONAME" ? "ENOTFOUND" : "EAI_AGAIN";
    return Object.assign(new Error(`getaddrinfo ${name} ${host}`), {
      code: name,
      syscall: "getaddrinfo",
      hostname: host,
      cause: error,
    });
  }
  return error as Error;
}

/** `dns.lookup(hostname[, options], callback)` through the hub's resolver. */
function makeLookup(original: typeof dns.lookup): typeof dns.lookup {
  return function lookup(this: unknown, hostname: string, ...rest: unknown[]): void {
    const r = _cooperative() ? hubLookups() : undefined;
    const callback = rest[rest.length - 1];
    if (r === undefined || typeof hostname !== "string" || typeof callback !== "function") {
      return (original as (...a: unknown[]) => void).call(this, hostname, ...rest);
    }
    const raw = rest.length > 1 ? rest[0] : undefined;
    const opts = typeof raw === "number" ? { family: raw } : (raw ?? {}) as {
      family?: number | string;
      all?: boolean;
    };
    const fam = opts.family === 4 || opts.family === "IPv4"
      ? 4
      : opts.family === 6 || opts.family === "IPv6"
      ? 6
      : undefined;
    const cb = callback as LookupCallback;
    r.getaddrinfo(hostname, 0, { family: fam, type: "stream" }).then(
      (infos) => {
        if (opts.all === true) {
          cb(null, infos.map((i) => ({ address: i.address[0], family: i.family })));
        } else cb(null, infos[0].address[0], infos[0].family);
      },
      (error) => cb(nodeError(error, hostname)),
    );
  } as typeof dns.lookup;
}

/** @ignore The globals this module implements, for `monkey.patchDns()`. */
export const _patches: readonly _Patch[] = [
  { area: "dns", target: _denoNamespace, name: "resolveDns", make: makeResolveDns },
  { area: "dns", target: () => _builtin<typeof dns>("node:dns"), name: "lookup", make: makeLookup },
];
