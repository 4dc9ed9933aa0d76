export { startBlackHole, startTcpProxy, type BlackHole, type TcpProxy } from "./black-hole.js";
export { startTestConnectServer, type TestConnectServer } from "./connect-server.js";
export { getFreePort } from "./free-port.js";
export {
  removeOnExit,
  spawnManagedProcess,
  type ManagedProcess,
  type ManagedProcessOptions,
  type ProcessExit,
} from "./managed-process.js";
export {
  startNatsCluster,
  startNatsServer,
  type NatsClusterHandle,
  type NatsClusterOptions,
  type NatsServerHandle,
  type NatsServerOptions,
} from "./nats-server.js";
export { findOnPath } from "./on-path.js";
export {
  startPrometheusServer,
  type PrometheusAlert,
  type PrometheusSample,
  type PrometheusServerHandle,
  type PrometheusServerOptions,
} from "./prometheus-server.js";
export { createTestSchema, type TestSchema, type TestSchemaOptions } from "./postgres.js";
export { testDatabaseUrl, testNatsUrl, testRedisUrl } from "./test-servers.js";
export {
  embeddedPostgresBinaries,
  postgresBinaries,
  startPostgresServer,
  type PostgresServerHandle,
  type PostgresServerOptions,
} from "./postgres-server.js";
export { startRedisServer, type RedisServerHandle, type RedisServerOptions } from "./redis-server.js";
export {
  OtlpSpanKind,
  startOtlpReceiver,
  type OtlpLink,
  type OtlpReceiver,
  type OtlpReceiverOptions,
  type OtlpRequest,
  type OtlpSpan,
  type OtlpValue,
} from "./otlp-receiver.js";
export { seededRandom } from "./seeded-random.js";
export { serviceTestEnv, type ServiceTestEnvOptions } from "./service-env.js";
export { createTestKeys, type TestKeys, type TestTokenClaims } from "./test-keys.js";
export { uniqueName } from "./unique.js";
export { violationPaths } from "./violations.js";
export { waitFor, WaitForTimeoutError, type WaitForOptions } from "./wait-for.js";
export { compiledEntry, repoRoot } from "./repo-paths.js";
export { startReceiver, type ReceivedRequest, type ReceiverReply, type TestReceiver } from "./webhook-receiver.js";
export {
  assertHeapReturnsAfterStreams,
  mib,
  readMetric,
  spawnProbedProcess,
  type HeapFigures,
  type OpenStreams,
  type ProbedProcess,
} from "./service-process.js";
export { deepUnknownField, dribble, lastClosed, rawConnection, slowClients, type RawConnection } from "./hostile-clients.js";
