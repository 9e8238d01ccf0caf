/**
 * gevent's classic `examples/echoserver.py`: a line-echo server on StreamServer. Every
 * client is served in a greenlet of its own; type `quit` to leave.
 *
 * Usage:
 *   deno run --allow-net examples/echoserver.ts [--port 16000]   # then: telnet 127.0.0.1 16000
 *   deno run --allow-net=127.0.0.1 examples/echoserver.ts --self-test
 *
 * `--self-test` serves on a free loopback port, talks to itself with three concurrent
 * clients, checks the answers, stops the server and exits.
 */
import { joinAll, socket, spawn, StreamServer } from "../mod.ts";

const enc = new TextEncoder();

/** The handler: gevent's `echo(socket, address)`. */
async function echo(sock: socket.Socket, address: socket.Address): Promise<void> {
  console.log(`New connection from ${address[0]}:${address[1]}`);
  await sock.sendall(enc.encode("Welcome to the echo server! Type quit to exit.\r\n"));
  for (;;) {
    const line = await sock.recvLine(); // the line with its "\n"; "" at end of stream
    if (line === "") {
      console.log("client disconnected");
      break;
    }
    if (line.trim().toLowerCase() === "quit") {
      console.log("client quit");
      break;
    }
    await sock.sendall(enc.encode(line));
    console.log(`echoed ${JSON.stringify(line)}`);
  }
}

async function selfTest(): Promise<void> {
  await using server = new StreamServer(["127.0.0.1", 0], echo);
  server.start();
  console.log(`Self-test: echo server on ${server.address.join(":")}`);
  const client = async (name: string): Promise<string> => {
    using sock = await socket.createConnection(server.address, { timeout: 2000 });
    await sock.recvLine(); // the welcome line
    await sock.sendall(enc.encode(`hello from ${name}\r\n`));
    const answer = await sock.recvLine();
    await sock.sendall(enc.encode("quit\r\n"));
    return answer.trim();
  };
  const clients = ["a", "b", "c"].map((name) => spawn(client, name));
  await joinAll(clients, { raiseError: true });
  const answers = clients.map((c) => c.value);
  const expected = ["hello from a", "hello from b", "hello from c"];
  if (JSON.stringify(answers) !== JSON.stringify(expected)) {
    throw new Error(`self-test failed: ${JSON.stringify(answers)}`);
  }
  console.log(`Self-test passed: ${JSON.stringify(answers)}`);
}

if (import.meta.main) {
  if (Deno.args.includes("--self-test")) {
    await selfTest();
  } else {
    const i = Deno.args.indexOf("--port");
    const port = i >= 0 ? Number(Deno.args[i + 1]) : 16000;
    const server = new StreamServer(["0.0.0.0", port], echo);
    console.log(`Starting echo server on port ${port}`);
    await server.serveForever();
  }
}
