/**
 * A bounded crawler with the toolbox: a `Queue` of pages to visit, a `Pool` that keeps at most
 * four fetches running, a `Semaphore` that lets two of them touch the "database" at once, and
 * a `Local` that gives each worker greenlet its own request id. The "web" is an in-memory map
 * with a simulated latency, so the example needs no network.
 *
 *     deno run examples/bounded_crawler.ts
 */
import { Local, Pool, Queue, Semaphore, sleep } from "../mod.ts";

const WEB: Record<string, string[]> = {
  "/": ["/a", "/b", "/c"],
  "/a": ["/a/1", "/a/2", "/"],
  "/b": ["/b/1", "/"],
  "/c": [],
  "/a/1": [],
  "/a/2": ["/b/1"],
  "/b/1": [],
};

const requestId = new Local<string>();
const database = new Semaphore(2);
const seen = new Set<string>(["/"]);
const toVisit = new Queue<string>();
const pool = new Pool(4);
let running = 0;
let mostRunning = 0;

async function fetchPage(path: string): Promise<string[]> {
  requestId.set(`req-${path}`);
  mostRunning = Math.max(mostRunning, ++running);
  await sleep(10); // the network round trip
  running--;
  using _db = await database.hold(); // at most two greenlets write at once
  await sleep(1);
  const links = WEB[path] ?? [];
  console.log(`${requestId.get()}: ${links.length} links`);
  return links;
}

async function visit(path: string): Promise<void> {
  try {
    for (const link of await fetchPage(path)) {
      if (!seen.has(link)) {
        seen.add(link);
        await toVisit.put(link);
      }
    }
  } finally {
    toVisit.taskDone();
  }
}

toVisit.putNowait("/");
const dispatcher = (async () => {
  for await (const path of toVisit) await pool.spawn(visit, path); // waits while 4 run
})();
await toVisit.join(); // every page found was visited
toVisit.shutdown(); // ends the dispatcher's loop
await dispatcher;
await pool.join();
console.log(`visited ${seen.size} pages, at most ${mostRunning} fetches at once`);
