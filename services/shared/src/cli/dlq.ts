#!/usr/bin/env node
/**
 * Operator tool for the mesh's JetStream dead-letter stream (`npm run dlq -- <command>`):
 *
 *   npm run dlq -- list --consumer tracking-scans --reason poison --since 2h
 *   npm run dlq -- show 42
 *   npm run dlq -- redrive --consumer tracking-scans --reason retries_exhausted --dry-run
 *   npm run dlq -- purge --seq 42 --seq 43
 *
 * Every action writes one audit line (JSON, on stderr): who, what, how many.
 */
import { userInfo } from "node:os";
import { pathToFileURL } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parseTtl } from "../auth/dev-keys.js";
import { parseCommandLine, UsageError } from "./cli-args.js";
import { natsConnectionOptions } from "../nats/connect.js";
import { createSubjects } from "../nats/subjects.js";
import { createDeadLetterAdmin, type DeadLetter, type DeadLetterFilter } from "../operations/dead-letter-admin.js";
import { DeadLetterReasonClasses, isDeadLetterReasonClass } from "../operations/dead-letter-reason.js";
import { eventPayloadJson } from "../operations/event-payloads.js";

const USAGE = `usage: dlq <list|show|redrive|purge> [options]

Inspects and repairs the JetStream dead-letter stream: messages a durable consumer gave up on.

commands
  list               dead letters matching the filters, oldest first
  show <seq>         one dead letter (by its sequence in the dead-letter stream) with its payload
  redrive            republish matching dead letters to their original subject with their original
                     headers (Nats-Msg-Id = the event id), then remove them from the dead-letter stream
  purge              delete matching dead letters

filters (all must hold)
  --consumer <name>  durable consumer that gave up (tracking-scans, routing-scans, notification-status...)
  --reason <class>   ${DeadLetterReasonClasses.join(", ")}
  --subject <pat>    original subject, NATS wildcards allowed (logistics.scan.recorded.*.acme)
  --since <time>     dead-lettered at or after: ISO time, or a span back from now (30m, 2h, 7d)
  --until <time>     dead-lettered before (same forms)
  --seq <n>          this dead-letter sequence (repeatable)
  --limit <n>        at most n dead letters

options
  --dry-run          redrive/purge: report what would be done, change nothing
  --new-msg-id       redrive: republish messages still inside their stream's duplicate window under
                     a new Nats-Msg-Id (<event id>.redrive.<seq>) instead of deferring them; consumers
                     deduplicate by the event id in the payload
  --all-consumers    redrive/purge: allow a filter that names no consumer or sequence
  --json             one JSON object per line instead of a table
  --actor <name>     who is acting, for the audit line (default: the OS user)
  --nats <url>       NATS server (default: $NATS_URL or nats://127.0.0.1:4222); NATS_USER,
                     NATS_PASSWORD, NATS_CREDS_FILE and NATS_TLS_CA_FILE are read as the services do
  --prefix <p>       subject prefix (default: $SUBJECT_PREFIX or logistics)
  -h, --help         show this help

redrive and purge need --consumer, --seq or --all-consumers.`;

/** Where the CLI reads its environment and writes; injectable so tests can drive it in-process. */
export interface DlqCliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Clock in ms (relative --since/--until). Default Date.now. */
  now?: () => number;
}

function parseCliArgs(argv: readonly string[]) {
  return parseCommandLine({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      consumer: { type: "string" },
      reason: { type: "string" },
      subject: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      seq: { type: "string", multiple: true },
      limit: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      "new-msg-id": { type: "boolean", default: false },
      "all-consumers": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      actor: { type: "string" },
      nats: { type: "string" },
      prefix: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${name}: expected a positive whole number, got ${JSON.stringify(text)}`);
  return n;
}

function timeArg(name: string, text: string, now: number): Date {
  if (/^\d+[smhd]$/.test(text.trim())) {
    try {
      return new Date(now - parseTtl(text) * 1000);
    } catch (err) {
      throw new UsageError(`${name}: ${(err as Error).message}`);
    }
  }
  const t = new Date(text);
  if (Number.isNaN(t.getTime())) throw new UsageError(`${name}: expected an ISO time or a span like 30m, 2h, 7d; got ${JSON.stringify(text)}`);
  return t;
}

function row(d: DeadLetter): string {
  const reason = d.reason.length > 80 ? `${d.reason.slice(0, 77)}...` : d.reason;
  return [
    String(d.sequence).padStart(7),
    d.deadLetteredAt.toISOString(),
    d.consumer.padEnd(26),
    d.reasonClass.padEnd(17),
    d.original.subject,
    d.original.msgId ?? "-",
    `deliveries=${d.original.deliveries}`,
    reason,
  ].join("  ");
}

function asJson(d: DeadLetter, withPayload: boolean): Record<string, unknown> {
  return {
    sequence: d.sequence,
    deadLetteredAt: d.deadLetteredAt.toISOString(),
    consumer: d.consumer,
    reasonClass: d.reasonClass,
    reason: d.reason,
    original: d.original,
    payloadType: d.payloadType,
    payloadSize: d.payloadSize,
    ...(withPayload
      ? {
          headers: d.headers,
          payload: eventPayloadJson(d.payloadType, d.payload) ?? { base64: Buffer.from(d.payload).toString("base64") },
        }
      : {}),
  };
}

/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code: 0 on
 * success, 2 on bad arguments, 1 on other failures (NATS unreachable, nothing found by `show`).
 */
export async function runDlqCli(argv: readonly string[], io: DlqCliIo): Promise<number> {
  let nc: NatsConnection | undefined;
  try {
    const { values: o, positionals } = parseCliArgs(argv);
    if (o.help) {
      io.stdout(`${USAGE}\n`);
      return 0;
    }
    const [command, ...rest] = positionals;
    if (!command) throw new UsageError("a command is required");
    if (!["list", "show", "redrive", "purge"].includes(command)) throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    const now = (io.now ?? Date.now)();
    if (o.reason !== undefined && !isDeadLetterReasonClass(o.reason)) {
      throw new UsageError(`--reason: one of ${DeadLetterReasonClasses.join(", ")}`);
    }
    const filter: DeadLetterFilter = {
      ...(o.consumer ? { consumer: o.consumer } : {}),
      ...(o.reason !== undefined && isDeadLetterReasonClass(o.reason) ? { reason: o.reason } : {}),
      ...(o.subject ? { subject: o.subject } : {}),
      ...(o.since ? { since: timeArg("--since", o.since, now) } : {}),
      ...(o.until ? { until: timeArg("--until", o.until, now) } : {}),
      ...(o.seq ? { sequences: o.seq.map((s) => positiveInt("--seq", s)) } : {}),
      ...(o.limit ? { limit: positiveInt("--limit", o.limit) } : {}),
    };
    let showSeq: number | undefined;
    if (command === "show") {
      if (rest.length !== 1) throw new UsageError("show takes one dead-letter sequence");
      showSeq = positiveInt("show", rest[0]!);
    } else if (rest.length > 0) {
      throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    }
    const mutating = command === "redrive" || command === "purge";
    if (mutating && !filter.consumer && !filter.sequences && !o["all-consumers"]) {
      throw new UsageError(`${command} needs --consumer or --seq (or --all-consumers)`);
    }
    if (o["new-msg-id"] && command !== "redrive") throw new UsageError("--new-msg-id applies to redrive only");
    if (o["dry-run"] && !mutating) throw new UsageError("--dry-run applies to redrive and purge");

    const actor = o.actor ?? io.env["USER"] ?? userInfo().username;
    const env = io.env;
    nc = await connect({
      servers: (o.nats ?? env["NATS_URL"] ?? "nats://127.0.0.1:4222").split(","),
      name: "dlq-cli",
      timeout: 5000,
      ...natsConnectionOptions({
        ...(env["NATS_USER"] ? { user: env["NATS_USER"] } : {}),
        ...(env["NATS_PASSWORD"] ? { password: env["NATS_PASSWORD"] } : {}),
        ...(env["NATS_CREDS_FILE"] ? { credsFile: env["NATS_CREDS_FILE"] } : {}),
        ...(env["NATS_TLS_CA_FILE"] ? { tlsCaFile: env["NATS_TLS_CA_FILE"] } : {}),
      }),
    });
    const admin = createDeadLetterAdmin({
      js: jetstream(nc),
      jsm: await jetstreamManager(nc),
      subjects: createSubjects(o.prefix ?? env["SUBJECT_PREFIX"] ?? "logistics"),
      audit: (e) => io.stderr(`${JSON.stringify({ audit: "dead-letters", at: new Date().toISOString(), ...e })}\n`),
    });

    switch (command) {
      case "list": {
        const found = await admin.list(filter, { actor });
        for (const d of found) io.stdout(`${o.json ? JSON.stringify(asJson(d, false)) : row(d)}\n`);
        if (!o.json) io.stdout(`${found.length} dead letter${found.length === 1 ? "" : "s"}\n`);
        return 0;
      }
      case "show": {
        const d = await admin.show(showSeq as number, { actor });
        if (!d) {
          io.stderr(`dlq: no dead letter with sequence ${showSeq}\n`);
          return 1;
        }
        io.stdout(`${JSON.stringify(asJson(d, true), null, o.json ? undefined : 2)}\n`);
        return 0;
      }
      case "redrive": {
        const r = await admin.redrive(filter, { actor, dryRun: o["dry-run"], newMessageId: o["new-msg-id"] });
        const summary = {
          dryRun: o["dry-run"],
          matched: r.matched,
          redriven: r.redriven,
          deferred: r.deferred,
          ...(r.eligibleAt ? { deferredUntil: r.eligibleAt.toISOString() } : {}),
          sequences: r.sequences,
        };
        io.stdout(
          o.json
            ? `${JSON.stringify(summary)}\n`
            : `${o["dry-run"] ? "would redrive" : "redriven"}: ${r.redriven} of ${r.matched}` +
                (r.deferred
                  ? `; deferred: ${r.deferred} (their event ids may still be in the stream's duplicate window until ${r.eligibleAt?.toISOString()}: run again then, or use --new-msg-id)`
                  : "") +
                "\n",
        );
        return 0;
      }
      default: {
        const r = await admin.purge(filter, { actor, dryRun: o["dry-run"] });
        io.stdout(
          o.json
            ? `${JSON.stringify({ dryRun: o["dry-run"], matched: r.matched, purged: r.purged, sequences: r.sequences })}\n`
            : `${o["dry-run"] ? `would purge: ${r.matched}` : `purged: ${r.purged} of ${r.matched}`}\n`,
        );
        return 0;
      }
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`dlq: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    io.stderr(`dlq: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await nc?.close().catch(() => {});
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await runDlqCli(process.argv.slice(2), {
    env: process.env,
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
  });
}
