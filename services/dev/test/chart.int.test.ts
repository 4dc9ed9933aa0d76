import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { describe, it } from "vitest";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Ajv, type ValidateFunction } from "ajv";
import { parse as parseYaml } from "yaml";
import type { ConfigDefinition, EnvVar } from "../../shared/src/config/env-config.js";
import { repoRoot } from "../../shared/src/testing/index.js";

/*
 * Checks of the Helm chart (charts/logistics-mesh) and the Dockerfile against the code they
 * deploy: the values validate against values.schema.json (and bad values do not), the
 * environment the chart sets is exactly what the services parse, and the image's build steps and
 * entry points exist. `helm lint` / `helm template` run where a helm binary is on PATH.
 */

const run = promisify(execFile);

const root = repoRoot;
const chartDir = join(root, "charts", "logistics-mesh");
const read = (...p: string[]) => readFileSync(join(...p), "utf8");

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function loadYaml(path: string): Obj {
  const v: unknown = parseYaml(readFileSync(path, "utf8"));
  assert.ok(isObj(v), `${path} must hold a YAML mapping`);
  return v;
}

/** Helm's merge of a `-f` file over the chart's values: maps merge key by key, anything else is replaced, null deletes. */
function helmMerge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else {
      const b = out[k];
      out[k] = isObj(b) && isObj(v) ? helmMerge(b, v) : v;
    }
  }
  return out;
}

const clone = (o: Obj): Obj => structuredClone(o);

function at(o: Obj, path: string): Obj {
  let cur: Json = o;
  for (const seg of path.split(".")) {
    assert.ok(isObj(cur), `${path}: not a mapping at ${seg}`);
    cur = cur[seg] as Json;
  }
  assert.ok(isObj(cur), `${path} is not a mapping`);
  return cur;
}

const schema = JSON.parse(read(chartDir, "values.schema.json")) as Obj;
const defaults = loadYaml(join(chartDir, "values.yaml"));
const production = helmMerge(defaults, loadYaml(join(chartDir, "examples", "production.yaml")));
const valueSets: ReadonlyArray<readonly [string, Obj]> = [
  ["values.yaml", defaults],
  ["values.yaml + examples/production.yaml", production],
];
const templateFiles = readdirSync(join(chartDir, "templates")).filter((f) => /\.(ya?ml|tpl)$/.test(f));
const templates = templateFiles.map((f) => read(chartDir, "templates", f)).join("\n");

/** Draft-07 validation as Helm does at install time; unknown keywords in the schema are errors (Ajv strict). */
function compileSchema(): ValidateFunction {
  const ajv = new Ajv({ allErrors: true, strictTypes: false });
  return ajv.compile(schema);
}

function errorsOf(validate: ValidateFunction, values: Obj): string[] {
  if (validate(values)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`);
}

/** Env var names the workload template sets itself (schema keeps them out of `env`). */
function chartManagedNames(): string[] {
  const envMap = at(schema, "definitions.envMap");
  const allOf = (envMap["propertyNames"] as Obj)["allOf"];
  assert.ok(Array.isArray(allOf));
  for (const part of allOf) {
    if (isObj(part) && isObj(part["not"]) && Array.isArray(part["not"]["enum"])) return part["not"]["enum"].map(String);
  }
  throw new Error("values.schema.json: definitions.envMap.propertyNames has no `not: {enum}` list of chart-managed names");
}

type AnyConfig = ConfigDefinition<Record<string, EnvVar<unknown>>>;

/** A service's `<name>Config` export from services/<name>/src/config.ts. */
async function loadConfig(service: string): Promise<AnyConfig> {
  const file = join(root, "services", service, "src", "config.ts");
  assert.ok(existsSync(file), `services.${service}: no services/${service}/src/config.ts`);
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const config: unknown = mod[`${service}Config`];
  const ok = typeof config === "object" && config !== null && Array.isArray((config as { names?: unknown }).names);
  assert.ok(ok, `services/${service}/src/config.ts must export ${service}Config`);
  return config as AnyConfig;
}

function enabledServices(values: Obj): Array<[string, Obj]> {
  return Object.entries(at(values, "services")).filter((e): e is [string, Obj] => isObj(e[1]) && e[1]["enabled"] === true);
}

const keys = (v: Json | undefined): string[] => (isObj(v ?? null) ? Object.keys(v as Obj) : []);

describe("values.schema.json", () => {
  it("is valid draft-07 JSON Schema with no unknown keywords", () => {
    assert.equal(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert.doesNotThrow(() => compileSchema());
  });

  for (const [label, values] of valueSets) {
    it(`accepts ${label}`, () => {
      assert.deepEqual(errorsOf(compileSchema(), values), []);
    });
  }

  const broken: ReadonlyArray<readonly [string, (v: Obj) => void, RegExp]> = [
    ["replicaCount 0", (v) => (at(v, "services.ingest")["replicaCount"] = 0), /\/services\/ingest\/replicaCount must be >= 1/],
    ["replicaCount as a string", (v) => (at(v, "services.ingest")["replicaCount"] = "2"), /\/services\/ingest\/replicaCount must be integer/],
    ["a numeric image tag (YAML `tag: 1.10` is a number)", (v) => (at(v, "image")["tag"] = 1.1), /\/image\/tag must be string/],
    ["a service without its port", (v) => delete at(v, "services.routing")["port"], /\/services\/routing must have required property 'port'/],
    ["a port out of range", (v) => (at(v, "services.tracking")["metricsPort"] = 70000), /\/services\/tracking\/metricsPort must be <= 65535/],
    ["a service name that is no DNS label", (v) => (at(v, "services")["Bad_Name"] = at(v, "services.ingest")), /\/services property name must be valid/],
    ["an unknown key in a service block (typo)", (v) => (at(v, "services.ingest")["replicas"] = 2), /\/services\/ingest must NOT have additional properties/],
    ["an unknown top-level key (typo)", (v) => (v["servics"] = {}), /\/ must NOT have additional properties/],
    ["3-way JetStream off the 1|3|5 menu", (v) => (at(v, "jetstream")["streamReplicas"] = 2), /\/jetstream\/streamReplicas must be equal to one of the allowed values/],
    ["a NATS cluster of 2", (v) => (at(v, "nats.config.cluster")["replicas"] = 2), /\/nats\/config\/cluster\/replicas must be equal to one of the allowed values/],
    ["bundled NATS without JetStream", (v) => (at(v, "nats.config.jetstream")["enabled"] = false), /\/nats\/config\/jetstream\/enabled must be equal to constant/],
    ["no NATS at all", (v) => (at(v, "nats")["enabled"] = false), /\/natsUrl must NOT have fewer than 1 characters/],
    ["a chart-managed name in env", (v) => (at(v, "services.routing.env")["PORT"] = "1"), /\/services\/routing\/env property name must be valid/],
    ["a lower-case env name", (v) => (at(v, "env")["log_level"] = "debug"), /\/env property name must be valid/],
    ["a non-string env value", (v) => (at(v, "env")["INGEST_REGION"] = 5), /\/env\/INGEST_REGION must be string/],
    ["a secretEnv entry without key", (v) => (at(v, "services.ingest.secretEnv")["REDIS_URL"] = { secretName: "s" }), /\/services\/ingest\/secretEnv\/REDIS_URL must have required property 'key'/],
    ["no token signing keys", (v) => (at(v, "auth.keysSecret")["name"] = ""), /\/auth must match a schema in anyOf/],
    ["autoscaling without bounds", (v) => delete at(v, "services.ingest.autoscaling")["maxReplicas"], /\/services\/ingest\/autoscaling must have required property 'maxReplicas'/],
    ["a PDB with both minAvailable and maxUnavailable", (v) => (at(v, "services.ingest.podDisruptionBudget")["minAvailable"] = 1), /\/services\/ingest\/podDisruptionBudget must NOT be valid/],
    ["an empty rpcFrom (would open the RPC port to all)", (v) => (at(v, "networkPolicy")["rpcFrom"] = []), /\/networkPolicy\/rpcFrom must NOT have fewer than 1 items/],
    ["a zero shutdown margin", (v) => (at(v, "shutdown")["marginSeconds"] = 0), /\/shutdown\/marginSeconds must be >= 1/],
    ["an enabled ingress without hosts", (v) => (at(v, "services.routing")["ingress"] = { enabled: true }), /\/services\/routing\/ingress must have required property 'hosts'/],
  ];
  for (const [what, mutate, expected] of broken) {
    it(`rejects ${what}`, () => {
      const values = clone(defaults);
      mutate(values);
      const errors = errorsOf(compileSchema(), values);
      assert.ok(errors.some((e) => expected.test(e)), `expected an error like ${expected}, got:\n${errors.join("\n")}`);
    });
  }
});

describe("the chart's environment for each service", () => {
  it("sets in the template exactly the names values.schema.json reserves as chart-managed", () => {
    const workload = read(chartDir, "templates", "services.yaml");
    const inTemplate = new Set([...workload.matchAll(/^\s*- name: ([A-Z][A-Z0-9_]*)\s*$/gm)].map((m) => m[1]));
    assert.deepEqual([...inTemplate].sort(), [...chartManagedNames()].sort());
  });

  for (const [label, values] of valueSets) {
    it(`uses only names each service parses, and every required one (${label})`, async () => {
      const managed = chartManagedNames();
      const shared = keys(values["env"]);
      const services = enabledServices(values);
      assert.ok(services.length >= 4, "ingest, routing, tracking and notification are enabled");
      for (const [name, svc] of services) {
        const config = await loadConfig(name);
        const accepted = new Set(config.names);
        const provided = [...managed, ...shared, ...keys(svc["env"]), ...keys(svc["secretEnv"])];
        const unknown = provided.filter((n) => !accepted.has(n));
        assert.deepEqual(unknown, [], `${name}: the chart sets variables ${name}Config does not read`);
        const required = Object.entries(config.spec)
          .filter(([, v]) => !("default" in v))
          .map(([n]) => n);
        const missing = required.filter((n) => !provided.includes(n));
        assert.deepEqual(missing, [], `${name}: required variables (no default in ${name}Config) the chart does not set`);
        // The template sets JWT_JWKS_URL or JWT_PUBLIC_KEY_FILE; the base config needs one of them.
        assert.ok(accepted.has("JWT_JWKS_URL") && accepted.has("JWT_PUBLIC_KEY_FILE"));
      }
    });

    it(`sets every variable whose default points at this host, and no secret in plain env (${label})`, async () => {
      const managed = chartManagedNames();
      const loopback = /\b(127\.0\.0\.1|localhost|\[::1\])\b/;
      for (const [name, svc] of enabledServices(values)) {
        const config = await loadConfig(name);
        const plain = [...keys(values["env"]), ...keys(svc["env"])];
        const provided = new Set([...managed, ...plain, ...keys(svc["secretEnv"])]);
        // In a pod, a default of 127.0.0.1 (a developer's local PostgreSQL, Redis, NATS) points at the pod itself.
        const local = Object.entries(config.spec)
          .filter(([, v]) => "default" in v && loopback.test(JSON.stringify(v.default ?? "")))
          .map(([n]) => n);
        assert.ok(local.length > 0, `${name}: NATS_URL at least defaults to a local server`);
        assert.deepEqual(local.filter((n) => !provided.has(n)), [], `${name}: variables left at a loopback default`);
        const secrets = Object.entries(config.spec)
          .filter(([, v]) => v.secret === true)
          .map(([n]) => n);
        assert.deepEqual(plain.filter((n) => secrets.includes(n)), [], `${name}: secrets belong in secretEnv, not env`);
      }
    });

    it(`gives values each service's own parser accepts (${label})`, async () => {
      for (const [name, svc] of enabledServices(values)) {
        const config = await loadConfig(name);
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries({ ...(values["env"] as Obj), ...(svc["env"] as Obj) })) env[k] = String(v);
        const auth = at(values, "auth");
        const shutdown = at(values, "shutdown");
        Object.assign(env, {
          PORT: String(svc["port"]),
          METRICS_PORT: String(svc["metricsPort"]),
          STREAM_REPLICAS: String(at(values, "jetstream")["streamReplicas"]),
          SHUTDOWN_GRACE_MS: String(shutdown["graceMs"]),
          DRAIN_DELAY_MS: String(shutdown["drainDelayMs"]),
        });
        if (values["natsUrl"]) env["NATS_URL"] = String(values["natsUrl"]);
        if (auth["jwksUrl"]) env["JWT_JWKS_URL"] = String(auth["jwksUrl"]);
        else env["JWT_PUBLIC_KEY_FILE"] = `${String(auth["mountPath"])}/${String(at(auth, "keysSecret")["key"])}`;
        for (const [k, raw] of Object.entries(env)) {
          const spec = config.spec[k];
          assert.ok(spec, `${name}: ${k} is not a variable of ${name}Config`);
          assert.doesNotThrow(() => spec.parse(raw), `${name}: ${k}=${JSON.stringify(raw)} is rejected by ${name}Config`);
        }
      }
    });
  }

  it("keeps terminationGracePeriodSeconds above SHUTDOWN_GRACE_MS + DRAIN_DELAY_MS", () => {
    const helper = read(chartDir, "templates", "_helpers.tpl");
    assert.match(helper, /define "logistics-mesh.terminationGracePeriodSeconds"[\s\S]*add \(div \(add \$ms 999\) 1000\) \(int \.Values\.shutdown\.marginSeconds\)/);
    assert.equal(at(at(schema, "properties"), "shutdown.properties.marginSeconds")["minimum"], 1);
    for (const [, values] of valueSets) {
      const s = at(values, "shutdown");
      const seconds = Math.ceil((Number(s["graceMs"]) + Number(s["drainDelayMs"])) / 1000) + Number(s["marginSeconds"]);
      assert.ok(seconds * 1000 > Number(s["graceMs"]) + Number(s["drainDelayMs"]));
    }
  });
});

describe("the templates' references", () => {
  it("name only values that values.yaml declares", () => {
    const refs = new Set([...templates.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)].map((m) => m[1]!.replace(/\.$/, "")));
    const undeclared: string[] = [];
    for (const ref of refs) {
      // The NATS chart's own values (nameOverride, config.nats.port, ...) default in that chart.
      if (ref.startsWith("nats.") && ref !== "nats.enabled") continue;
      let cur: Json | undefined = defaults;
      for (const seg of ref.split(".")) cur = isObj(cur ?? null) ? (cur as Obj)[seg] : undefined;
      if (cur === undefined) undeclared.push(ref);
    }
    assert.deepEqual(undeclared, []);
  });

  it("read only service settings the schema defines", () => {
    const props = at(schema, "definitions.service.properties");
    const refs = new Set([...templates.matchAll(/\$svc\.([A-Za-z0-9_.]+)/g)].map((m) => m[1]!.replace(/\.$/, "")));
    assert.ok(refs.size > 5);
    const unknown = [...refs].filter((ref) => {
      let cur: Json | undefined = { properties: props };
      for (const seg of ref.split(".")) {
        const p: Json | undefined = isObj(cur ?? null) ? (cur as Obj)["properties"] : undefined;
        const next: Json | undefined = isObj(p ?? null) ? (p as Obj)[seg] : undefined;
        if (isObj(next ?? null) && typeof (next as Obj)["$ref"] === "string") {
          cur = at(schema, String((next as Obj)["$ref"]).replace(/^#\//, "").replaceAll("/", "."));
        } else cur = next;
        if (cur === undefined) return true;
      }
      return false;
    });
    assert.deepEqual(unknown, []);
  });
});

describe("Dockerfile", () => {
  const dockerfile = read(root, "Dockerfile");
  const pkg = JSON.parse(read(root, "package.json")) as { scripts: Record<string, string> };
  // Join continued lines so each instruction is one line.
  const instructions = dockerfile
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));

  it("runs only npm scripts that package.json defines", () => {
    const used = instructions
      .filter((l) => /^RUN\b/i.test(l))
      .flatMap((l) => [...l.matchAll(/\bnpm run(?:-script)? ([A-Za-z0-9:_-]+)/g)].map((m) => m[1]!));
    assert.ok(used.includes("build"), "the image compiles with `npm run build`");
    for (const script of used) assert.ok(pkg.scripts[script], `npm run ${script}: no such script in package.json`);
    assert.match(pkg.scripts["build"] ?? "", /tsc -p tsconfig\.build\.json/);
  });

  it("copies from the build context only files that exist and .dockerignore keeps", () => {
    const ignored = read(root, ".dockerignore")
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#") && !l.startsWith("!"))
      .map((l) => l.replace(/^\*\*\//, "").replace(/\/$/, ""));
    const sources = instructions
      .filter((l) => /^COPY\b/i.test(l) && !/--from=/i.test(l))
      .flatMap((l) => l.split(/\s+/).slice(1).filter((t) => !t.startsWith("--")).slice(0, -1));
    assert.ok(sources.includes("package-lock.json"), "npm ci needs the lockfile");
    for (const src of sources) {
      assert.ok(existsSync(join(root, src)), `COPY ${src}: not in the repository`);
      assert.ok(!ignored.includes(src.split("/")[0]!), `COPY ${src}: excluded by .dockerignore`);
    }
  });

  it("builds on node:20-bookworm-slim and runs as uid 10001 with node as the entrypoint", () => {
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    const froms = instructions.filter((l) => /^FROM\b/i.test(l));
    assert.equal(froms.length, 2);
    for (const f of froms) assert.match(f, /^FROM \$\{NODE_IMAGE\} AS \w+$/);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("FROM "));
    assert.match(runtime, /^USER 10001:10001$/m);
    assert.match(runtime, /^ENTRYPOINT \["node"\]$/m);
    assert.match(dockerfile, /npm prune --omit=dev/);
  });

  it("starts entry points that `npm run build` produces", () => {
    const cmd = instructions.find((l) => /^CMD\b/.test(l));
    assert.ok(cmd, "a default CMD");
    const defaultMain = (JSON.parse(cmd.slice(3).trim()) as string[])[0]!;
    const helper = read(chartDir, "templates", "_helpers.tpl");
    const pattern = /printf "(dist\/services\/%s\/src\/main\.js)" \.name/.exec(helper)?.[1];
    assert.ok(pattern, "_helpers.tpl derives the entry script from the service name");
    const mains = [defaultMain];
    for (const [, values] of valueSets) {
      for (const [name, svc] of Object.entries(at(values, "services"))) {
        mains.push(isObj(svc) && typeof svc["main"] === "string" ? svc["main"] : pattern.replace("%s", name));
      }
    }
    for (const main of new Set(mains)) {
      assert.ok(existsSync(join(root, main)), `${main} does not exist: run \`npm run build\` first, or fix the path`);
    }
  });
});

describe("helm", () => {
  const helm = (process.env["PATH"] ?? "")
    .split(delimiter)
    .map((d) => join(d, "helm"))
    .find((p) => existsSync(p));

  const title = "lints and renders the chart (default and production values)";
  it.skipIf(!helm)(helm ? title : `${title} (skipped: no helm binary on PATH, helm lint / helm template not run)`, async (t) => {
    assert.ok(helm);
    const work = await mkdtemp(join(tmpdir(), "chart-"));
    try {
      const chart = join(work, "logistics-mesh");
      await cp(chartDir, chart, { recursive: true });
      try {
        await run(helm, ["dependency", "build", chart], { timeout: 120_000 });
      } catch (e) {
        t.skip(`helm dependency build failed (the NATS chart repository is unreachable?): ${String(e)}`);
      }
      const prod = join(chartDir, "examples", "production.yaml");
      await run(helm, ["lint", "--strict", chart]);
      await run(helm, ["lint", "--strict", chart, "-f", prod]);
      const { stdout } = await run(helm, ["template", "mesh", chart, "-f", prod], { maxBuffer: 32 << 20 });
      for (const svc of ["ingest", "routing", "tracking", "notification"]) {
        assert.match(stdout, new RegExp(`name: mesh-logistics-mesh-${svc}\\n`));
      }
      assert.match(stdout, /readOnlyRootFilesystem: true/);
      assert.match(stdout, /kind: HorizontalPodAutoscaler/);
      await assert.rejects(
        run(helm, ["template", "mesh", chart, "--set", "services.ingest.replicaCount=0"]),
        /replicaCount/,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
