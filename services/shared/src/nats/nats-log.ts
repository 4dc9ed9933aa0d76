/**
 * The narrow logging interface the NATS plumbing needs. pino loggers satisfy it; tests may pass
 * nothing (logs are dropped).
 */
export interface NatsLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A logger that drops everything. */
export const silentNatsLog: NatsLog = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});
