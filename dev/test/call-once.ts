import type { DescMethod, DescService, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { IngestService } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { MeshServiceName } from "./e2e-mesh.js";

/** The mesh's services and the process serving each. */
export const MESH_SERVICES: ReadonlyArray<[DescService, MeshServiceName]> = [
  [IngestService, "ingest"],
  [RoutingService, "routing"],
  [TrackingService, "tracking"],
  [NotificationService, "notification"],
];


/** How one call of any method ended: the Connect code (0 for OK), the error, and what came back. */
export interface CallOutcome {
  code: Code | 0;
  error?: ConnectError;
  output?: Message[];
}

/**
 * Calls any method of `client` with one request message (a stream of one for client and bidi
 * streams; a server stream is read to its first message), within `timeoutMs` (default 10 s).
 */
export async function callOnce(
  client: Client<DescService>,
  method: DescMethod,
  req: Message,
  headers: Record<string, string>,
  timeoutMs = 10_000,
): Promise<CallOutcome> {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method.localName]!;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    switch (method.methodKind) {
      case "unary":
        return { code: 0, output: [(await fn(req, { headers, signal })) as Message] };
      case "server_streaming": {
        const out: Message[] = [];
        const ctl = new AbortController();
        for await (const m of fn(req, { headers, signal: AbortSignal.any([signal, ctl.signal]) }) as AsyncIterable<Message>) {
          out.push(m);
          ctl.abort(); // the first message is enough
        }
        return { code: 0, output: out };
      }
      case "bidi_streaming":
      case "client_streaming": {
        const requests = (async function* () {
          yield req;
        })();
        const res = fn(requests, { headers, signal });
        if (method.methodKind === "client_streaming") return { code: 0, output: [(await res) as Message] };
        const out: Message[] = [];
        for await (const m of res as AsyncIterable<Message>) out.push(m);
        return { code: 0, output: out };
      }
    }
  } catch (e) {
    const error = ConnectError.from(e);
    if (error.code === Code.Canceled) return { code: 0 };
    return { code: error.code, error };
  }
}
