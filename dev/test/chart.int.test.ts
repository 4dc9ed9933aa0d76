import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "vitest";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Ajv, type ValidateFunction } from "ajv";
import { parse as parseYaml } from "yaml";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { ConfigDefinition, EnvVar } from "@logistics/shared/config";
import { connectNats, createSubjects, ensureStreams, leafnodeDenyList, natsConnectionOptions } from "@logistics/shared/nats";
import { createMetrics } from "@logistics/shared/telemetry";
import { findOnPath, getFreePort, repoRoot, startNatsServer, waitFor } from "@logistics/shared/testing";

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
/** The two-region example (docs/regions.md): each region's file over the production values. */
const regions = new Map(
  ["eu", "us"].map((r) => [r, helmMerge(production, loadYaml(join(chartDir, "examples", `region-${r}.yaml`)))] as const),
);
const valueSets: ReadonlyArray<readonly [string, Obj]> = [
  ["values.yaml", defaults],
  ["values.yaml + examples/production.yaml", production],
  ...[...regions].map(([r, v]) => [`values.yaml + examples/production.yaml + examples/region-${r}.yaml`, v] as const),
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

/** Env var names the workload template sets itself (schema keeps them out of `env` and `secretEnv`). */
function chartManagedNames(): string[] {
  const names = at(schema, "definitions.chartManagedName")["enum"];
  assert.ok(Array.isArray(names), "values.schema.json: definitions.chartManagedName has no enum");
  for (const map of ["envMap", "secretEnvMap"]) {
    const allOf = (at(schema, `definitions.${map}`)["propertyNames"] as Obj)["allOf"];
    const excluded = Array.isArray(allOf) && allOf.some((p) => isObj(p) && isObj(p["not"]) && p["not"]["$ref"] === "#/definitions/chartManagedName");
    assert.ok(excluded, `definitions.${map} must exclude the chart-managed names`);
  }
  return names.map(String);
}

const workloadTemplate = read(chartDir, "templates", "services.yaml");
const helpersTemplate = read(chartDir, "templates", "_helpers.tpl");

/**
 * Chart-managed names used only to build another variable's value (`$(NAME)` expansion from the
 * downward API), so no service parses them.
 */
function expansionOnlyNames(): string[] {
  return [...new Set([...workloadTemplate.matchAll(/\$\(([A-Z][A-Z0-9_]*)\)/g)].map((m) => m[1]!))];
}

/** Names the template sets that a service's config must parse. */
function parsedManagedNames(): string[] {
  const only = expansionOnlyNames();
  return chartManagedNames().filter((n) => !only.includes(n));
}

/** Bytes of a Kubernetes (Ki, Mi, Gi, Ti) or Go (KiB, MiB, GiB, TiB) binary quantity. */
function bytesOf(quantity: Json | undefined): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)B?$/.exec(String(quantity));
  assert.ok(m, `${String(quantity)}: expected a quantity in Ki, Mi, Gi or Ti (KiB... in Go)`);
  return Number(m[1]) * 1024 ** (["Ki", "Mi", "Gi", "Ti"].indexOf(m[2]!) + 1);
}

/** The service's own shutdown deadline (ms) and the pod's terminationGracePeriodSeconds, from values, as _helpers.tpl computes them. */
function shutdownBudget(values: Obj): { deadlineMs: number; graceSeconds: number; proxyWaitSeconds: number } {
  const s = at(values, "shutdown");
  const deadlineMs = Number(s["drainDelayMs"]) + Number(s["graceMs"]) + Number(s["closeMs"]);
  const proxyWaitSeconds = Math.ceil(deadlineMs / 1000);
  return { deadlineMs, graceSeconds: proxyWaitSeconds + Number(s["marginSeconds"]), proxyWaitSeconds };
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
    [
      "a gRPC path with dots and pathType Prefix (ingress-nginx strict path validation)",
      (v) => (at(v, "services.tracking.ingress")["hosts"] = [{ host: "t.example.com", paths: [{ path: "/logistics.tracking.v1.TrackingService/", pathType: "Prefix" }] }]),
      /\/services\/tracking\/ingress\/hosts\/0\/paths\/0\/path must match pattern/,
    ],
    [
      "a path with dots and pathType Exact",
      (v) => (at(v, "services.tracking.ingress")["hosts"] = [{ host: "t.example.com", paths: [{ path: "/a.b", pathType: "Exact" }] }]),
      /\/services\/tracking\/ingress\/hosts\/0\/paths\/0\/path must match pattern/,
    ],
    ["NATS without GOMEMLIMIT", (v) => delete at(v, "nats.container.env")["GOMEMLIMIT"], /\/nats\/container\/env must have required property 'GOMEMLIMIT'/],
    ["GOMEMLIMIT in Kubernetes units", (v) => (at(v, "nats.container.env")["GOMEMLIMIT"] = "1600Mi"), /\/nats\/container\/env\/GOMEMLIMIT must match pattern/],
    ["NATS without a memory limit", (v) => delete at(v, "nats.container.resources.limits")["memory"], /\/nats\/container\/resources\/limits must have required property 'memory'/],
    ["NATS without resources", (v) => delete at(v, "nats.container")["resources"], /\/nats\/container must have required property 'resources'/],
    ["JetStream without max_file_store", (v) => delete at(v, "nats.config.jetstream.fileStore")["maxSize"], /\/nats\/config\/jetstream\/fileStore must have required property 'maxSize'/],
    ["an empty list of database peers (would allow any destination)", (v) => (at(v, "networkPolicy.egress.postgres")["to"] = []), /\/networkPolicy\/egress\/postgres\/to must NOT have fewer than 1 items/],
    [
      "an external NATS without egress peers",
      (v) => {
        at(v, "nats")["enabled"] = false;
        v["natsUrl"] = "tls://nats.messaging:4222";
      },
      /\/networkPolicy\/egress\/nats\/to must NOT have fewer than 1 items/,
    ],
    ["a close budget under a second", (v) => (at(v, "shutdown")["closeMs"] = 500), /\/shutdown\/closeMs must be >= 1000/],
    ["a memory limit the heap flag cannot be computed from", (v) => (at(v, "services.ingest.resources.limits")["memory"] = "512M"), /\/services\/ingest\/resources\/limits\/memory must match pattern/],
    ["a heap of 95% of the memory limit", (v) => (v["heapPercentOfMemoryLimit"] = 95), /\/heapPercentOfMemoryLimit must be <= 90/],
    ["open-stream autoscaling without a target", (v) => (at(v, "services.ingest.autoscaling")["openStreams"] = { enabled: true }), /\/services\/ingest\/autoscaling\/openStreams must have required property 'averageValue'/],
    ["an HTTPRoute without a Gateway", (v) => (at(v, "services.tracking.httpRoute")["enabled"] = true), /\/services\/tracking\/httpRoute\/parentRefs must NOT have fewer than 1 items/],
    [
      "a route to something that is no gRPC service name",
      (v) => (at(v, "services.tracking")["grpcRoute"] = { enabled: true, parentRefs: [{ name: "g" }], hostnames: ["g.example.com"], grpcServices: ["/logistics.tracking.v1.TrackingService/"] }),
      /\/services\/tracking\/grpcRoute\/grpcServices\/0 must match pattern/,
    ],
    ["an unknown NATS auth mode", (v) => (at(v, "natsClient.auth")["mode"] = "token"), /\/natsClient\/auth\/mode must be equal to one of the allowed values/],
    ["NATS TLS without the CA", (v) => (at(v, "natsClient.tls")["enabled"] = true), /\/natsClient\/tls\/caSecret\/name must NOT have fewer than 1 characters/],
    ["region peers without a region name", (v) => (at(v, "region")["peers"] = ["us"]), /\/region\/peers must NOT have more than 0 items/],
    ["a region name that is no subject token", (v) => (at(v, "region")["name"] = "eu.west"), /\/region\/name must match pattern/],
    ["an unknown key in region (the domain is the name)", (v) => (at(v, "region")["domain"] = "eu"), /\/region must NOT have additional properties/],
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
    const inTemplate = new Set([...workloadTemplate.matchAll(/^\s*- name: ([A-Z][A-Z0-9_]*)\s*$/gm)].map((m) => m[1]));
    assert.deepEqual([...inTemplate].sort(), [...chartManagedNames()].sort());
  });

  it("uses downward-API helper variables only inside OTEL_RESOURCE_ATTRIBUTES, which every service parses", async () => {
    const only = expansionOnlyNames();
    assert.deepEqual(only.sort(), ["OTEL_RESOURCE_ATTRIBUTES_NAMESPACE", "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"]);
    for (const name of only) {
      assert.match(workloadTemplate, new RegExp(`- name: ${name}\\n\\s+valueFrom:\\n\\s+fieldRef:`), `${name} comes from the downward API`);
    }
    const attrs = /- name: OTEL_RESOURCE_ATTRIBUTES\n\s+value: \{\{ printf "([^"]+)"/.exec(workloadTemplate)?.[1];
    assert.ok(attrs, "OTEL_RESOURCE_ATTRIBUTES is built in the template");
    for (const name of only) assert.ok(attrs.includes(`$(${name})`));
    for (const key of ["k8s.pod.name", "k8s.namespace.name", "k8s.node.name", "k8s.deployment.name", "deployment.environment.name"]) assert.ok(attrs.includes(`${key}=`));
    for (const [service] of enabledServices(defaults)) {
      const spec = (await loadConfig(service)).spec["OTEL_RESOURCE_ATTRIBUTES"];
      assert.ok(spec, `${service} parses OTEL_RESOURCE_ATTRIBUTES`);
      const sample = attrs.replace(/\$\([A-Z_]+\)/g, "x-1").replace("%s", "mesh-logistics-mesh-x").replace("%s", "production");
      assert.doesNotThrow(() => spec.parse(sample));
    }
  });

  for (const [label, values] of valueSets) {
    it(`uses only names each service parses, and every required one (${label})`, async () => {
      const managed = parsedManagedNames();
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
      const managed = parsedManagedNames();
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
        const jetstream = at(values, "jetstream");
        const natsAuth = at(values, "natsClient.auth");
        const natsTls = at(values, "natsClient.tls");
        Object.assign(env, {
          PORT: String(svc["port"]),
          METRICS_PORT: String(svc["metricsPort"]),
          NATS_URL: values["natsUrl"] ? String(values["natsUrl"]) : `${natsTls["enabled"] ? "tls" : "nats"}://mesh-nats.logistics.svc:4222`,
          STREAM_REPLICAS: String(jetstream["streamReplicas"]),
          STREAM_MAX_AGE_HOURS: String(jetstream["streamMaxAgeHours"]),
          STREAM_MAX_BYTES: String(jetstream["streamMaxBytes"]),
          SHUTDOWN_GRACE_MS: String(shutdown["graceMs"]),
          DRAIN_DELAY_MS: String(shutdown["drainDelayMs"]),
          SHUTDOWN_CLOSE_MS: String(shutdown["closeMs"]),
          OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name=p-1,k8s.namespace.name=logistics,k8s.node.name=n-1,k8s.deployment.name=d",
        });
        if (auth["jwksUrl"]) env["JWT_JWKS_URL"] = String(auth["jwksUrl"]);
        else env["JWT_PUBLIC_KEY_FILE"] = `${String(auth["mountPath"])}/${String(at(auth, "keysSecret")["key"])}`;
        if (natsAuth["mode"] === "userPassword") Object.assign(env, { NATS_USER: name, NATS_PASSWORD: "secret" });
        if (natsAuth["mode"] === "credsFile") env["NATS_CREDS_FILE"] = `${String(natsAuth["mountPath"])}/${name}.creds`;
        if (natsTls["enabled"]) env["NATS_TLS_CA_FILE"] = `${String(natsTls["mountPath"])}/${String(at(natsTls, "caSecret")["key"])}`;
        const region = at(values, "region");
        if (region["name"]) Object.assign(env, { REGION: String(region["name"]), REGION_PEERS: (region["peers"] as Json[]).join(",") });
        for (const [k, raw] of Object.entries(env)) {
          const spec = config.spec[k];
          assert.ok(spec, `${name}: ${k} is not a variable of ${name}Config`);
          assert.doesNotThrow(() => spec.parse(raw), `${name}: ${k}=${JSON.stringify(raw)} is rejected by ${name}Config`);
        }
        // The whole set, with the cross-variable checks, and sample values for the Secrets.
        const secrets: Record<string, string> = { "database-url": "postgres://u:p@db.example:5432/mesh", "redis-url": "rediss://cache.example:6379" };
        for (const [k, ref] of Object.entries(keys(svc["secretEnv"]).length ? (svc["secretEnv"] as Obj) : {})) {
          env[k] = secrets[String((ref as Obj)["key"])] ?? "secret";
        }
        assert.doesNotThrow(() => config.parse(env), `${name}: the chart's environment as a whole is rejected`);
      }
    });
  }

});

describe("the shutdown budget", () => {
  it("is computed in _helpers.tpl as the tests compute it, and the service's own deadline is the same sum", () => {
    assert.match(helpersTemplate, /define "logistics-mesh.shutdownDeadlineMs"[\s\S]*?add \(int \.Values\.shutdown\.drainDelayMs\) \(int \.Values\.shutdown\.graceMs\) \(int \.Values\.shutdown\.closeMs\)/);
    assert.match(helpersTemplate, /define "logistics-mesh.terminationGracePeriodSeconds"[\s\S]*?add \(div \(add \$ms 999\) 1000\) \(int \.Values\.shutdown\.marginSeconds\)/);
    assert.match(helpersTemplate, /define "logistics-mesh.proxyWaitSeconds"[\s\S]*?div \(add \$ms 999\) 1000/);
    assert.match(workloadTemplate, /terminationGracePeriodSeconds: \{\{ include "logistics-mesh.terminationGracePeriodSeconds" \$root \}\}/);
    // The process exits by itself at DRAIN_DELAY_MS + SHUTDOWN_GRACE_MS + SHUTDOWN_CLOSE_MS.
    const runtime = read(root, "services", "shared", "src", "runtime", "start-service.ts");
    assert.match(runtime, /process\.exit\(1\);\n\s*\}, config\.DRAIN_DELAY_MS \+ config\.SHUTDOWN_GRACE_MS \+ config\.SHUTDOWN_CLOSE_MS\)/);
    assert.equal(at(at(schema, "properties"), "shutdown.properties.marginSeconds")["minimum"], 1);
  });

  for (const [label, values] of valueSets) {
    it(`ends the service before the kubelet's SIGKILL and keeps the mesh proxy up until then (${label})`, () => {
      const { deadlineMs, graceSeconds, proxyWaitSeconds } = shutdownBudget(values);
      const s = at(values, "shutdown");
      assert.ok(Number(s["drainDelayMs"]) > 0, "a drain delay lets endpoint removal reach proxies and load balancers");
      assert.ok(deadlineMs < graceSeconds * 1000, `service deadline ${deadlineMs} ms must precede SIGKILL at ${graceSeconds} s`);
      assert.ok(graceSeconds * 1000 - deadlineMs >= 1000, "at least a second between the service's own exit and SIGKILL");
      const linkerd = at(values, "serviceMesh.linkerd");
      if (linkerd["inject"] === true && linkerd["nativeSidecar"] !== true) {
        assert.ok(proxyWaitSeconds * 1000 >= deadlineMs, "a classic proxy outlives the service's drain");
        assert.ok(proxyWaitSeconds < graceSeconds, "and still stops before SIGKILL");
      }
      // The NATS client (skip-outbound-ports) never depends on the proxy during drain.
      if (linkerd["inject"] === true) {
        assert.ok((linkerd["skipOutboundPorts"] as Json[]).includes(Number(at(values, "networkPolicy.egress.nats")["port"])));
      }
    });
  }

  it("keeps a classic sidecar's wait between the service's deadline and SIGKILL for any budget the schema accepts", () => {
    for (const [drain, grace, close, margin] of [[0, 0, 1000, 1], [999, 1, 1000, 1], [5000, 20000, 10000, 5], [1, 1, 1001, 1]] as const) {
      const v = { shutdown: { drainDelayMs: drain, graceMs: grace, closeMs: close, marginSeconds: margin } } as Obj;
      const { deadlineMs, graceSeconds, proxyWaitSeconds } = shutdownBudget(v);
      assert.ok(deadlineMs < graceSeconds * 1000 && proxyWaitSeconds * 1000 >= deadlineMs && proxyWaitSeconds < graceSeconds);
    }
  });

  it("renders the Linkerd native-sidecar annotation, or the wait annotation for a classic sidecar", () => {
    assert.match(workloadTemplate, /if \.nativeSidecar \}\}\n\s+\{\{- \$_ := set \$annotations "config\.beta\.linkerd\.io\/proxy-enable-native-sidecar" "true"/);
    assert.match(workloadTemplate, /"config\.alpha\.linkerd\.io\/proxy-wait-before-exit-seconds" \(include "logistics-mesh\.proxyWaitSeconds" \$root\)/);
    assert.match(workloadTemplate, /"config\.linkerd\.io\/skip-outbound-ports" \(join "," \.\)/);
  });
});

describe("NATS sizing", () => {
  for (const [label, values] of valueSets) {
    it(`bounds memory, disk and the streams' byte reservations (${label})`, () => {
      const nats = at(values, "nats");
      assert.equal(nats["enabled"], true);
      const resources = at(nats, "container.resources");
      const limit = bytesOf(at(resources, "limits")["memory"]);
      assert.deepEqual(at(resources, "requests"), at(resources, "limits"), "requests equal limits (Guaranteed QoS, GOMAXPROCS from the CPU limit)");
      const goMemLimit = bytesOf(at(nats, "container.env")["GOMEMLIMIT"]);
      assert.ok(goMemLimit < limit, "GOMEMLIMIT below the container's memory limit");
      assert.ok(goMemLimit >= 0.7 * limit && goMemLimit <= 0.9 * limit, `GOMEMLIMIT ${goMemLimit} should be 70-90% of ${limit}`);

      const fileStore = at(nats, "config.jetstream.fileStore");
      const pvc = bytesOf(at(fileStore, "pvc")["size"]);
      const maxFileStore = bytesOf(fileStore["maxSize"]);
      assert.ok(maxFileStore <= 0.95 * pvc, `max_file_store ${maxFileStore} leaves headroom on the ${pvc}-byte volume`);

      // JetStream reserves max_bytes of every stream on each server holding a replica of it.
      const jetstream = at(values, "jetstream");
      const streamMaxBytes = Number(jetstream["streamMaxBytes"]);
      assert.ok(streamMaxBytes > 0, "streams are bounded by bytes, not only by age");
      const streams = createSubjects(String(at(values, "env")["SUBJECT_PREFIX"])).streamList.length;
      const servers = Number(at(nats, "config.cluster")["replicas"]);
      const perServer = Math.ceil((streams * Number(jetstream["streamReplicas"])) / servers) * streamMaxBytes;
      assert.ok(perServer <= maxFileStore, `${streams} streams x ${streamMaxBytes} bytes reserved per server exceed max_file_store ${maxFileStore}`);
      assert.equal(at(nats, "natsBox")["enabled"], false, "no nats-box next to the data");
    });
  }
});

/** `<< $VAR >>` in the NATS chart's config: the server reads VAR from its environment. */
function natsEnvRef(value: Json | undefined): string | undefined {
  return /^<< \$([A-Z_][A-Z0-9_]*) >>$/.exec(String(value))?.[1];
}

/** The users of the bundled NATS's accounts, with the Secret key each password comes from. */
function natsUsers(values: Obj): Map<string, { account: string; secretName: string; key: string; envVar: string }> {
  const users = new Map<string, { account: string; secretName: string; key: string; envVar: string }>();
  const env = at(values, "nats.container.env");
  for (const [account, def] of Object.entries(at(values, "nats.config.merge.accounts"))) {
    assert.ok(isObj(def) && Array.isArray(def["users"]), `account ${account} lists users`);
    for (const u of def["users"]) {
      assert.ok(isObj(u));
      const envVar = natsEnvRef(u["password"]);
      assert.ok(envVar, `user ${String(u["user"])}: the password comes from the server's environment, not from values`);
      const ref = at(at(env, envVar), "valueFrom.secretKeyRef");
      users.set(String(u["user"]), { account, secretName: String(ref["name"]), key: String(ref["key"]), envVar });
    }
  }
  return users;
}

describe("JetStream durability", () => {
  for (const [label, values] of valueSets) {
    it(`keeps acknowledged scans through the loss of any one server and fsyncs before acknowledging (${label})`, () => {
      const nats = at(values, "nats");
      // charts/README.md, "JetStream durability": with the server's default sync interval (2 min)
      // a whole-cluster power loss loses what was acknowledged since the last flush.
      assert.equal(at(nats, "config.jetstream.merge")["sync_interval"], "always");
      assert.equal(at(nats, "config.jetstream.fileStore")["enabled"], true, "file storage, not memory");
      assert.equal(at(nats, "config.jetstream.memoryStore")["enabled"], false);
      assert.equal(at(values, "jetstream")["streamReplicas"], 3, "R3 streams");
      assert.ok(Number(at(nats, "config.cluster")["replicas"]) >= 3, "on a cluster of at least three servers");
    });
  }
});

describe("NATS authorization", () => {
  for (const [label, values] of valueSets) {
    it(`gives every service a user whose password the server and the service read from the same Secret key (${label})`, () => {
      const auth = at(values, "natsClient.auth");
      assert.equal(auth["mode"], "userPassword");
      const users = natsUsers(values);
      // The template: NATS_USER is the service's name, NATS_PASSWORD key `<name>-password` of natsClient.auth.secretName.
      assert.match(workloadTemplate, /- name: NATS_USER\n\s+value: \{\{ \$name \| quote \}\}/);
      assert.match(workloadTemplate, /- name: NATS_PASSWORD\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: \{\{ \$natsAuth\.secretName \}\}\n\s+key: \{\{ printf "%s-password" \$name \}\}/);
      for (const [name] of enabledServices(values)) {
        const user = users.get(name);
        assert.ok(user, `no NATS user for ${name}`);
        assert.deepEqual([user.secretName, user.key], [String(auth["secretName"]), `${name}-password`]);
      }
      const merge = at(values, "nats.config.merge");
      assert.ok(!JSON.stringify(merge).includes("no_auth_user"), "no anonymous user");
      for (const account of new Set([...users.values()].map((u) => u.account))) {
        assert.equal(at(merge, `accounts.${account}`)["jetstream"], "enabled");
      }
    });
  }

  it("refuses anonymous clients and accepts each service through the services' own connection code (real nats-server)", async () => {
    const users = natsUsers(defaults);
    const passwords = new Map([...users.keys()].map((u) => [u, `pw-${u}-${Math.random().toString(36).slice(2)}`]));
    // The chart's account block as nats.conf (JSON is valid nats.conf), each `<< $VAR >>` resolved
    // through the server's env and the Secret key it names.
    const byEnvVar = new Map([...users].map(([user, u]) => [u.envVar, passwords.get(user)!]));
    const conf = JSON.stringify({ accounts: at(defaults, "nats.config.merge")["accounts"] }, (_k, v: unknown) => {
      const envVar = typeof v === "string" ? natsEnvRef(v) : undefined;
      return envVar ? byEnvVar.get(envVar) : v;
    });
    const dir = await mkdtemp(join(tmpdir(), "nats-auth-"));
    const configFile = join(dir, "nats.conf");
    await writeFile(configFile, conf);
    const server = await startNatsServer({ configFile });
    try {
      await assert.rejects(connect({ servers: server.url, maxReconnectAttempts: 0, reconnect: false }), /authorization|authentication/i);
      await assert.rejects(
        connect({ servers: server.url, maxReconnectAttempts: 0, reconnect: false, ...natsConnectionOptions({ user: "ingest", password: "wrong" }) }),
        /authorization|authentication/i,
      );
      for (const [name] of enabledServices(defaults)) {
        const nc = await connectNats({ servers: server.url, name, connection: natsConnectionOptions({ user: name, password: passwords.get(name)! }) });
        try {
          const jsm = await jetstreamManager(nc);
          const prefix = `chart${name}`;
          const [first] = await ensureStreams(jsm, createSubjects(prefix).streamList.slice(0, 1), { maxBytes: 1 << 20 });
          assert.equal(first?.info.config.max_bytes, 1 << 20);
          await jsm.streams.delete(first!.name);
        } finally {
          await nc.close();
        }
      }
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The `<< $VAR >>` references of a NATS config value resolved through `resolve`, as nats.conf JSON. */
function resolveNatsEnv(value: Json, resolve: (envVar: string) => string): unknown {
  return JSON.parse(JSON.stringify(value), (_k, v: unknown) => {
    const envVar = typeof v === "string" ? natsEnvRef(v) : undefined;
    return envVar ? resolve(envVar) : v;
  });
}

/** The Secret key a `<< $VAR >>` of the bundled NATS's config comes from. */
function natsSecretRef(values: Obj, envVar: string): { name: string; key: string } {
  const ref = at(at(values, "nats.container.env"), `${envVar}.valueFrom.secretKeyRef`);
  return { name: String(ref["name"]), key: String(ref["key"]) };
}

/** The outgoing leaf connections of a region's NATS (nats.config.merge.leafnodes.remotes). */
function leafRemotes(values: Obj): Obj[] {
  const merge = at(values, "nats.config.merge");
  const remotes = isObj(merge["leafnodes"] ?? null) ? (merge["leafnodes"] as Obj)["remotes"] : undefined;
  return Array.isArray(remotes) ? remotes.filter(isObj) : [];
}

/** Whether a region's NATS accepts leaf connections (nats.config.leafnodes.enabled). */
function acceptsLeafnodes(values: Obj): boolean {
  const leafnodes = at(values, "nats.config")["leafnodes"];
  return isObj(leafnodes ?? null) && (leafnodes as Obj)["enabled"] === true;
}

describe("regions (docs/regions.md)", () => {
  const prefix = String(at(production, "env")["SUBJECT_PREFIX"]);

  it("names each region's JetStream domain after it, and the two regions each other's peers", () => {
    assert.deepEqual(at(defaults, "region")["name"], "", "one region unless configured");
    for (const [name, values] of regions) {
      const region = at(values, "region");
      assert.equal(region["name"], name);
      assert.equal(at(values, "nats.config.jetstream.merge")["domain"], name, "the domain the other regions source from");
      assert.deepEqual(region["peers"], [...regions.keys()].filter((r) => r !== name));
      for (const svc of ["ingest", "tracking"]) assert.ok(!("INGEST_REGION" in (at(values, `services.${svc}`)["env"] as Obj)), "REGION comes from region.name");
    }
  });

  it("joins the regions with one leaf connection that keeps the mesh's subjects and buckets local, over TLS, with credentials only from Secrets", () => {
    const hubs = [...regions].filter(([, v]) => acceptsLeafnodes(v));
    assert.equal(hubs.length, 1, "one region accepts leaf connections (a leaf-node tree has no cycles)");
    const [hubName, hub] = hubs[0]!;
    const leafPort = Number(at(hub, "nats.config.leafnodes")["port"]);
    assert.equal(at(hub, "nats.config.leafnodes.tls")["enabled"], true);
    assert.equal(at(hub, "region.leafnodeService")["enabled"], true, "its leaf port is reachable from the other regions");
    assert.ok((at(hub, "networkPolicy.natsLeafnodes")["from"] as Json[]).length > 0);
    const users = at(hub, "nats.config.leafnodes.merge.authorization")["users"] as Obj[];
    for (const [name, values] of regions) {
      if (name === hubName) continue;
      assert.ok(users.some((u) => u["user"] === name && u["account"] === "MESH" && natsEnvRef(u["password"])), `${hubName} has a leaf user for ${name}, bound to MESH, password from its env`);
      const remotes = leafRemotes(values);
      assert.equal(remotes.length, 1, `${name} connects to ${hubName}`);
      const remote = remotes[0]!;
      for (const list of ["deny_imports", "deny_exports"]) assert.deepEqual(remote[list], leafnodeDenyList(prefix), `${name}: ${list} (the services' leafnodeDenyList)`);
      assert.equal(remote["account"], "MESH");
      assert.ok(isObj(remote["tls"] ?? null) && String((remote["tls"] as Obj)["ca_file"]).startsWith("/etc/nats-ca-cert/"), "TLS verified against the mounted CA");
      const urls = remote["urls"] as Json[];
      assert.ok(urls.length > 0 && urls.every((u) => natsEnvRef(u) && natsSecretRef(values, natsEnvRef(u)!).key), "the URLs (with the password) come from a Secret");
      assert.equal(at(values, "networkPolicy.natsLeafnodes")["port"], leafPort);
      assert.ok((at(values, "networkPolicy.natsLeafnodes")["to"] as Json[]).length > 0);
    }
  });

  it("renders REGION and REGION_PEERS from the region values, and refuses what would break the regions", () => {
    assert.match(workloadTemplate, /\{\{- with \$root\.Values\.region\.name \}\}[\s\S]*?- name: REGION\n\s+value: \{\{ \. \| quote \}\}\n\s+- name: REGION_PEERS\n\s+value: \{\{ join "," \$root\.Values\.region\.peers \| quote \}\}/);
    assert.match(helpersTemplate, /include "logistics-mesh\.validateRegion"/);
    const validate = /define "logistics-mesh\.validateRegion"[\s\S]*?\{\{- end \}\}/.exec(helpersTemplate)?.[0] ?? "";
    for (const check of [/has \$region\.name \$region\.peers/, /ne \$domain \$region\.name/, /list "deny_imports" "deny_exports"/, /"\$KV\.>"/, /list "INGEST_REGION" "TRACKING_REGION"/]) assert.match(validate, check);
    const policies = read(chartDir, "templates", "network-policies.yaml");
    assert.match(policies, /if not \$np\.natsLeafnodes\.from \}\}\n\s+\{\{- fail/, "no leaf rule that admits anyone");
    assert.match(policies, /if not \$np\.natsLeafnodes\.to \}\}\n\s+\{\{- fail/);
    assert.match(read(chartDir, "templates", "leafnode-service.yaml"), /targetPort: leafnodes/);
  });

  it("the examples' NATS settings join two real nats-servers: each stores only its own region's publishes and sources the other's", async () => {
    const hubName = [...regions].find(([, v]) => acceptsLeafnodes(v))![0];
    const leafName = [...regions].find(([, v]) => !acceptsLeafnodes(v))![0];
    const hub = regions.get(hubName)!;
    const leaf = regions.get(leafName)!;
    const secrets = new Map<string, string>();
    const secret = (values: Obj, envVar: string) => {
      const ref = natsSecretRef(values, envVar);
      const k = `${ref.name}/${ref.key}`;
      if (!secrets.has(k)) secrets.set(k, `pw-${Math.random().toString(36).slice(2)}`);
      return secrets.get(k)!;
    };
    const dir = await mkdtemp(join(tmpdir(), "nats-regions-"));
    const hubLeafPort = await getFreePort();
    // TLS is left out here (no certificates): the rest is the examples' own settings.
    const hubLeaf = at(hub, "nats.config.leafnodes.merge");
    const leafPassword = secret(hub, natsEnvRef((hubLeaf["authorization"] as { users: Obj[] }).users[0]!["password"])!);
    const conf = (values: Obj, leafnodes: unknown) => ({
      jetstream: { domain: at(values, "nats.config.jetstream.merge")["domain"] },
      accounts: resolveNatsEnv(at(values, "nats.config.merge")["accounts"] as Json, (v) => secret(values, v)),
      leafnodes,
    });
    await writeFile(join(dir, "hub.conf"), JSON.stringify(conf(hub, { port: hubLeafPort, ...(resolveNatsEnv(hubLeaf, (v) => secret(hub, v)) as Obj) })));
    const remotes = leafRemotes(leaf).map((r) => {
      const plain = { ...r };
      delete plain["tls"];
      // What the Secret behind the URL holds: the leaf user and its password, at the hub's leaf port.
      return resolveNatsEnv(plain, () => `nats-leaf://${leafName}:${leafPassword}@127.0.0.1:${hubLeafPort}`);
    });
    await writeFile(join(dir, "leaf.conf"), JSON.stringify(conf(leaf, { remotes })));
    const servers = [
      await startNatsServer({ configFile: join(dir, "hub.conf"), serverName: hubName }),
      await startNatsServer({ configFile: join(dir, "leaf.conf"), serverName: leafName }),
    ];
    const conns: Array<Awaited<ReturnType<typeof connectNats>>> = [];
    try {
      await waitFor(async () => ((await (await fetch(`${servers[1]!.monitorUrl}/leafz`)).json()) as { leafs?: unknown[] }).leafs?.length === 1, {
        timeoutMs: 15_000,
        message: `${leafName} joined ${hubName} as a leaf node:\n${servers[1]!.logs()}`,
      });
      const names = [hubName, leafName];
      const subjects = createSubjects(prefix);
      const stream = subjects.streams.scans;
      for (const [i, values] of [hub, leaf].entries()) {
        const nc = await connectNats({ servers: servers[i]!.url, name: "ingest", connection: natsConnectionOptions({ user: "ingest", password: secret(values, natsUsers(values).get("ingest")!.envVar) }) });
        conns.push(nc);
        // The streams as the services create them with this region's REGION_PEERS.
        await ensureStreams(await jetstreamManager(nc), [stream], { peers: at(values, "region")["peers"] as string[] });
      }
      // Two scans published in each region, on its own subjects.
      for (const [i, region] of names.entries()) {
        const js = jetstream(conns[i]!);
        for (const n of [1, 2]) {
          const ack = await js.publish(subjects.scanRecorded(region, "acme"), new Uint8Array([n]), { msgID: `${region}-${n}` });
          assert.equal(ack.domain, region, "acknowledged by the stream of the region it was published in");
        }
      }
      for (const [i, region] of names.entries()) {
        const jsm = await jetstreamManager(conns[i]!);
        await waitFor(async () => (await jsm.streams.info(stream.name)).state.messages === 4, { timeoutMs: 30_000, message: `${region} holds its 2 scans and the other region's 2` });
        for (let seq = 1; seq <= 4; seq++) {
          const m = await jsm.streams.getMessage(stream.name, { seq });
          assert.ok(m, `${region} seq ${seq} is stored`);
          const own = m.subject.split(".")[3] === region;
          assert.equal(m.header?.has("Nats-Stream-Source") === true, !own, `${region} seq ${seq} (${m.subject}): the other region's scans arrive only by sourcing`);
        }
      }
    } finally {
      for (const nc of conns) await nc.close();
      for (const s of servers.reverse()) await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Variables in a service's config that name a remote endpoint, and the egress class that must reach it. */
const ENDPOINT_EGRESS: Readonly<Record<string, string>> = {
  NATS_URL: "nats",
  DATABASE_URL: "postgres",
  REDIS_URL: "redis",
  OTEL_EXPORTER_OTLP_ENDPOINT: "otlp",
  JWT_JWKS_URL: "https",
  MONGODB_URL: "mongodb",
};

describe("NetworkPolicy coverage", () => {
  it("knows the egress of every endpoint variable the services read", async () => {
    for (const [name] of enabledServices(defaults)) {
      const config = await loadConfig(name);
      const endpoints = config.names.filter((n) => /(_URL|_URLS|_ENDPOINT|_HOST|_ADDR)$/.test(n));
      const unknown = endpoints.filter((n) => !(n in ENDPOINT_EGRESS));
      assert.deepEqual(unknown, [], `${name}: add an egress rule (template + ENDPOINT_EGRESS) for these endpoints`);
    }
  });

  it("renders an egress rule for each endpoint class from the values that enable it", () => {
    assert.match(workloadTemplate, /podSelector:\n\s+matchLabels:\n\s+\{\{- include "logistics-mesh\.natsSelectorLabels" \$root/);
    assert.match(workloadTemplate, /if hasKey \$secretEnv "DATABASE_URL" \}\}\n\s+# PostgreSQL[\s\S]*?\$np\.egress\.postgres\.to[\s\S]*?\$np\.egress\.postgres\.port/);
    assert.match(workloadTemplate, /if hasKey \$secretEnv "REDIS_URL" \}\}\n\s+# Redis[\s\S]*?\$np\.egress\.redis\.to[\s\S]*?\$np\.egress\.redis\.port/);
    assert.match(workloadTemplate, /if hasKey \$plainEnv "OTEL_EXPORTER_OTLP_ENDPOINT" \}\}[\s\S]*?\$np\.egress\.otlp\.port/);
    assert.match(workloadTemplate, /if \$root\.Values\.auth\.jwksUrl \}\}\n\s+# JWKS[\s\S]*?\$np\.egress\.https\.port/);
    assert.match(workloadTemplate, /if \(\$svc\.networkPolicy\)\.webhooks \}\}[\s\S]*?\$np\.egress\.webhooks\.to/);
    const policies = read(chartDir, "templates", "network-policies.yaml");
    assert.match(policies, /\{\{- if \$np\.defaultDeny \}\}[\s\S]*?podSelector: \{\}\n\s+policyTypes:\n\s+- Ingress\n\s+- Egress/);
  });

  for (const [label, values] of valueSets) {
    it(`lets each service reach exactly the endpoints it is configured with, on their ports (${label})`, async () => {
      const np = at(values, "networkPolicy");
      assert.equal(np["enabled"], true);
      assert.equal(np["defaultDeny"], true, "the namespace denies by default");
      const egress = at(np, "egress");
      for (const [name, svc] of enabledServices(values)) {
        const config = await loadConfig(name);
        const env = { ...(values["env"] as Obj), ...(svc["env"] as Obj) };
        const secret = keys(svc["secretEnv"]);
        const reads = (v: string) => config.names.includes(v);
        // Credentials-bearing endpoints come through secretEnv, which is what the template keys on.
        for (const v of ["DATABASE_URL", "REDIS_URL"]) {
          if (reads(v) && !(config.spec[v] && "default" in config.spec[v]!)) assert.ok(secret.includes(v), `${name}: ${v} must come from secretEnv`);
          assert.ok(!(v in env), `${name}: ${v} in plain env gets no egress rule`);
        }
        const classes = new Set<string>(["nats"]);
        if (secret.includes("DATABASE_URL")) classes.add("postgres");
        if (secret.includes("REDIS_URL")) classes.add("redis");
        if (env["OTEL_EXPORTER_OTLP_ENDPOINT"]) classes.add("otlp");
        if (at(values, "auth")["jwksUrl"]) classes.add("https");
        for (const c of classes) {
          if (c === "nats" && at(values, "nats")["enabled"] === true && !values["natsUrl"]) continue; // selected by the NATS pods' labels
          assert.ok(Array.isArray(at(egress, c)["to"]) && (at(egress, c)["to"] as Json[]).length > 0, `${name}: no peers for ${c}`);
        }
        // Ports in the configured URLs are the ones the rules open.
        const portOf = (u: string, fallback: number) => Number(new URL(u).port || fallback);
        if (env["OTEL_EXPORTER_OTLP_ENDPOINT"]) assert.equal(portOf(String(env["OTEL_EXPORTER_OTLP_ENDPOINT"]), 80), at(egress, "otlp")["port"]);
        if (at(values, "auth")["jwksUrl"]) assert.equal(portOf(String(at(values, "auth")["jwksUrl"]), 443), at(egress, "https")["port"]);
        const natsPort = values["natsUrl"] ? portOf(String(values["natsUrl"]).split(",")[0]!, 4222) : 4222;
        assert.equal(natsPort, at(egress, "nats")["port"]);
        // Webhook delivery (the notification config) needs the webhook rule, and only it.
        const delivers = config.names.some((n) => n.includes("WEBHOOK"));
        assert.equal(isObj(svc["networkPolicy"] ?? null) && (svc["networkPolicy"] as Obj)["webhooks"] === true, delivers, `${name}: webhooks egress`);
        if (delivers) {
          // Every port a webhook may use is open in the webhook rule: 443 and the allowed ones.
          const allowed = [443, ...String(env["NOTIFICATION_WEBHOOK_ALLOW_PORTS"] ?? "").split(",").filter((p) => p.trim()).map(Number)];
          const open = at(egress, "webhooks")["ports"] as Json[];
          assert.deepEqual(allowed.filter((p) => !open.includes(p)), [], `${name}: webhook ports networkPolicy.egress.webhooks.ports does not open`);
        }
      }
      const webhookPeers = at(egress, "webhooks")["to"] as Json[];
      const except = webhookPeers.flatMap((p) => ((isObj(p) && isObj(p["ipBlock"] ?? null) ? (p["ipBlock"] as Obj)["except"] : []) ?? []) as Json[]);
      for (const cidr of ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]) assert.ok(except.includes(cidr), `webhooks must not reach ${cidr}`);
    });
  }

  it("admits to the bundled NATS only this release's services, the other NATS servers and monitoring", () => {
    const policies = read(chartDir, "templates", "network-policies.yaml");
    assert.match(policies, /port: \{\{ \(\(\(\.Values\.nats\.config\)\.nats\)\.port \| default 4222\) \}\}\n\s+protocol: TCP\n\s+from:\n\s+- podSelector:\n\s+matchLabels:\n\s+app\.kubernetes\.io\/name: \{\{ include "logistics-mesh\.name" \. \}\}\n\s+app\.kubernetes\.io\/instance: \{\{ \.Release\.Name \}\}/);
    // Those labels are on every service's pods.
    assert.match(helpersTemplate, /define "logistics-mesh\.selectorLabels"[\s\S]*?app\.kubernetes\.io\/name: \{\{ include "logistics-mesh\.name" \.root \}\}\napp\.kubernetes\.io\/instance: \{\{ \.root\.Release\.Name \}\}/);
  });

  it("lets meshed traffic in on Linkerd's inbound port and the proxy reach its control plane", () => {
    assert.match(workloadTemplate, /if \(\$mesh\.linkerd\)\.inject \}\}\n\s+# Meshed callers[\s\S]*?port: 4143[\s\S]*?port: 4191/);
    assert.match(workloadTemplate, /kubernetes\.io\/metadata\.name: linkerd\n\s+ports:\n\s+- port: 8080[\s\S]*?- port: 8086[\s\S]*?- port: 8090/);
  });
});

/** Fully-qualified gRPC service names declared in proto/, with the chart service that serves each (its proto package). */
function protoServices(): Map<string, string> {
  const out = new Map<string, string>();
  const protoRoot = join(root, "proto", "logistics");
  for (const domain of readdirSync(protoRoot)) {
    const dir = join(protoRoot, domain, "v1");
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".proto"))) {
      const text = read(dir, file);
      const pkg = /^package ([a-z0-9_.]+);/m.exec(text)?.[1];
      for (const m of text.matchAll(/^service (\w+) \{/gm)) if (pkg) out.set(`${pkg}.${m[1]}`, domain);
    }
  }
  return out;
}

describe("the edge", () => {
  const served = protoServices();
  assert.ok(served.has("logistics.tracking.v1.TrackingService"));

  for (const [label, values] of valueSets) {
    it(`routes only paths ingress-nginx and the Gateway API accept, to the service that serves them (${label})`, () => {
      const hostnames = new Map<string, string>();
      for (const [name, svc] of Object.entries(at(values, "services"))) {
        if (!isObj(svc)) continue;
        const ingress = svc["ingress"];
        for (const host of isObj(ingress ?? null) && Array.isArray((ingress as Obj)["hosts"]) ? ((ingress as Obj)["hosts"] as Obj[]) : []) {
          for (const p of host["paths"] as Obj[]) {
            const path = String(p["path"]);
            const type = String(p["pathType"] ?? "ImplementationSpecific");
            if (type !== "ImplementationSpecific") assert.match(path, /^\/[A-Za-z0-9/_-]*$/, `${name}: ${path} with ${type} fails strict path validation`);
            const grpc = /^\/([^/]+)\/$/.exec(path)?.[1];
            assert.ok(grpc && served.get(grpc) === name, `${name}: ingress path ${path} is not /<a gRPC service ${name} serves>/`);
          }
        }
        for (const kind of ["httpRoute", "grpcRoute"]) {
          const route: Json | undefined = svc[kind];
          if (!isObj(route ?? null) || (route as Obj)["enabled"] !== true) continue;
          const grpcServices = (route as Obj)["grpcServices"] as Json[];
          for (const g of grpcServices) assert.equal(served.get(String(g)), name, `${name}.${kind}: ${String(g)} is not served by ${name}`);
          for (const h of (route as Obj)["hostnames"] as Json[]) {
            const other = hostnames.get(String(h));
            assert.ok(other === undefined, `${String(h)} is used by ${other} and ${name}.${kind}: an HTTPRoute and a GRPCRoute on one hostname conflict`);
            hostnames.set(String(h), `${name}.${kind}`);
          }
        }
      }
    });
  }

  it("defaults an Ingress path to ImplementationSpecific and builds routes from the gRPC service names", () => {
    assert.match(workloadTemplate, /pathType: \{\{ \.pathType \| default "ImplementationSpecific" \}\}/);
    assert.match(workloadTemplate, /kind: HTTPRoute[\s\S]*?type: PathPrefix\n\s+value: \{\{ printf "\/%s" \. \| quote \}\}/);
    assert.match(workloadTemplate, /kind: GRPCRoute[\s\S]*?method:\n\s+type: Exact\n\s+service: \{\{ \. \| quote \}\}/);
    assert.match(workloadTemplate, /apiVersion: gateway\.networking\.k8s\.io\/v1\nkind: HTTPRoute/);
    assert.match(workloadTemplate, /apiVersion: gateway\.networking\.k8s\.io\/v1\nkind: GRPCRoute/);
  });
});

describe("autoscaling", () => {
  it("scales streaming services on a metric the services export and the adapter example serves", async () => {
    const metric = /name: (logistics_[a-z_]+)\n\s+target:\n\s+type: AverageValue/.exec(workloadTemplate)?.[1];
    assert.equal(metric, "logistics_rpc_server_open_streams");
    const exported = await createMetrics({ service: "chart-test" }).registry.metrics();
    assert.match(exported, new RegExp(`^# TYPE ${metric} gauge$`, "m"));
    const adapter = loadYaml(join(chartDir, "examples", "prometheus-adapter.yaml"));
    const rules = at(adapter, "rules")["custom"] as Obj[];
    const rule = rules.find((r) => String(r["seriesQuery"]).startsWith(`${metric}{`));
    assert.ok(rule, "examples/prometheus-adapter.yaml serves the metric");
    assert.equal(at(rule, "name")["as"], metric);
    assert.deepEqual(Object.keys(at(rule, "resources.overrides")).sort(), ["namespace", "pod"]);
    assert.equal(at(production, "services.ingest.autoscaling.openStreams")["enabled"], true);
    assert.equal(at(production, "services.tracking.autoscaling.openStreams")["enabled"], true);
  });

  it("measures CPU on the service's own container, so a sidecar does not distort it", () => {
    for (const [, values] of valueSets) assert.equal(at(values, "autoscaling")["cpuMetric"], "ContainerResource");
    assert.match(workloadTemplate, /- type: ContainerResource\n\s+containerResource:\n\s+name: cpu\n\s+container: \{\{ \$name \}\}/);
    assert.match(workloadTemplate, /- name: \{\{ \$name \}\}\n\s+image:/, "the container is named after the service");
  });

  it("ties the Node.js heap to the memory limit", () => {
    assert.match(workloadTemplate, /args:\n\s+\{\{- with \$heapMiB \}\}\n\s+- \{\{ printf "--max-old-space-size=%s" \. \| quote \}\}/);
    assert.match(
      workloadTemplate,
      /\{\{- with \$root\.Values\.semiSpaceMiB \}\}\n\s+- \{\{ printf "--max-semi-space-size=%v" \. \| quote \}\}/,
      "the young generation's size goes to every service",
    );
    assert.match(helpersTemplate, /define "logistics-mesh\.heapMiB"[\s\S]*?hasSuffix "Gi" \$mem[\s\S]*?mul \$n 1024[\s\S]*?div \(mul \$n \(int \.percent\)\) 100/);
    for (const [, values] of valueSets) {
      for (const [name, svc] of enabledServices(values)) {
        const limit = (isObj(svc["resources"] ?? null) ? at(svc, "resources.limits") : at(values, "resources.limits"))["memory"];
        const heapMiB = Math.floor(((bytesOf(limit) / 2 ** 20) * Number(values["heapPercentOfMemoryLimit"])) / 100);
        // The young generation comes on top of the old space: about three semi-spaces.
        const youngMiB = 3 * Number(values["semiSpaceMiB"] ?? defaults["semiSpaceMiB"]);
        assert.ok(
          heapMiB >= 128 && (heapMiB + youngMiB) * 2 ** 20 < bytesOf(limit) * 0.9,
          `${name}: heap ${heapMiB} MiB and young generation ${youngMiB} MiB for a ${String(limit)} limit`,
        );
      }
      // Under a memory limit V8 sizes the young generation from it (~1 MiB semi-spaces at 512Mi),
      // which cost the services 5-17% more CPU per scan (perf/README.md, "Runtime").
      assert.ok(Number(values["semiSpaceMiB"] ?? defaults["semiSpaceMiB"]) >= 8, "the young generation is sized");
    }
  });

  it("spreads by the current ReplicaSet and waits minReadySeconds", () => {
    assert.equal((workloadTemplate.match(/matchLabelKeys:\n\s+- pod-template-hash/g) ?? []).length, 2);
    assert.match(workloadTemplate, /minReadySeconds: \{\{ \$root\.Values\.minReadySeconds \}\}/);
    for (const [, values] of valueSets) assert.ok(Number(values["minReadySeconds"]) > 0);
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

  it("let a service override probes, security contexts and scheduling", () => {
    for (const key of ["probes", "podSecurityContext", "securityContext"]) {
      assert.match(workloadTemplate, new RegExp(`mergeOverwrite \\(deepCopy \\$root\\.Values\\.${key}\\) \\(\\$svc\\.${key} \\| default \\(dict\\)\\)`), key);
    }
    for (const key of ["nodeSelector", "tolerations", "affinity", "priorityClassName"]) {
      assert.match(workloadTemplate, new RegExp(`\\(\\$svc\\.${key} \\| default \\$root\\.Values\\.${key}\\)`), key);
    }
    assert.match(workloadTemplate, /mergeOverwrite \(deepCopy \$root\.Values\.topologySpread\) \(\$svc\.topologySpread \| default \(dict\)\)/);
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

describe("PrometheusRule", () => {
  const template = read(chartDir, "templates", "prometheus-rule.yaml");
  const rulesPath = join(chartDir, "rules", "logistics-mesh.rules.yaml");

  it("is off by default, on in production, selected like the ServiceMonitor", () => {
    assert.equal(at(defaults, "prometheusRule")["enabled"], false);
    assert.equal(at(production, "prometheusRule")["enabled"], true);
    assert.deepEqual(at(production, "prometheusRule.labels"), at(production, "serviceMonitor.labels"), "the same Prometheus selects both");
    assert.match(template, /^\{\{- if \.Values\.prometheusRule\.enabled \}\}$/m, "gated on prometheusRule.enabled");
  });

  it("embeds the rules file, which renders as the PrometheusRule's spec.groups", () => {
    const m = /^spec:\n {2}\{\{- \.Files\.Get "([^"]+)" \| nindent 2 \}\}$/m.exec(template);
    assert.ok(m, "spec is the rules file, indented under spec:");
    assert.equal(join(chartDir, m[1]!), rulesPath);
    const file = readFileSync(rulesPath, "utf8");
    // What `.Files.Get ... | nindent 2` produces under `spec:`, parsed as the API server would.
    const rendered = parseYaml(`spec:\n${file.replace(/^/gm, "  ")}`) as { spec: { groups: Array<{ name: string; rules: unknown[] }> } };
    assert.deepEqual(rendered.spec, parseYaml(file), "indenting keeps the document intact");
    assert.ok(rendered.spec.groups.length >= 5 && rendered.spec.groups.every((g) => g.rules.length > 0));
    assert.ok(file.includes("{{ $labels.consumer }}"), "alert templates stay for Prometheus (.Files.Get does not render them)");
  });

  it("is packaged without its promtool tests", () => {
    assert.ok(existsSync(join(chartDir, "rules", "logistics-mesh.rules.test.yaml")));
    assert.match(read(chartDir, ".helmignore"), /^rules\/\*\.test\.yaml$/m);
  });

  it("validates in the schema; unknown keys are refused", () => {
    const validate = compileSchema();
    const bad = clone(defaults);
    (bad["prometheusRule"] as Obj)["alertLabels"] = { team: "x" };
    assert.ok(errorsOf(validate, bad).some((e) => e.startsWith("/prometheusRule")), errorsOf(validate, bad).join("; "));
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
    assert.ok(used.includes("build:services"), "the image compiles the services with `npm run build:services`");
    for (const script of used) assert.ok(pkg.scripts[script], `npm run ${script}: no such script in package.json`);
    assert.match(pkg.scripts["build:services"] ?? "", /^tsc -b( services\/(ingest|routing|tracking|notification))+$/);
  });

  it("copies from the build context only files that exist and .dockerignore keeps", () => {
    const rules = read(root, ".dockerignore")
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    const ignored = rules.filter((l) => !l.startsWith("!")).map((l) => l.replace(/^\*\*\//, "").replace(/\/$/, ""));
    const reincluded = new Set(rules.filter((l) => l.startsWith("!")).map((l) => l.slice(1)));
    const sources = instructions
      .filter((l) => /^COPY\b/i.test(l) && !/--from=/i.test(l))
      .flatMap((l) => l.split(/\s+/).slice(1).filter((t) => !t.startsWith("--")).slice(0, -1));
    assert.ok(sources.includes("package-lock.json"), "npm ci needs the lockfile");
    for (const src of sources) {
      assert.ok(existsSync(join(root, src)), `COPY ${src}: not in the repository`);
      assert.ok(reincluded.has(src) || !ignored.includes(src.split("/")[0]!), `COPY ${src}: excluded by .dockerignore`);
    }
  });

  it("builds on a Node.js LTS image pinned by digest, whose major engines lists, and the suite runs on a listed major", () => {
    const image = /^ARG NODE_IMAGE=node:(\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/m.exec(dockerfile);
    assert.ok(image, "ARG NODE_IMAGE=node:<major>-bookworm-slim@sha256:<digest>");
    const major = Number(image[1]);
    assert.equal(major % 2, 0, "an even (LTS) Node.js major");
    const engines = (JSON.parse(read(root, "package.json")) as { engines: { node: string } }).engines.node;
    const majors = engines.split("||").map((r) => {
      const m = /^\s*\^(\d+)\.(\d+)\.\d+\s*$/.exec(r);
      assert.ok(m, `engines.node: ${r.trim()} is not a ^major.minor.patch range (list each supported major)`);
      return Number(m[1]);
    });
    assert.ok(majors.includes(major) && major === Math.max(...majors), `the image runs Node ${major}, the newest major engines (${engines}) lists`);
    assert.ok(majors.includes(Number(process.versions.node.split(".")[0])), `this Node.js (${process.version}, as on CI) is one engines lists: ${engines}`);
    const docs = read(root, "charts", "README.md");
    assert.ok(docs.includes(`\`${engines}\``), "charts/README.md states the engines range");
    assert.match(docs, /docker buildx imagetools inspect node:\d+-bookworm-slim/);
    assert.match(dockerfile, /^# +docker buildx imagetools inspect node:\d+-bookworm-slim/m);
  });

  it("installs production dependencies in their own stage, from the lockfile only", () => {
    const stages = instructions.filter((l) => /^FROM\b/i.test(l)).map((l) => /^FROM \$\{NODE_IMAGE\} AS (\w+)$/.exec(l)?.[1]);
    assert.deepEqual(stages, ["deps", "build", "runtime"]);
    const stage = (name: string) => {
      const from = instructions.findIndex((l) => l === `FROM \${NODE_IMAGE} AS ${name}`);
      const next = instructions.findIndex((l, i) => i > from && /^FROM\b/.test(l));
      return instructions.slice(from + 1, next === -1 ? undefined : next);
    };
    const deps = stage("deps");
    const manifests = deps.filter((l) => /^COPY\b/.test(l));
    assert.equal(manifests[0], "COPY package.json package-lock.json ./");
    const workspaces = (JSON.parse(read(root, "package.json")) as { workspaces: string[] }).workspaces;
    assert.deepEqual(manifests.slice(1), workspaces.map((w) => `COPY ${w}/package.json ${w}/`), "only the lockfile and every workspace's manifest");
    assert.ok(deps.some((l) => /^RUN npm ci --omit=dev --ignore-scripts\b/.test(l)));
    const runtime = stage("runtime");
    assert.ok(runtime.includes("COPY --from=deps --chown=root:root /app/node_modules ./node_modules"), "node_modules come from the deps stage");
    assert.ok(!runtime.some((l) => /--from=build\b.*node_modules/.test(l)));
    const rm = runtime.find((l) => /^RUN rm -rf /.test(l)) ?? "";
    for (const path of ["/usr/local/lib/node_modules/npm", "/usr/local/lib/node_modules/corepack", "/usr/local/bin/npm", "/usr/local/bin/npx", "/usr/local/bin/corepack"]) {
      assert.ok(rm.split(/\s+/).includes(path), `the runtime image removes ${path}`);
    }
    assert.ok(!runtime.some((l) => /^RUN\b/.test(l) && /(^RUN|&&|;|\|\|)\s*(npm|npx|corepack|yarn)\s/.test(l)), "nothing runs a package manager in the runtime stage");
    assert.match(runtime.join("\n"), /^USER 10001:10001$/m);
    assert.match(runtime.join("\n"), /^ENTRYPOINT \["node"\]$/m);
    assert.ok(runtime.includes("COPY --from=build --chown=root:root /app/package.json ./package.json"), "package.json (the build's version) is in the image");
  });

  it("starts entry points that `npm run build` produces", () => {
    const cmd = instructions.find((l) => /^CMD\b/.test(l));
    assert.ok(cmd, "a default CMD");
    const defaultMain = (JSON.parse(cmd.slice(3).trim()) as string[])[0]!;
    const helper = read(chartDir, "templates", "_helpers.tpl");
    const pattern = /printf "(services\/%s\/dist\/main\.js)" \.name/.exec(helper)?.[1];
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

/** An executable on PATH, or undefined. */
const onPath = findOnPath;

describe("helm", () => {
  const helm = onPath("helm");
  const kubeconform = onPath("kubeconform");

  /** The chart with its NATS dependency in a scratch directory; undefined (with the reason) when the dependency cannot be fetched. */
  async function chartCopy(work: string): Promise<{ chart?: string; reason?: string }> {
    assert.ok(helm);
    const chart = join(work, "logistics-mesh");
    await cp(chartDir, chart, { recursive: true });
    try {
      await run(helm, ["dependency", "build", chart], { timeout: 120_000 });
    } catch (e) {
      return { reason: `helm dependency build failed (the NATS chart repository is unreachable?): ${String(e)}` };
    }
    return { chart };
  }

  const title = "lints and renders the chart (default and production values)";
  it.skipIf(!helm)(helm ? title : `${title} (skipped: no helm binary on PATH, helm lint / helm template not run)`, async (t) => {
    assert.ok(helm);
    const work = await mkdtemp(join(tmpdir(), "chart-"));
    try {
      const { chart, reason } = await chartCopy(work);
      if (!chart) return t.skip(reason);
      const prod = join(chartDir, "examples", "production.yaml");
      await run(helm, ["lint", "--strict", chart]);
      await run(helm, ["lint", "--strict", chart, "-f", prod]);
      const { stdout } = await run(helm, ["template", "mesh", chart, "-f", prod], { maxBuffer: 32 << 20 });
      for (const svc of ["ingest", "routing", "tracking", "notification"]) {
        assert.match(stdout, new RegExp(`name: mesh-logistics-mesh-${svc}\\n`));
      }
      assert.match(stdout, /readOnlyRootFilesystem: true/);
      assert.match(stdout, /kind: HorizontalPodAutoscaler/);
      assert.match(stdout, /- "--max-old-space-size=768"/, "the heap flag is 75% of ingest's 1Gi limit");
      assert.match(stdout, /- "--max-semi-space-size=16"/, "the young generation is sized, not left to the memory limit");
      assert.match(stdout, /terminationGracePeriodSeconds: 40\n/);
      assert.match(stdout, /config\.beta\.linkerd\.io\/proxy-enable-native-sidecar: "true"/);
      assert.match(stdout, /kind: GRPCRoute/);
      assert.match(stdout, /kind: HTTPRoute/);
      assert.match(stdout, /name: mesh-logistics-mesh-default-deny\n/);
      assert.match(stdout, /GOMEMLIMIT/);
      assert.doesNotMatch(stdout, /nats-box/);
      await assert.rejects(
        run(helm, ["template", "mesh", chart, "--set", "services.ingest.replicaCount=0"]),
        /replicaCount/,
      );
      for (const region of regions.keys()) {
        const file = join(chartDir, "examples", `region-${region}.yaml`);
        await run(helm, ["lint", "--strict", chart, "-f", prod, "-f", file]);
        const rendered = (await run(helm, ["template", "mesh", chart, "-f", prod, "-f", file], { maxBuffer: 32 << 20 })).stdout;
        assert.match(rendered, new RegExp(`- name: REGION\\n\\s+value: "${region}"`));
        const values = regions.get(region)!;
        if (leafRemotes(values).length > 0) assert.match(rendered, /deny_imports/, "the leaf remote with its deny lists in nats.conf");
        if (acceptsLeafnodes(values)) assert.match(rendered, /name: mesh-nats-leafnodes\n/, "the leaf port's own Service");
      }
      await assert.rejects(
        run(helm, ["template", "mesh", chart, "-f", prod, "--set", "region.name=elsewhere"]),
        /JetStream domain/,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  const kcTitle = "renders manifests valid against the Kubernetes schemas (kubeconform)";
  const kcSkip = !helm ? "no helm binary on PATH" : !kubeconform ? "no kubeconform binary on PATH" : undefined;
  it.skipIf(kcSkip !== undefined)(kcSkip ? `${kcTitle} (skipped: ${kcSkip})` : kcTitle, async (t) => {
    assert.ok(helm && kubeconform);
    const work = await mkdtemp(join(tmpdir(), "chart-"));
    try {
      const { chart, reason } = await chartCopy(work);
      if (!chart) return t.skip(reason);
      for (const extra of [[], ["-f", join(chartDir, "examples", "production.yaml")]]) {
        const manifests = join(work, `rendered-${extra.length}.yaml`);
        const { stdout } = await run(helm, ["template", "mesh", chart, ...extra], { maxBuffer: 32 << 20 });
        await writeFile(manifests, stdout);
        // CRDs (ServiceMonitor, HTTPRoute, GRPCRoute) have no schema in the default location: skipped, not failed.
        try {
          await run(kubeconform, ["-strict", "-summary", "-ignore-missing-schemas", "-kubernetes-version", "1.30.0", manifests], { timeout: 120_000 });
        } catch (e) {
          const out = `${String((e as { stdout?: unknown }).stdout ?? "")}${String((e as { stderr?: unknown }).stderr ?? "")}`;
          if (/no such host|dial tcp|could not (find|download)|connection refused/i.test(out)) return t.skip(`kubeconform could not fetch the schemas: ${out.slice(0, 200)}`);
          assert.fail(`kubeconform rejected the rendered chart${extra.length ? " (production values)" : ""}:\n${out}`);
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe("compose.yaml", () => {
  const compose = parseYaml(read(root, "compose.yaml"), { merge: true }) as Obj;
  const dockerfile = read(root, "Dockerfile");
  const services = at(compose, "services");

  for (const name of ["ingest", "routing", "tracking", "notification"]) {
    it(`gives ${name} only variables it parses, every required and every loopback-default one, accepted as a whole`, async () => {
      const svc = at(services, name);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(at(svc, "environment"))) env[k] = String(v);
      const config = await loadConfig(name);
      const accepted = new Set(config.names);
      assert.deepEqual(Object.keys(env).filter((n) => !accepted.has(n)), [], `${name}: compose sets variables ${name}Config does not read`);
      const missing = Object.entries(config.spec)
        .filter(([, v]) => !("default" in v))
        .map(([n]) => n)
        .filter((n) => !(n in env));
      assert.deepEqual(missing, [], `${name}: required variables compose does not set`);
      // In a container, a default of 127.0.0.1 points at the container itself.
      const loopback = /\b(127\.0\.0\.1|localhost|\[::1\])\b/;
      const local = Object.entries(config.spec)
        .filter(([, v]) => "default" in v && loopback.test(JSON.stringify(v.default ?? "")))
        .map(([n]) => n);
      assert.deepEqual(local.filter((n) => !(n in env)), [], `${name}: variables left at a loopback default`);
      assert.doesNotThrow(() => config.parse(env), `${name}: compose's environment is rejected by ${name}Config`);
      // Built from this repository's Dockerfile, started by the script path the image holds.
      const entry = `services/${name}/dist/main.js`;
      assert.deepEqual(svc["command"], [entry]);
      assert.ok(dockerfile.includes(`/app/services/${name}/dist ./services/${name}/dist`), `the image holds ${entry}`);
      assert.equal(at(svc, "build")["context"], ".");
      assert.ok((svc["ports"] as string[]).includes(`${env["PORT"]}:${env["PORT"]}`), `${name}: its port is published`);
      // Each hostname it names is a service of this file that it waits for.
      const hosts = Object.values(env).flatMap((v) => [...v.matchAll(/:\/\/(?:[^@/]*@)?([a-z][a-z0-9-]*):\d+/g)].map((m) => m[1]!));
      for (const h of hosts) {
        assert.ok(h in services, `${name}: ${h} is a service of compose.yaml`);
        assert.equal(at(at(svc, "depends_on"), h)["condition"], "service_healthy", `${name} waits for ${h} to be healthy`);
      }
    });
  }

  it("runs NATS with JetStream and health checks on NATS, Redis and PostgreSQL", () => {
    assert.ok((at(services, "nats")["command"] as string[]).includes("-js"));
    for (const s of ["nats", "redis", "postgres"]) assert.ok(isObj(at(services, s)["healthcheck"]), `${s} has a health check`);
  });
});
