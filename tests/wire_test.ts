/**
 * The request/reply framing the driver patches rely on (_wire.ts): counts must be exact
 * however the bytes are split, or a kill would cut off another greenlet's request.
 */
import "./_deadline.ts";
import assert from "node:assert/strict";
import { _isBlockingCommand, _pgCancelRequest, _pgQuery, _track } from "../_wire.ts";

const enc = new TextEncoder();

/** A PostgreSQL message: type byte, int32 length, payload. */
function pgMsg(type: string, payload: Uint8Array | string = new Uint8Array()): Uint8Array {
  const body = typeof payload === "string" ? enc.encode(payload) : payload;
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const startup = (() => {
  const params = enc.encode("user\0postgres\0database\0postgres\0\0");
  const out = new Uint8Array(8 + params.length);
  const view = new DataView(out.buffer);
  view.setInt32(0, out.length);
  view.setInt32(4, 196608);
  out.set(params, 8);
  return out;
})();

/** Feeds `bytes` in pieces of `size` (1 = byte by byte) and sums what `feed` returns. */
function fed(bytes: Uint8Array, size: number, feed: (b: Uint8Array) => number): number {
  let total = 0;
  for (let i = 0; i < bytes.length; i += size) total += feed(bytes.subarray(i, i + size));
  return total;
}

Deno.test("_wire: PostgreSQL requests and ReadyForQuery are counted however split", () => {
  const key = new Uint8Array([0, 0, 0x30, 0x39, 1, 2, 3, 4]);
  const client = concat(
    startup,
    pgMsg("Q", "select 1\0"),
    pgMsg("P", "\0select $1\0\0\0"),
    pgMsg("B", "\0\0\0\0\0\0\0\0"),
    pgMsg("E", "\0\0\0\0\0"),
    pgMsg("S"),
    pgMsg("X"),
  );
  const server = concat(
    pgMsg("R", new Uint8Array(4)),
    pgMsg("S", "client_encoding\0UTF8\0"),
    pgMsg("K", key),
    pgMsg("Z", "I"),
    pgMsg("T", new Uint8Array(2)),
    pgMsg("D", "row data, any length"),
    pgMsg("C", "SELECT 1\0"),
    pgMsg("Z", "T"),
    pgMsg("1"),
    pgMsg("2"),
    pgMsg("C", "SELECT 1\0"),
    pgMsg("Z", "E"),
  );
  for (const size of [1, 2, 3, 7, 1000]) {
    const t = _track(client.subarray(0, 8));
    assert.equal(t.protocol, "postgres");
    // The first chunk was given to _track only: feed everything to the tracker itself.
    assert.equal(fed(client, size, (b) => t.out(b)), 3, `client split by ${size}`);
    assert.equal(fed(server, size, (b) => t.in(b)), 3, `server split by ${size}`);
    assert.deepEqual(t.cancelKey, key);
    assert.equal(t.inTransaction, true); // the last ReadyForQuery said "E"
  }
});

Deno.test("_wire: PostgreSQL reply ends point just past each ReadyForQuery", () => {
  const t = _track(startup);
  t.out(startup);
  const first = concat(pgMsg("R", new Uint8Array(4)), pgMsg("Z", "I"));
  const second = concat(pgMsg("C", "BEGIN\0"), pgMsg("Z", "T"));
  const chunk = concat(first, second, pgMsg("N", "notice, no end"));
  assert.equal(t.in(chunk), 2);
  assert.deepEqual(t.ends, [first.length, first.length + second.length]);
  assert.equal(t.inTransaction, true);
});

Deno.test("_wire: an SSLRequest or an unknown protocol is opaque: a write after a read", () => {
  const ssl = new Uint8Array(8);
  new DataView(ssl.buffer).setInt32(0, 8);
  new DataView(ssl.buffer).setInt32(4, 80877103);
  for (const first of [ssl, enc.encode("GET / HTTP/1.1\r\n\r\n")]) {
    const t = _track(first);
    assert.equal(t.protocol, "opaque");
    assert.equal(t.out(first), 1);
    assert.equal(t.out(enc.encode("more")), 0); // same request until something is read
    assert.equal(t.in(enc.encode("reply")), 1);
    assert.equal(t.out(enc.encode("next")), 1);
  }
});

Deno.test("_wire: Redis commands and replies are counted however split", () => {
  const commands = enc.encode(
    "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" +
      "*3\r\n$5\r\nBLPOP\r\n$4\r\nq\r\nx\r\n$1\r\n5\r\n" + // a bulk string holding CRLF
      "*1\r\n$4\r\nPING\r\n",
  );
  const replies = enc.encode(
    "$-1\r\n" + // null bulk
      "*2\r\n$4\r\nq\r\nx\r\n*2\r\n:1\r\n+OK\r\n" + // nested array
      ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n" + // RESP3 push: not a reply
      "+PONG\r\n",
  );
  for (const size of [1, 2, 5, 1000]) {
    const t = _track(commands);
    assert.equal(t.protocol, "redis");
    let names = "";
    assert.equal(
      fed(commands, size, (b) => {
        const n = t.out(b);
        if (n > 0) names += t.lastCommand + " ";
        return n;
      }),
      3,
      `commands split by ${size}`,
    );
    if (size === 1000) assert.equal(names, "PING ");
    assert.equal(fed(replies, size, (b) => t.in(b)), 3, `replies split by ${size}`);
  }
  const t = _track(commands);
  t.out(enc.encode("*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n5\r\n"));
  assert.equal(t.lastCommand, "BLPOP");
  const chunk = enc.encode("*2\r\n$1\r\nq\r\n$1\r\nv\r\n:7\r\n");
  assert.equal(t.in(chunk), 2);
  assert.deepEqual(t.ends, [chunk.length - 4, chunk.length]);
});

Deno.test("_wire: subscribing ends Redis tracking (replies no longer answer requests)", () => {
  const sub = enc.encode("*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n");
  const t = _track(sub);
  assert.equal(t.out(sub), -1);
  assert.equal(t.in(enc.encode("+OK\r\n")), -1);
});

Deno.test("_wire: blocking commands, cancel requests and queries are built right", () => {
  for (const name of ["BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "XREAD", "WAIT"]) {
    assert.ok(_isBlockingCommand(name), name);
  }
  assert.ok(!_isBlockingCommand("GET"));
  const key = new Uint8Array([0, 0, 0, 42, 9, 9, 9, 9]);
  const cancel = new DataView(_pgCancelRequest(key).buffer);
  assert.equal(cancel.getInt32(0), 16);
  assert.equal(cancel.getInt32(4), 80877102);
  assert.equal(cancel.getInt32(8), 42);
  assert.deepEqual(_pgQuery("ROLLBACK"), pgMsg("Q", "ROLLBACK\0"));
});
