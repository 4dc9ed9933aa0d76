/**
 * Typed, validated configuration from environment variables. A service declares its variables
 * once with `defineConfig`; parsing collects every bad value and fails with one line per
 * problem, so an operator fixes them all in one go. The declared names are also what the Helm
 * chart is checked against.
 */

/** One variable: how to parse it, its default, and what it is for. */
export interface EnvVar<T> {
  readonly description: string;
  /** Parses a present, non-empty value; throws an Error whose message says what is wrong. */
  parse(raw: string): T;
  /** Used when the variable is unset or empty. Omitted means required. */
  readonly default?: T;
  /** Never print the value (secrets). */
  readonly secret?: boolean;
}

type Spec = Record<string, EnvVar<unknown>>;
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends EnvVar<infer T> ? T : never };

/** Thrown by `parse` with every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export interface ConfigDefinition<S extends Spec> {
  readonly spec: S;
  /** The environment variable names this config reads. */
  readonly names: readonly string[];
  /** Parses `env` (normally `process.env`) into a frozen config, or throws ConfigError. */
  parse(env: Readonly<Record<string, string | undefined>>): ConfigOf<S>;
}

/**
 * Declares a configuration. `check` adds cross-variable rules (e.g. "set both or neither");
 * its problems are reported together with the per-variable ones.
 */
export function defineConfig<S extends Spec>(spec: S, check?: (config: ConfigOf<S>) => string[]): ConfigDefinition<S> {
  return {
    spec,
    names: Object.keys(spec),
    parse(env) {
      const out: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const [name, v] of Object.entries(spec)) {
        const raw = env[name];
        if (raw === undefined || raw.trim() === "") {
          if ("default" in v) out[name] = v.default;
          else problems.push(`${name} is required (${v.description})`);
          continue;
        }
        try {
          out[name] = v.parse(raw.trim());
        } catch (e) {
          const shown = v.secret ? "<secret>" : JSON.stringify(redactCredentials(raw));
          problems.push(`${name}=${shown}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      if (!problems.length && check) problems.push(...check(out as ConfigOf<S>));
      if (problems.length) throw new ConfigError(problems);
      return Object.freeze(out) as ConfigOf<S>;
    },
  };
}

/** Hides the password of anything that looks like a URL with credentials (connection strings). */
export function redactCredentials(raw: string): string {
  return raw.replace(/\/\/([^/@\s:]*):[^/@\s]*@/g, "//$1:***@");
}

interface Common<T> {
  description: string;
  default?: T;
  secret?: boolean;
}

function withDefault<T>(o: Common<T>, parse: (raw: string) => T): EnvVar<T> {
  return { ...o, parse };
}

/** A string, optionally matched against a pattern. */
export function str(o: Common<string> & { pattern?: RegExp }): EnvVar<string> {
  return withDefault(o, (raw) => {
    if (o.pattern && !o.pattern.test(raw)) throw new Error(`must match ${o.pattern}`);
    return raw;
  });
}

/** An integer within [min, max]. */
export function int(o: Common<number> & { min?: number; max?: number }): EnvVar<number> {
  return withDefault(o, (raw) => {
    if (!/^-?\d+$/.test(raw)) throw new Error("must be an integer");
    const n = Number(raw);
    if (o.min !== undefined && n < o.min) throw new Error(`must be >= ${o.min}`);
    if (o.max !== undefined && n > o.max) throw new Error(`must be <= ${o.max}`);
    return n;
  });
}

/** A decimal number within [0, 1] (a ratio, e.g. a sampling probability). */
export function fraction(o: Common<number>): EnvVar<number> {
  return withDefault(o, (raw) => {
    if (!/^(0|1|0?\.\d+|1\.0+)$/.test(raw.trim())) throw new Error("must be a number from 0 to 1");
    return Number(raw);
  });
}

/** A TCP port (0..65535). */
export function port(o: Common<number>): EnvVar<number> {
  return int({ ...o, min: 0, max: 65535 });
}

/** true/false, 1/0, yes/no. */
export function bool(o: Common<boolean>): EnvVar<boolean> {
  return withDefault(o, (raw) => {
    const v = raw.toLowerCase();
    if (["true", "1", "yes", "on"].includes(v)) return true;
    if (["false", "0", "no", "off"].includes(v)) return false;
    throw new Error("must be true or false");
  });
}

/** A URL whose scheme is one of `protocols` (e.g. ["nats:", "tls:"]). */
export function url(o: Common<string> & { protocols: readonly string[] }): EnvVar<string> {
  return withDefault(o, (raw) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error("must be a URL");
    }
    if (!o.protocols.includes(u.protocol)) throw new Error(`scheme must be one of ${o.protocols.join(", ")}`);
    return raw;
  });
}

/** A comma-separated list of URLs (e.g. several NATS seed servers). */
export function urlList(o: Common<readonly string[]> & { protocols: readonly string[] }): EnvVar<readonly string[]> {
  const one = url({ description: o.description, protocols: o.protocols });
  return withDefault(o, (raw) => Object.freeze(raw.split(",").map((s) => one.parse(s.trim()))));
}

/** A comma-separated list of strings. */
export function list(o: Common<readonly string[]>): EnvVar<readonly string[]> {
  return withDefault(o, (raw) => Object.freeze(raw.split(",").map((s) => s.trim()).filter(Boolean)));
}

/** One of a fixed set of values. */
export function oneOf<const T extends string>(o: Common<T> & { values: readonly T[] }): EnvVar<T> {
  return withDefault(o, (raw) => {
    if (!(o.values as readonly string[]).includes(raw)) throw new Error(`must be one of ${o.values.join(", ")}`);
    return raw as T;
  });
}

/** An optional value: unset means undefined. */
export function optional<T>(v: Omit<EnvVar<T>, "default">): EnvVar<T | undefined> {
  return { ...v, default: undefined };
}
