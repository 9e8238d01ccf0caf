/**
 * Internal: just enough of two wire protocols to know, for a `node:net` socket that a database
 * driver uses, how many requests are on the wire and which one the server is working on.
 *
 * - PostgreSQL (v3 protocol): every client message but the first is a type byte and an int32
 *   length; a simple `Query` or an extended-protocol `Sync` is one request, answered by exactly
 *   one `ReadyForQuery`. The startup message is a request too (answered by the first
 *   `ReadyForQuery`), and `BackendKeyData` gives what a `CancelRequest` needs.
 * - Redis (RESP2/RESP3): each command is one request answered by exactly one reply (RESP3 push
 *   messages are not replies). Subscribing or `MONITOR` ends the one-to-one rule: tracking stops.
 *
 * Anything else (or TLS, or a socket first seen mid-stream) is "opaque": {@linkcode _Tracker.out}
 * and {@linkcode _Tracker.in} then treat each write after a read as one request and each read as
 * the end of every request (a guess that never keeps a socket busy for ever).
 *
 * @module
 */

/** A wire protocol recognised from the client's first bytes. */
type Protocol = "postgres" | "redis" | "opaque";

/** @ignore Counts requests and replies of one connection. */
export interface _Tracker {
  readonly protocol: Protocol;
  /** Bytes the client wrote: returns how many requests they start (-1: tracking lost). */
  out(data: Uint8Array): number;
  /** Bytes the server sent: returns how many requests they complete (-1: tracking lost). */
  in(data: Uint8Array): number;
  /** Name of the last command that started (Redis), upper case, or "". */
  lastCommand: string;
  /** PostgreSQL: the `BackendKeyData` payload (process id and secret key), once seen. */
  cancelKey?: Uint8Array;
  /**
   * PostgreSQL: whether the last `ReadyForQuery` said a transaction is open (or failed), so
   * the connection carries state that a cut-off request must not leave behind.
   */
  inTransaction?: boolean;
  /**
   * For the requests the last {@linkcode _Tracker.in} completed, the offset in its bytes where
   * each one's reply ends (PostgreSQL and Redis).
   */
  ends?: number[];
}

const PG_STARTUP_V3 = 196608;
const PG_SSL_REQUEST = 80877103;
const PG_GSSENC_REQUEST = 80877104;

/** @ignore Recognises the protocol from a client's first write. */
export function _track(first: Uint8Array): _Tracker {
  if (first.length >= 8) {
    const code = readInt32(first, 4);
    if (code === PG_STARTUP_V3 && readInt32(first, 0) <= 10_000) return new PgTracker();
    if (code === PG_SSL_REQUEST || code === PG_GSSENC_REQUEST) return new OpaqueTracker();
  }
  if (first.length > 0 && first[0] === 0x2a /* '*' */) return new RedisTracker();
  return new OpaqueTracker();
}

function readInt32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** The guess for protocols this module does not know. */
class OpaqueTracker implements _Tracker {
  readonly protocol = "opaque" as const;
  lastCommand = "";
  #outstanding = 0;
  #sinceRead = false;
  out(): number {
    if (this.#sinceRead) return 0;
    this.#sinceRead = true;
    this.#outstanding++;
    return 1;
  }
  in(): number {
    this.#sinceRead = false;
    const n = this.#outstanding;
    this.#outstanding = 0;
    return n;
  }
}

/** Splits a stream of PostgreSQL messages (type byte + int32 length) and reports each type. */
class PgFrames {
  #head = new Uint8Array(5);
  #headLen = 0;
  #left = 0;
  /** Payload of the message being read, when `keep` asked for it. */
  #body: Uint8Array | undefined = undefined;
  #bodyLen = 0;
  readonly onMessage: (type: number, body: Uint8Array | undefined, end: number) => void;
  readonly keep: (type: number) => boolean;
  constructor(
    onMessage: (type: number, body: Uint8Array | undefined, end: number) => void,
    keep: (type: number) => boolean,
  ) {
    this.onMessage = onMessage;
    this.keep = keep;
  }

  push(data: Uint8Array, from = 0): void {
    let i = from;
    const n = data.length;
    while (i < n) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, n - i);
        if (this.#body !== undefined) {
          this.#body.set(data.subarray(i, i + take), this.#bodyLen);
          this.#bodyLen += take;
        }
        this.#left -= take;
        i += take;
        if (this.#left === 0) this.#done(i);
        continue;
      }
      const head = this.#head;
      while (this.#headLen < 5 && i < n) head[this.#headLen++] = data[i++];
      if (this.#headLen < 5) return;
      this.#headLen = 0;
      const length = readInt32(head, 1) - 4;
      this.#left = length;
      this.#body = this.keep(head[0]) && length <= 256 ? new Uint8Array(length) : undefined;
      this.#bodyLen = 0;
      if (length <= 0) {
        this.#left = 0;
        this.#done(i);
      }
    }
  }

  #done(end: number): void {
    const body = this.#body;
    this.#body = undefined;
    this.onMessage(this.#head[0], body, end);
  }
}

const Q = 0x51; // Query
const S = 0x53; // Sync
const Z = 0x5a; // ReadyForQuery
const K = 0x4b; // BackendKeyData

class PgTracker implements _Tracker {
  readonly protocol = "postgres" as const;
  lastCommand = "";
  cancelKey: Uint8Array | undefined = undefined;
  inTransaction = false;
  ends: number[] = [];
  #startup = true;
  /** Bytes of the startup message seen, and its length once the first four are in. */
  #startupSeen = 0;
  #startupLen = 0;
  #started = 0;
  #completed = 0;
  #client = new PgFrames((type) => {
    if (type === Q || type === S) this.#started++;
  }, () => false);
  #server = new PgFrames((type, body, end) => {
    if (type === Z) {
      this.#completed++;
      this.ends.push(end);
      this.inTransaction = body !== undefined && body[0] !== 0x49; // 'I': idle
    } else if (type === K && body !== undefined) {
      this.cancelKey = body;
    }
  }, (type) => type === K || type === Z);

  out(data: Uint8Array): number {
    this.#started = 0;
    let from = 0;
    if (this.#startup) {
      // The startup message has no type byte: an int32 length covers all of it.
      while (this.#startupSeen < 4 && from < data.length) {
        this.#startupLen = this.#startupLen * 256 + data[from++];
        if (++this.#startupSeen === 4) this.#started = 1;
      }
      const left = Math.max(0, this.#startupLen - this.#startupSeen);
      const take = Math.min(left, data.length - from);
      this.#startupSeen += take;
      from += take;
      if (this.#startupSeen < 4 || this.#startupSeen < this.#startupLen) return this.#started;
      this.#startup = false;
    }
    this.#client.push(data, from);
    return this.#started;
  }

  in(data: Uint8Array): number {
    this.#completed = 0;
    this.ends.length = 0;
    this.#server.push(data);
    return this.#completed;
  }
}

// RESP: one streaming scanner counts complete top-level values; commands are the same format.
/** First letters (upper case) of the commands whose names are spelled out (see `BLOCKING`). */
const NAMED_FIRST = new Set([..."BXWSPM"].map((c) => c.charCodeAt(0)));

const CR = 0x0d;
const LF = 0x0a;

class RespScanner {
  /** Elements left in each open aggregate, innermost last. */
  #stack: number[] = [];
  /** Type byte of the line being read (0 between values). */
  #type = 0;
  #num = 0;
  #neg = false;
  #digits = true;
  /** Bytes of bulk payload (plus CRLF) still to skip. */
  #skip = 0;
  /** Type of the top-level value being read (to leave out RESP3 pushes). */
  #top = 0;
  /** Capture of the first bulk string of a top-level array (a command's name). */
  #capturing = false;
  #name = "";
  lastName = "";

  /** Whether it records the name of each command (the client's side of the stream). */
  readonly captureNames: boolean;
  constructor(options?: { captureNames?: boolean }) {
    this.captureNames = options?.captureNames ?? false;
  }

  /** Where each value the last `push` completed ends, in its bytes. */
  ends: number[] = [];

  /** Returns how many top-level values (pushes excluded) the bytes complete. */
  push(data: Uint8Array): number {
    this.ends.length = 0;
    let count = 0;
    let i = 0;
    const n = data.length;
    while (i < n) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, n - i);
        if (this.#capturing) {
          const end = i + Math.min(take, Math.max(0, this.#skip - 2));
          for (let j = i; j < end && this.#name.length < 32; j++) {
            if (this.#name.length === 0 && !NAMED_FIRST.has(data[j] & 0xdf)) {
              this.#capturing = false;
              this.lastName = "";
              break;
            }
            this.#name += String.fromCharCode(data[j]);
          }
        }
        this.#skip -= take;
        i += take;
        if (this.#skip === 0) {
          if (this.#capturing) {
            this.#capturing = false;
            this.lastName = this.#name.toUpperCase();
          }
          if (this.#element() === 1) {
            count++;
            this.ends.push(i);
          }
        }
        continue;
      }
      const b = data[i++];
      if (this.#type === 0) {
        this.#type = b;
        this.#num = 0;
        this.#neg = false;
        this.#digits = true;
        if (this.#stack.length === 0) this.#top = b;
        continue;
      }
      if (b === LF) {
        if (this.#line() === 1) {
          count++;
          this.ends.push(i);
        }
        continue;
      }
      if (b === CR || !this.#digits) continue;
      if (b === 0x2d /* - */ && this.#num === 0) this.#neg = true;
      else if (b >= 0x30 && b <= 0x39) this.#num = this.#num * 10 + (b - 0x30);
      else this.#digits = false;
    }
    return count;
  }

  #line(): number {
    const type = this.#type;
    this.#type = 0;
    const num = this.#neg ? -this.#num : this.#num;
    switch (type) {
      case 0x24: // $ bulk string
      case 0x21: // ! bulk error
      case 0x3d: // = verbatim string
        if (num < 0) return this.#element();
        if (this.captureNames && this.#stack.length === 1 && this.#firstOfTop) {
          // Only names that matter are spelled out (blocking and subscribing commands, 4 to 10
          // letters): GET, SET and the like cost no string.
          this.#capturing = num >= 4 && num <= 10;
          this.#name = "";
          if (!this.#capturing) this.lastName = "";
        }
        this.#skip = num + 2;
        return 0;
      case 0x2a: // * array
      case 0x7e: // ~ set
      case 0x3e: // > push
      case 0x25: // % map
      case 0x7c: { // | attribute
        const len = type === 0x25 || type === 0x7c ? num * 2 : num;
        if (len <= 0) return this.#element();
        this.#stack.push(len);
        this.#firstOfTop = this.#stack.length === 1;
        return 0;
      }
      default:
        // Simple strings, errors, integers, nulls, doubles, booleans, big numbers; and inline
        // commands (a bare line) count as one value.
        return this.#element();
    }
  }

  #firstOfTop = false;

  /** One value ended: closes the aggregates it completes; 1 if a top-level reply ended. */
  #element(): number {
    const stack = this.#stack;
    if (stack.length === 1) this.#firstOfTop = false;
    while (stack.length > 0) {
      if (--stack[stack.length - 1] > 0) return 0;
      stack.pop();
    }
    return this.#top === 0x3e ? 0 : 1;
  }
}

/** Commands after which replies no longer answer requests one to one. */
const UNTRACKABLE = new Set(["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"]);

class RedisTracker implements _Tracker {
  readonly protocol = "redis" as const;
  lastCommand = "";
  #client = new RespScanner({ captureNames: true });
  #server = new RespScanner();
  #lost = false;

  out(data: Uint8Array): number {
    if (this.#lost) return -1;
    const n = this.#client.push(data);
    this.lastCommand = this.#client.lastName;
    if (UNTRACKABLE.has(this.lastCommand)) {
      this.#lost = true;
      return -1;
    }
    return n;
  }

  get ends(): number[] {
    return this.#server.ends;
  }

  in(data: Uint8Array): number {
    if (this.#lost) return -1;
    return this.#server.push(data);
  }
}

/** Redis commands that block on the server until data arrives or their timeout passes. */
const BLOCKING = new Set([
  "BLPOP",
  "BRPOP",
  "BRPOPLPUSH",
  "BLMOVE",
  "BLMPOP",
  "BZPOPMIN",
  "BZPOPMAX",
  "BZMPOP",
  "XREAD",
  "XREADGROUP",
  "WAIT",
  "WAITAOF",
]);

/** @ignore Whether a Redis command can block server-side (and be ended by `CLIENT UNBLOCK`). */
export function _isBlockingCommand(name: string): boolean {
  return BLOCKING.has(name);
}

/** @ignore A PostgreSQL simple query (`Query` message) for `sql`. */
export function _pgQuery(sql: string): Uint8Array {
  const text = new TextEncoder().encode(sql);
  const msg = new Uint8Array(1 + 4 + text.length + 1);
  msg[0] = Q;
  new DataView(msg.buffer).setInt32(1, 4 + text.length + 1);
  msg.set(text, 5);
  return msg;
}

/** @ignore A PostgreSQL `CancelRequest` for the backend whose `BackendKeyData` is `key`. */
export function _pgCancelRequest(key: Uint8Array): Uint8Array {
  const msg = new Uint8Array(8 + key.length);
  const view = new DataView(msg.buffer);
  view.setInt32(0, msg.length);
  view.setInt32(4, 80877102);
  msg.set(key, 8);
  return msg;
}
