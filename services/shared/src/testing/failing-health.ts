import { createClient, createRouterTransport, type Client, type Interceptor } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";

/**
 * A Health client over an in-memory router whose handlers fail with `fail(service)`: `check`
 * throws it, `watch` yields one message (status 1) and then throws it. For testing how
 * `interceptors` treat a handler's errors, in a call and in a stream that fails midway.
 */
export function failingHealthClient(fail: (service: string) => unknown, interceptors: Interceptor[]): Client<typeof Health> {
  const transport = createRouterTransport(
    (router) =>
      router.service(Health, {
        check: (req) => {
          throw fail(req.service);
        },
        async *watch(req) {
          yield { status: 1 };
          throw fail(req.service);
        },
      }),
    { router: { interceptors } },
  );
  return createClient(Health, transport);
}
