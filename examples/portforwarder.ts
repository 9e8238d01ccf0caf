/**
 * gevent's classic `examples/portforwarder.py`: forwards every connection made to a local
 * address to a remote one, copying both directions in two greenlets per connection.
 *
 * Usage:
 *   deno run --allow-net examples/portforwarder.ts 127.0.0.1:8080 example.com:80
 *   deno run --allow-net=127.0.0.1 examples/portforwarder.ts --self-test
 *
 * `--self-test` starts a loopback echo server and a forwarder in front of it, sends data
 * through the forwarder, checks it comes back, stops both and exits.
 */
import { type Greenlet, joinAll, killAll, socket, spawn, StreamServer } from "../mod.ts";

function parseAddress(text: string): socket.Address {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text);
  if (m === null) throw new RangeError(`an address must be host:port: current value is ${text}`);
  return [m[1], Number(m[2])];
}

/** Copies from `source` to `dest` until end of stream, then shuts `dest`'s write half. */
async function forward(source: socket.Socket, dest: socket.Socket): Promise<void> {
  try {
    for (let data; (data = await source.recv()).length > 0;) await dest.sendall(data);
    await dest.shutdown();
  } catch (error) {
    if (!(error instanceof socket.SocketError)) throw error; // one side went away
  }
}

/** A StreamServer whose handler connects to `dest` and relays both ways. */
function portForwarder(listen: socket.Address, dest: socket.Address): StreamServer {
  return new StreamServer(listen, async (source, address) => {
    let remote: socket.Socket;
    try {
      remote = await socket.createConnection(dest, { timeout: 10_000 });
    } catch (error) {
      console.log(`${address.join(":")}: failed to connect to ${dest.join(":")}: ${error}`);
      return;
    }
    using _ = remote;
    console.log(`${address.join(":")} accepted, forwarding to ${dest.join(":")}`);
    const relays: Greenlet<void>[] = [
      spawn(forward, source, remote),
      spawn(forward, remote, source),
    ];
    try {
      await joinAll(relays);
    } finally {
      await killAll(relays); // when this handler is killed (server stopping), stop the relays
    }
    console.log(`${address.join(":")} closed`);
  });
}

async function selfTest(): Promise<void> {
  await using echo = new StreamServer(["127.0.0.1", 0], async (sock) => {
    for (let data; (data = await sock.recv()).length > 0;) await sock.sendall(data);
  });
  echo.start();
  await using forwarder = portForwarder(["127.0.0.1", 0], echo.address);
  forwarder.start();
  console.log(`Self-test: ${forwarder.address.join(":")} -> echo ${echo.address.join(":")}`);
  using client = await socket.createConnection(forwarder.address, { timeout: 2000 });
  const message = new TextEncoder().encode("through the forwarder");
  await client.sendall(message);
  await client.shutdown();
  let back = "";
  for (let data; (data = await client.recv()).length > 0;) back += new TextDecoder().decode(data);
  if (back !== "through the forwarder") throw new Error(`self-test failed: got ${back}`);
  console.log(`Self-test passed: ${JSON.stringify(back)}`);
}

if (import.meta.main) {
  if (Deno.args.includes("--self-test")) {
    await selfTest();
  } else if (Deno.args.length === 2) {
    const server = portForwarder(parseAddress(Deno.args[0]), parseAddress(Deno.args[1]));
    console.log(`Starting port forwarder ${Deno.args[0]} -> ${Deno.args[1]}`);
    await server.serveForever();
  } else {
    console.error("usage: portforwarder.ts SOURCE:PORT DEST:PORT | --self-test");
    Deno.exit(2);
  }
}
