/**
 * The PostgreSQL, NATS and Redis that tests share. The test run's global setup provides them
 * (`DATABASE_URL`, `NATS_URL`, `REDIS_URL`: the servers named by the environment, or private ones
 * it starts); tests read them only through these functions, never a default port.
 */
function required(name: "DATABASE_URL" | "NATS_URL" | "REDIS_URL"): string {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") {
    throw new Error(
      `${name} is not set: run the tests with Vitest (the global setup of the integration and browser projects ` +
        `provides PostgreSQL, NATS and Redis), or set ${name} to a server of your own`,
    );
  }
  return v;
}

/** The shared test database (`DATABASE_URL`); tests work in a schema of their own ({@link createTestSchema}). */
export const testDatabaseUrl = (): string => required("DATABASE_URL");
/** The shared Redis (`REDIS_URL`); tests use key prefixes of their own. */
export const testRedisUrl = (): string => required("REDIS_URL");
/** The shared NATS with JetStream (`NATS_URL`); tests use subject prefixes of their own. */
export const testNatsUrl = (): string => required("NATS_URL");
