/**
 * A tiny OpenTelemetry collector for tests: an OTLP/HTTP receiver on 127.0.0.1 that decodes the
 * spans posted to `/v1/traces`, in either of the encodings Deno's exporter speaks
 * (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, the default, or `http/json`). Logs and metrics
 * are accepted and counted, not decoded.
 *
 * Point a child Deno at it with `OTEL_DENO=true` and
 * `OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint`; Deno flushes its spans before it exits.
 *
 * @module
 */

import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** OTLP `Span.SpanKind` values. */
export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;

/** An attribute value, as OTLP's `AnyValue` carries it (arrays and maps are not decoded). */
export type AttributeValue = string | boolean | bigint | number | undefined;

/** One decoded span; ids are lowercase hex, as OTLP/JSON writes them ("" when absent). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** The attributes of the resource that produced it (`service.name`, ...). */
  resource: Record<string, AttributeValue>;
  /** The instrumentation scope's name (Deno's own spans: `deno`). */
  scope: string;
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

// ----------------------------------------------------------------------------- http/protobuf
// Field numbers from opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.

/** Calls `field(number, wireType)` for each field of the message in `r` up to `end`. */
function fields(r: BinaryReader, end: number, field: (no: number, wt: WireType) => boolean): void {
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (!field(no, wt)) r.skip(wt, no);
  }
}

/** Reads the length prefix of an embedded message and returns where it ends. */
function sub(r: BinaryReader): number {
  const len = r.uint32();
  return r.pos + len;
}

function anyValue(r: BinaryReader, end: number): AttributeValue {
  let value: AttributeValue;
  fields(r, end, (no, wt) => {
    if (no === 1 && wt === WireType.LengthDelimited) value = r.string();
    else if (no === 2 && wt === WireType.Varint) value = r.bool();
    else if (no === 3 && wt === WireType.Varint) value = BigInt(r.int64());
    else if (no === 4 && wt === WireType.Bit64) value = r.double();
    else return false;
    return true;
  });
  return value;
}

function keyValue(r: BinaryReader, end: number, into: Record<string, AttributeValue>): void {
  let key = "";
  let value: AttributeValue;
  fields(r, end, (no, wt) => {
    if (wt !== WireType.LengthDelimited) return false;
    if (no === 1) key = r.string();
    else if (no === 2) value = anyValue(r, sub(r));
    else return false;
    return true;
  });
  into[key] = value;
}

function span(
  r: BinaryReader,
  end: number,
  resource: OtlpSpan["resource"],
  scope: string,
): OtlpSpan {
  const s: OtlpSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    attributes: {},
    resource,
    scope,
  };
  fields(r, end, (no, wt) => {
    if (no === 6 && wt === WireType.Varint) s.kind = r.int32();
    else if (wt !== WireType.LengthDelimited) return false;
    else if (no === 1) s.traceId = hex(r.bytes());
    else if (no === 2) s.spanId = hex(r.bytes());
    else if (no === 4) s.parentSpanId = hex(r.bytes());
    else if (no === 5) s.name = r.string();
    else if (no === 9) keyValue(r, sub(r), s.attributes);
    else return false;
    return true;
  });
  return s;
}

/**
 * Decodes an `ExportTraceServiceRequest` (the body of an `http/protobuf` POST to `/v1/traces`).
 *
 * @param body The request body.
 * @returns Its spans, in the order they were encoded.
 */
export function decodeTraces(body: Uint8Array): OtlpSpan[] {
  const r = new BinaryReader(body);
  const out: OtlpSpan[] = [];
  fields(r, r.len, (no, wt) => {
    if (no !== 1 || wt !== WireType.LengthDelimited) return false;
    // ResourceSpans: resource = 1, scope_spans = 2. The resource comes first on the wire
    // (fields are written in number order), so spans can point at its attributes.
    const resource: OtlpSpan["resource"] = {};
    fields(r, sub(r), (no, wt) => {
      if (wt !== WireType.LengthDelimited) return false;
      if (no === 1) {
        fields(r, sub(r), (no, wt) => {
          if (no !== 1 || wt !== WireType.LengthDelimited) return false;
          keyValue(r, sub(r), resource);
          return true;
        });
      } else if (no === 2) {
        // ScopeSpans: scope = 1 (InstrumentationScope: name = 1), spans = 2.
        let scope = "";
        fields(r, sub(r), (no, wt) => {
          if (wt !== WireType.LengthDelimited) return false;
          if (no === 1) {
            fields(r, sub(r), (no, wt) => {
              if (no !== 1 || wt !== WireType.LengthDelimited) return false;
              scope = r.string();
              return true;
            });
          } else if (no === 2) out.push(span(r, sub(r), resource, scope));
          else return false;
          return true;
        });
      } else return false;
      return true;
    });
    return true;
  });
  return out;
}

// ----------------------------------------------------------------------------- http/json

interface JsonKeyValue {
  key: string;
  value?: {
    stringValue?: string;
    boolValue?: boolean;
    intValue?: string | number;
    doubleValue?: number;
  };
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) {
    out[key] = value?.stringValue ?? value?.boolValue ??
      (value?.intValue !== undefined ? BigInt(value.intValue) : value?.doubleValue);
  }
  return out;
}

/**
 * Decodes the body of an `http/json` POST to `/v1/traces`.
 *
 * @param body The parsed JSON body.
 * @returns Its spans, in the order they were encoded.
 */
export function decodeTracesJson(body: unknown): OtlpSpan[] {
  // deno-lint-ignore no-explicit-any
  const req = body as { resourceSpans?: any[] };
  const out: OtlpSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: String(s.traceId ?? "").toLowerCase(),
          spanId: String(s.spanId ?? "").toLowerCase(),
          parentSpanId: String(s.parentSpanId ?? "").toLowerCase(),
          name: s.name ?? "",
          kind: Number(s.kind ?? 0),
          attributes: jsonAttributes(s.attributes),
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return out;
}

// ----------------------------------------------------------------------------- the receiver

/** A running collector; `await using` closes it. */
export interface OtlpCollector extends AsyncDisposable {
  /** The value for `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** Every span received so far, in arrival order. */
  readonly spans: OtlpSpan[];
  /** Every POST received so far: its path and content type. */
  readonly posts: { path: string; contentType: string }[];
  /** Bodies that could not be decoded, with the error (a test should assert this is empty). */
  readonly errors: unknown[];
  /** Stops listening. */
  close(): Promise<void>;
}

async function readBody(req: Request): Promise<Uint8Array> {
  const encoding = req.headers.get("content-encoding");
  if (encoding === "gzip" && req.body !== null) {
    const plain = req.body.pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(plain).arrayBuffer());
  }
  return new Uint8Array(await req.arrayBuffer());
}

/**
 * Starts a collector on 127.0.0.1 (a free port).
 *
 * @returns The running collector.
 */
export function startCollector(): OtlpCollector {
  const spans: OtlpSpan[] = [];
  const posts: { path: string; contentType: string }[] = [];
  const errors: unknown[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const path = new URL(req.url).pathname;
      const contentType = req.headers.get("content-type") ?? "";
      posts.push({ path, contentType });
      const json = contentType.includes("json");
      try {
        const body = await readBody(req);
        if (path === "/v1/traces") {
          spans.push(
            ...(json
              ? decodeTracesJson(JSON.parse(new TextDecoder().decode(body)))
              : decodeTraces(body)),
          );
        }
      } catch (error) {
        errors.push(error);
        return new Response(String(error), { status: 400 });
      }
      // An empty Export*ServiceResponse: zero bytes in protobuf, `{}` in JSON.
      return json
        ? new Response("{}", { headers: { "content-type": "application/json" } })
        : new Response(new Uint8Array(0), {
          headers: { "content-type": "application/x-protobuf" },
        });
    },
  );
  const close = () => server.shutdown();
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    spans,
    posts,
    errors,
    close,
    [Symbol.asyncDispose]: close,
  };
}
