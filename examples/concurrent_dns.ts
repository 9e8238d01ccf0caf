/**
 * gevent's introduction, in TypeScript: three concurrent `socket.gethostbyname` lookups
 * under `joinAll(jobs, { timeout: 2000 })`, then the same lookups one after another, timed,
 * so the "3 times longer" claim is shown rather than asserted; then a greenlet that fails
 * and is reported without its error escaping.
 *
 * Usage:
 *   deno run --allow-net --allow-read examples/concurrent_dns.ts
 *   deno run --allow-net --allow-read examples/concurrent_dns.ts --nameserver 1.1.1.1:53 \
 *     www.google.com www.example.com www.python.org
 *
 * Without `--nameserver` it needs no internet: it starts a loopback DNS server that answers
 * the introduction's names with their addresses after 100 ms, and says so.
 */
import { getHub, joinAll, socket, spawn } from "../mod.ts";
import { Resolver } from "../resolver.ts";
import { startDnsServer } from "../tests/_dns_server.ts";

const SEED = {
  "www.google.com": { A: ["74.125.79.106"] },
  "www.example.com": { A: ["208.77.188.166"] },
  "www.python.org": { A: ["82.94.164.162"] },
};
const LATENCY_MS = 100;

const args = [...Deno.args];
let nameserver: { ipAddr: string; port: number } | undefined;
const at = args.indexOf("--nameserver");
if (at >= 0) {
  const spec = args.splice(at, 2)[1] ?? "";
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(spec);
  if (m === null) {
    throw new RangeError(`'--nameserver' must be ip[:port]: current value is ${spec}`);
  }
  nameserver = { ipAddr: m[1], port: Number(m[2] ?? 53) };
}

await using local = nameserver === undefined
  ? await startDnsServer({ records: SEED, latency: LATENCY_MS })
  : undefined;
if (local !== undefined) {
  nameserver = local.nameserver;
  console.log(
    `No --nameserver given: started a loopback DNS server on 127.0.0.1:${nameserver.port} ` +
      `that answers the introduction's names after ${LATENCY_MS} ms.\n`,
  );
}
getHub().resolver = new Resolver({ nameservers: [nameserver!] });

// gevent's introduction, line for line.
const urls = args.length > 0 ? args : ["www.google.com", "www.example.com", "www.python.org"];
console.log(`>>> const urls = ${Deno.inspect(urls)};`);
console.log(">>> const jobs = urls.map((url) => spawn(socket.gethostbyname, url));");
console.log(">>> await joinAll(jobs, { timeout: 2000 });");
console.log(">>> jobs.map((job) => job.value);");
let t0 = performance.now();
const jobs = urls.map((url) => spawn(socket.gethostbyname, url));
await joinAll(jobs, { timeout: 2000 });
const concurrent = performance.now() - t0;
console.log(jobs.map((job) => job.value));

// The same lookups, one after another.
t0 = performance.now();
for (const url of urls) {
  try {
    await socket.gethostbyname(url);
  } catch {
    // Failures cost their time too; the concurrent run reported them already.
  }
}
const sequential = performance.now() - t0;
console.log(
  `\n${urls.length} lookups: concurrent ${concurrent.toFixed(0)} ms, one after another ` +
    `${sequential.toFixed(0)} ms (${(sequential / concurrent).toFixed(1)} times longer)\n`,
);

// An error does not escape the greenlet: the hub prints it, with the failed greenlet.
console.log(">>> await spawn(() => 1n / 0n).join(); // join() waits for the greenlet to complete");
await spawn(() => 1n / 0n).join();

getHub().resolver.close();
