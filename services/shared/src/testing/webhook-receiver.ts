import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/*
 * A real webhook receiver for tests: node:http on 127.0.0.1, recording every request with its
 * arrival time, answering as the test says (status, delay, headers).
 */

/** A request a test receiver got. */
export interface ReceivedRequest {
  readonly at: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly json: { id: string; type: string; data: { tracking_number: string; shipment_version: number } };
}

/** What a test receiver answers. */
export interface ReceiverReply {
  status: number;
  delayMs?: number;
  body?: string;
  headers?: Record<string, string>;
}

/** A real node:http webhook receiver on 127.0.0.1. */
export interface TestReceiver {
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order. */
  readonly requests: ReceivedRequest[];
  /** Requests answered 2xx, in answer order. */
  readonly accepted: ReceivedRequest[];
  /** Most requests handled at once. */
  maxConcurrent: number;
  /** Connections accepted. */
  connections: number;
  close(): Promise<void>;
}

/** Starts a receiver answering each request with `reply(request, index)`. */
export async function startReceiver(
  reply: (r: ReceivedRequest, index: number) => ReceiverReply = () => ({ status: 204 }),
  port = 0,
): Promise<TestReceiver> {
  let active = 0;
  const sockets = new Set<Socket>();
  const receiver: TestReceiver = {
    url: "",
    port: 0,
    requests: [],
    accepted: [],
    maxConcurrent: 0,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const r: ReceivedRequest = { at: performance.now(), headers: req.headers, body, json: JSON.parse(body.toString("utf8")) };
      const index = receiver.requests.length;
      receiver.requests.push(r);
      active++;
      receiver.maxConcurrent = Math.max(receiver.maxConcurrent, active);
      const answer = reply(r, index);
      const send = () => {
        active--;
        if (res.destroyed) return;
        if (answer.status >= 200 && answer.status < 300) receiver.accepted.push(r);
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? "");
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  server.on("connection", (s) => {
    receiver.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const p = (server.address() as AddressInfo).port;
  Object.assign(receiver, { url: `http://127.0.0.1:${p}/hooks`, port: p });
  return receiver;
}
