/** What differs between the services a test starts: its servers, prefix and keys. */
export interface ServiceTestEnvOptions {
  /** NATS_URL: the test's nats-server. */
  readonly natsUrl: string;
  /** SUBJECT_PREFIX: unique per test, so streams and subjects never collide. */
  readonly prefix: string;
  /** JWT_PUBLIC_KEY_FILE: the JWKS of the test's signing key (`ensureDevKeys(dir).jwksPath`). */
  readonly jwksPath: string;
  /** DATABASE_URL, for a service with a database (e.g. a `createTestSchema()` connection string). */
  readonly databaseUrl?: string;
}

/**
 * The environment a service under test starts with, before its own settings: RPC and metrics on
 * free loopback ports, logs silent (or `TEST_LOG_LEVEL`), a short shutdown grace, and the test's
 * NATS server, prefix, keys and database. Spread service-specific variables after it.
 */
export function serviceTestEnv(o: ServiceTestEnvOptions): Record<string, string> {
  return {
    HOST: "127.0.0.1",
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: process.env["TEST_LOG_LEVEL"] ?? "silent",
    NATS_URL: o.natsUrl,
    SUBJECT_PREFIX: o.prefix,
    JWT_PUBLIC_KEY_FILE: o.jwksPath,
    SHUTDOWN_GRACE_MS: "3000",
    ...(o.databaseUrl !== undefined ? { DATABASE_URL: o.databaseUrl } : {}),
  };
}
