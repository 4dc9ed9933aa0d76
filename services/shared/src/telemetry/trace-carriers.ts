import type { Metadata } from "@grpc/grpc-js";
import { context, propagation, type Context, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";

/**
 * Reads and writes propagation fields (`traceparent`, `tracestate`, `baggage`) on a Fetch API
 * `Headers` object: the request and response headers Connect gives interceptors. Header names are
 * case-insensitive; repeated headers read as their comma-joined value.
 */
export const headersCarrier: TextMapGetter<Headers> & TextMapSetter<Headers> = {
  keys(carrier) {
    return [...carrier.keys()];
  },
  get(carrier, key) {
    return carrier.get(key) ?? undefined;
  },
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

/**
 * Reads and writes propagation fields on `@grpc/grpc-js` call `Metadata`, so plain gRPC clients
 * (carrier gateways, load generators) can join or start a trace. Binary (`-bin`) entries are
 * ignored; a repeated key reads as its first value.
 */
export const grpcMetadataCarrier: TextMapGetter<Metadata> & TextMapSetter<Metadata> = {
  keys(carrier) {
    return Object.keys(carrier.getMap());
  },
  get(carrier, key) {
    const value = carrier.get(key.toLowerCase()).find((v) => typeof v === "string");
    return typeof value === "string" ? value : undefined;
  },
  set(carrier, key, value) {
    carrier.set(key.toLowerCase(), value);
  },
};

/**
 * Writes the trace context of `ctx` (default: the active context) into gRPC `metadata` with the
 * global propagator, and returns `metadata`. Writes nothing when no span is active or telemetry is
 * not started.
 *
 * @example
 * client.makeUnaryRequest(path, ser, de, req, injectIntoGrpcMetadata(new Metadata()), cb);
 */
export function injectIntoGrpcMetadata(metadata: Metadata, ctx: Context = context.active()): Metadata {
  propagation.inject(ctx, metadata, grpcMetadataCarrier);
  return metadata;
}

/**
 * The context carried by gRPC `metadata` on top of `base` (default: the active context); `base`
 * itself when the metadata carries none.
 */
export function extractFromGrpcMetadata(metadata: Metadata, base: Context = context.active()): Context {
  return propagation.extract(base, metadata, grpcMetadataCarrier);
}
