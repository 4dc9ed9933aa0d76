import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { runDlqCli } from "../src/cli/dlq.js";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { PoisonMessageError, startConsumer, type ConsumerHandle } from "../src/nats/consumer.js";
import { EventHeaders } from "../src/nats/event-headers.js";
import { createEventPublisher, type EventPublisher } from "../src/nats/publisher.js";
import { ensureConsumer, ensureStreams } from "../src/nats/streams.js";
import { createSubjects, type Subjects } from "../src/nats/subjects.js";
import { ConsumerLagMetrics, startConsumerLagSampler, type ConsumerLagSampler } from "../src/operations/consumer-lag.js";
import { createDeadLetterAdmin, subjectMatches, type DeadLetterAuditEntry } from "../src/operations/dead-letter-admin.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { compiledEntry } from "../src/testing/repo-paths.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

const DUPLICATE_WINDOW_MS = 1500;

/** The value of one gauge/counter series, or undefined when the series does not exist. */
async function valueOf(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return undefined;
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

/*
 * The operator tooling of @logistics/shared/operations against a real nats-server: the consumer
 * backlog and dead-letter gauges, and the dead-letter tooling (library and `npm run dlq`).
 */
describe("operations tooling (real nats-server)", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: EventPublisher;
  const handles: ConsumerHandle[] = [];
  const samplers: ConsumerLagSampler[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "operations-test" });
    ({ js, jsm } = await jetstreamFor(nc));
    publisher = createEventPublisher({ js });
  });
  afterAll(async () => {
    for (const s of samplers) await s.close();
    for (const h of handles) await h.close();
    await nc?.drain();
    await server?.stop();
  });

  describe("consumer backlog sampling", () => {
    async function setup(durable = "tracking-scans", consumer: { maxDeliver?: number } = {}) {
      const s = createSubjects(uniqueName("lag"));
      await ensureStreams(jsm, s.streamList);
      await ensureConsumer(jsm, s.streams.scans.name, { durable, filterSubject: s.allScans, ackWaitMs: 60_000, ...consumer });
      return { s, durable, stream: s.streams.scans.name };
    }

    const publish = (s: Subjects, value: string) =>
      publisher.publish(s.scanRecorded("eu", "acme"), StringValueSchema, create(StringValueSchema, { value }), { msgId: uniqueName("evt") });

    function sampler(registry: Registry, s: Subjects, durables: string[], now?: () => number, maxDeadLettersScanned?: number) {
      const x = startConsumerLagSampler({
        js,
        jsm,
        registry,
        consumers: durables.map((durable) => ({ durable, stream: s.streams.scans.name, deadLetterSubject: s.deadLetter(durable) })),
        deadLetterStream: s.streams.deadLetters.name,
        intervalMs: 0,
        ...(now ? { now } : {}),
        ...(maxDeadLettersScanned !== undefined ? { maxDeadLettersScanned } : {}),
      });
      samplers.push(x);
      return x;
    }

    it("reports pending, ack-pending and the age of the oldest unprocessed message, which grows while the consumer stalls", async () => {
      const { s, durable, stream } = await setup();
      const labels = { consumer: durable, stream };
      // Messages on another subject of the stream are not the consumer's (its filter) and must not count.
      await publisher.publish(`${s.prefix}.scan.other.x`, StringValueSchema, create(StringValueSchema, { value: "x" }), { msgId: "other" });
      const first = await publish(s, "m0");
      for (let i = 1; i < 5; i++) await publish(s, `m${i}`);
      const stored = await jsm.streams.getMessage(stream, { seq: first.seq });
      assert.ok(stored);
      let clock = stored.time.getTime() + 42_000;
      const registry = new Registry();
      const lag = sampler(registry, s, [durable], () => clock);

      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, labels), 5);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.ackPending, labels), 0);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.oldestAge, labels), 42, "age of m0, 42 s after it was stored");

      // A stalled consumer: two taken and never acknowledged; time passes.
      const consumer = await js.consumers.get(stream, durable);
      const taken = [];
      for await (const m of await consumer.fetch({ max_messages: 2, expires: 2000 })) taken.push(m);
      assert.equal(taken.length, 2);
      clock += 60_000;
      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, labels), 3);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.ackPending, labels), 2);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.oldestAge, labels), 102, "still m0: taken but not processed");

      // m0 acknowledged: the oldest unprocessed is m1 (taken, not acked).
      taken[0]!.ack();
      await waitFor(async () => (await jsm.consumers.info(stream, durable)).ack_floor.stream_seq === first.seq, { message: "m0 acked" });
      const m1 = await jsm.streams.getMessage(stream, { seq: taken[1]!.seq });
      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.oldestAge, labels), (clock - m1!.time.getTime()) / 1000);

      // Everything processed: zero, not a stale age.
      taken[1]!.ack();
      for await (const m of await consumer.fetch({ max_messages: 3, expires: 2000 })) m.ack();
      await waitFor(async () => (await jsm.consumers.info(stream, durable)).num_ack_pending === 0, { message: "all acked" });
      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, labels), 0);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.oldestAge, labels), 0);
    });

    it("counts a consumer it cannot sample as an error and drops its gauges instead of showing stale values", async () => {
      const { s, durable, stream } = await setup("routing-scans");
      await publish(s, "a");
      const registry = new Registry();
      const lag = sampler(registry, s, [durable, "routing-missing"]);
      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, { consumer: durable }), 1);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.sampleErrors, { consumer: "routing-missing" }), 1);
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, { consumer: "routing-missing" }), undefined);

      await jsm.consumers.delete(stream, durable);
      await lag.sample();
      assert.equal(await valueOf(registry, ConsumerLagMetrics.pending, { consumer: durable }), undefined, "gauges of a vanished consumer are removed");
      assert.equal(await valueOf(registry, ConsumerLagMetrics.sampleErrors, { consumer: durable }), 1);
    });

    it("reports the dead-letter depth per consumer by reason class, exact even beyond the scan limit", async () => {
      const { s, durable, stream } = await setup("notification-status", { maxDeliver: 2 });
      const h = await startConsumer({
        js,
        nc,
        stream,
        durable,
        schema: StringValueSchema,
        retryDelayMs: () => 10,
        deadLetter: { subject: s.deadLetter(durable) },
        handler: async (m) => {
          if (m.value.startsWith("poison")) throw new PoisonMessageError("cannot ever apply");
          if (m.value.startsWith("fail")) throw new Error("database down");
        },
      });
      handles.push(h);
      for (const v of ["poison-1", "poison-2", "fail-1", "ok-1"]) await publish(s, v);
      await waitFor(() => h.stats().deadLettered === 3 && h.stats().acked === 1, { message: "three dead-lettered, one acked" });

      const registry = new Registry();
      const lag = sampler(registry, s, [durable]);
      await lag.sample();
      const dl = (reason: string) => valueOf(registry, ConsumerLagMetrics.deadLetters, { consumer: durable, reason });
      assert.equal(await dl("poison"), 2);
      assert.equal(await dl("retries_exhausted"), 1);
      assert.equal(await dl("unsettled"), 0);
      assert.equal(await dl("unscanned"), 0);

      // More dead letters than the scan reads: the depth stays exact, the rest is "unscanned".
      const limited = new Registry();
      await sampler(limited, s, [durable], undefined, 1).sample();
      const sum = async () => {
        const { values } = await limited.getSingleMetric(ConsumerLagMetrics.deadLetters)!.get();
        return values.filter((v) => v.labels.consumer === durable).reduce((a, v) => a + v.value, 0);
      };
      assert.equal(await sum(), 3);
      assert.equal(await valueOf(limited, ConsumerLagMetrics.deadLetters, { consumer: durable, reason: "unscanned" }), 2);

      // A purge shows on the next sample.
      await jsm.streams.purge(s.streams.deadLetters.name, { filter: s.deadLetter(durable) });
      await lag.sample();
      assert.equal(await dl("poison"), 0);
      assert.equal(await dl("retries_exhausted"), 0);
    });
  });

  describe("dead-letter tooling", () => {
    /**
     * A stream, a durable consumer and a handler that applies events idempotently by event id (as
     * the projector does) and refuses "bad" values until `fixed` is set: the bug a redrive follows.
     */
    async function setup() {
      const s = createSubjects(uniqueName("dlq"));
      await ensureStreams(jsm, s.streamList, { duplicateWindowMs: DUPLICATE_WINDOW_MS });
      const durable = "tracking-scans";
      await ensureConsumer(jsm, s.streams.scans.name, { durable, filterSubject: s.allScans, maxDeliver: 2 });
      const state = { fixed: false, applied: new Map<string, number>(), deliveriesAfterFix: new Map<string, number>() };
      const h = await startConsumer({
        js,
        nc,
        stream: s.streams.scans.name,
        durable,
        schema: StringValueSchema,
        retryDelayMs: () => 10,
        deadLetter: { subject: s.deadLetter(durable) },
        handler: async (m, meta) => {
          const eventId = (meta.msgId ?? "").split(".redrive.")[0]!;
          if (state.fixed) state.deliveriesAfterFix.set(eventId, (state.deliveriesAfterFix.get(eventId) ?? 0) + 1);
          if (!state.fixed && m.value.startsWith("poison")) throw new PoisonMessageError(`cannot apply ${m.value}`);
          if (!state.fixed && m.value.startsWith("fail")) throw new Error(`store refused ${m.value}`);
          // Idempotent by event id (as the projector): a second delivery of an applied event changes nothing.
          if (!state.applied.has(eventId)) state.applied.set(eventId, 1);
        },
      });
      handles.push(h);
      const audit: DeadLetterAuditEntry[] = [];
      const admin = createDeadLetterAdmin({ js, jsm, subjects: s, audit: (e) => audit.push(e) });
      return { s, durable, h, state, admin, audit };
    }

    const publish = (s: Subjects, value: string, eventId: string, carrier = "acme") =>
      publisher.publish(s.scanRecorded("eu", carrier), StringValueSchema, create(StringValueSchema, { value }), {
        msgId: eventId,
        headers: { "Logistics-Test": value },
      });

    it("lists, filters and shows dead letters with their origin, and purges by filter (dry run first)", async () => {
      const { s, durable, h, admin, audit } = await setup();
      await publish(s, "poison-a", "evt-a", "acme");
      await publish(s, "fail-b", "evt-b", "ups");
      await publish(s, "poison-c", "evt-c", "ups");
      await waitFor(() => h.stats().deadLettered === 3, { message: "three dead letters" });

      const all = await admin.list({}, { actor: "alice" });
      const byId = (id: string) => all.find((d) => d.original.msgId === id)!;
      assert.deepEqual(all.map((d) => d.original.msgId).sort(), ["evt-a", "evt-b", "evt-c"], "with the original event ids");
      assert.deepEqual(all.map((d) => d.sequence), all.map((d) => d.sequence).sort((a, b) => a - b), "oldest first");
      assert.deepEqual(["evt-a", "evt-b", "evt-c"].map((id) => byId(id).reasonClass), ["poison", "retries_exhausted", "poison"]);
      assert.ok(all.every((d) => d.consumer === durable && d.original.stream === s.streams.scans.name));
      assert.equal(all[0]!.payload.length, 0, "listed without payloads");
      assert.ok(all[0]!.payloadSize > 0, "but with their size");

      const ids = async (f: Parameters<typeof admin.list>[0]) => (await admin.list(f, { actor: "alice" })).map((d) => d.original.msgId).sort();
      assert.deepEqual(await ids({ reason: "poison" }), ["evt-a", "evt-c"]);
      assert.deepEqual(await ids({ subject: `${s.prefix}.scan.recorded.*.ups` }), ["evt-b", "evt-c"]);
      assert.deepEqual(await ids({ consumer: durable, reason: "retries_exhausted" }), ["evt-b"]);
      assert.deepEqual(await ids({ consumer: "routing-scans" }), []);
      assert.deepEqual(await ids({ limit: 1 }), [all[0]!.original.msgId]);
      assert.deepEqual(await ids({ since: new Date(Date.now() + 60_000) }), []);
      assert.deepEqual(await ids({ until: all[1]!.deadLetteredAt }), [all[0]!.original.msgId]);
      assert.deepEqual(await ids({ afterSequence: all[0]!.sequence }), [all[1]!.original.msgId, all[2]!.original.msgId].sort());
      assert.deepEqual(await ids({ sequences: [all[2]!.sequence] }), [all[2]!.original.msgId]);

      const shown = await admin.show(byId("evt-b").sequence, { actor: "alice" });
      assert.ok(shown);
      assert.equal(fromBinary(StringValueSchema, shown.payload).value, "fail-b");
      assert.match(shown.reason, /^handler failed after 2 deliveries: store refused fail-b/);
      assert.equal(shown.original.deliveries, 2);
      assert.equal(shown.original.subject, s.scanRecorded("eu", "ups"));
      assert.deepEqual(shown.headers["Logistics-Test"], ["fail-b"], "the original headers are kept");
      assert.equal(shown.headers[EventHeaders.DlqReason], undefined, "without the dead-letter headers");
      assert.equal(await admin.show(999_999, { actor: "alice" }), undefined);

      const dry = await admin.purge({ reason: "poison" }, { actor: "bob", dryRun: true });
      assert.deepEqual([dry.matched, dry.purged], [2, 0]);
      assert.equal((await admin.list({}, { actor: "alice" })).length, 3, "a dry run changes nothing");
      const purged = await admin.purge({ reason: "poison" }, { actor: "bob" });
      assert.deepEqual([purged.matched, purged.purged], [2, 2]);
      assert.deepEqual((await admin.list({}, { actor: "alice" })).map((d) => d.original.msgId), ["evt-b"]);

      const last = audit.at(-2)!;
      assert.deepEqual(
        { action: last.action, actor: last.actor, dryRun: last.dryRun, matched: last.matched, affected: last.affected, filter: last.filter },
        { action: "purge", actor: "bob", dryRun: false, matched: 2, affected: 2, filter: { reason: "poison" } },
        "one audit line per action: who, what, how many",
      );
      assert.ok(audit.some((e) => e.action === "purge" && e.dryRun && e.affected === 0));
    });

    it("redrives poisoned-then-fixed messages to their subject with their ids: applied exactly once, never lost to the duplicate window", async () => {
      const { s, h, state, admin } = await setup();
      await publish(s, "poison-1", "evt-1");
      await publish(s, "fail-2", "evt-2");
      await publish(s, "ok-3", "evt-3");
      await waitFor(() => h.stats().deadLettered === 2 && h.stats().acked === 1, { message: "two dead letters, one applied" });
      const published = Date.now();
      state.fixed = true;

      // Inside the duplicate window JetStream would drop the republish as a duplicate: deferred, nothing lost.
      const early = await admin.redrive({ consumer: "tracking-scans" }, { actor: "carol" });
      if (Date.now() - published < DUPLICATE_WINDOW_MS) {
        assert.deepEqual([early.matched, early.redriven, early.deferred], [2, 0, 2]);
        assert.ok(early.eligibleAt && early.eligibleAt.getTime() > published);
        assert.equal((await admin.list({}, { actor: "carol" })).length, 2, "deferred dead letters stay");
        await waitFor(() => Date.now() >= early.eligibleAt!.getTime(), { message: "duplicate window passed", timeoutMs: 10_000 });
      }

      const dry = await admin.redrive({ consumer: "tracking-scans" }, { actor: "carol", dryRun: true });
      assert.deepEqual([dry.matched, dry.redriven, dry.deferred], [2, 2, 0]);
      assert.equal(state.applied.size, 1, "a dry run publishes nothing");

      const done = await admin.redrive({ consumer: "tracking-scans" }, { actor: "carol" });
      assert.deepEqual([done.matched, done.redriven, done.deferred], [2, 2, 0]);
      await waitFor(() => state.applied.size === 3, { message: "both redriven events applied" });
      assert.deepEqual((await admin.list({}, { actor: "carol" })).length, 0, "redriven dead letters are removed");

      // Redriving again finds nothing; republishing the same ids is deduplicated by JetStream.
      assert.equal((await admin.redrive({ consumer: "tracking-scans" }, { actor: "carol" })).matched, 0);
      assert.equal((await publish(s, "poison-1", "evt-1")).duplicate, true, "the redriven message carries its event id as Nats-Msg-Id");
      await waitFor(async () => (await jsm.consumers.info(s.streams.scans.name, "tracking-scans")).num_ack_pending === 0, { message: "drained" });
      assert.deepEqual([...state.applied.keys()].sort(), ["evt-1", "evt-2", "evt-3"]);
      assert.deepEqual(
        Object.fromEntries(state.deliveriesAfterFix),
        { "evt-1": 1, "evt-2": 1 },
        "each redriven event reached the consumer exactly once; the event that was fine was not replayed",
      );
    });

    it("republishes inside the duplicate window with a new message id when asked, still applying once by event id", async () => {
      const { s, h, state, admin } = await setup();
      await publish(s, "poison-x", "evt-x");
      await waitFor(() => h.stats().deadLettered === 1, { message: "dead-lettered" });
      state.fixed = true;
      const r = await admin.redrive({ reason: "poison" }, { actor: "dave", newMessageId: true });
      assert.deepEqual([r.matched, r.redriven, r.deferred], [1, 1, 0]);
      await waitFor(() => state.applied.get("evt-x") === 1, { message: "applied after the redrive" });
      const stored = await jsm.streams.getMessage(s.streams.scans.name, { last_by_subj: s.scanRecorded("eu", "acme") });
      assert.match(stored?.header.get(EventHeaders.MsgId) ?? "", /^evt-x\.redrive\.\d+$/);
    });

    it("matches NATS subject patterns", () => {
      assert.ok(subjectMatches("a.*.c", "a.b.c"));
      assert.ok(subjectMatches("a.>", "a.b.c"));
      assert.ok(!subjectMatches("a.>", "a"));
      assert.ok(!subjectMatches("a.*", "a.b.c"));
      assert.ok(subjectMatches("a.b", "a.b"));
      assert.ok(!subjectMatches("a.b.c", "a.b"));
    });

    describe("npm run dlq", () => {
      /** Runs the CLI in this process against the test server; returns exit code, output and audit lines. */
      async function dlq(s: Subjects, ...args: string[]) {
        let stdout = "";
        let stderr = "";
        const code = await runDlqCli(args, {
          env: { NATS_URL: server.url, SUBJECT_PREFIX: s.prefix, USER: "erin" },
          stdout: (t) => void (stdout += t),
          stderr: (t) => void (stderr += t),
        });
        const audit = stderr
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        return { code, stdout, stderr, audit };
      }

      it("lists, shows (payload decoded), redrives and purges, with one audit line per action", async () => {
        const { s, h, state } = await setup();
        await publish(s, "poison-1", "cli-1");
        await publish(s, "poison-2", "cli-2");
        await waitFor(() => h.stats().deadLettered === 2, { message: "dead-lettered" });

        const list = await dlq(s, "list", "--consumer", "tracking-scans", "--json");
        assert.equal(list.code, 0, list.stderr);
        const rows = list.stdout.trim().split("\n").map((l) => JSON.parse(l) as { sequence: number; reasonClass: string; original: { msgId: string } });
        assert.deepEqual(rows.map((r) => r.original.msgId).sort(), ["cli-1", "cli-2"]);
        assert.deepEqual(list.audit.map((a) => [a.action, a.actor, a.matched]), [["list", "erin", 2]]);

        const show = await dlq(s, "show", String(rows[0]!.sequence));
        assert.equal(show.code, 0, show.stderr);
        const shown = JSON.parse(show.stdout) as { payload: unknown; headers: Record<string, string[]> };
        assert.ok(shown.headers["Logistics-Test"], "original headers shown");
        assert.equal((await dlq(s, "show", "999999")).code, 1);

        const dry = await dlq(s, "redrive", "--consumer", "tracking-scans", "--new-msg-id", "--dry-run", "--json");
        assert.equal(dry.code, 0, dry.stderr);
        assert.deepEqual(JSON.parse(dry.stdout), { dryRun: true, matched: 2, redriven: 2, deferred: 0, sequences: rows.map((r) => r.sequence) });
        assert.deepEqual(dry.audit.map((a) => [a.action, a.dryRun, a.affected]), [["redrive", true, 0]]);

        state.fixed = true;
        const redrive = await dlq(s, "redrive", "--seq", String(rows[0]!.sequence), "--new-msg-id", "--actor", "frank");
        assert.equal(redrive.code, 0, redrive.stderr);
        assert.match(redrive.stdout, /redriven: 1 of 1/);
        assert.deepEqual(redrive.audit.map((a) => [a.action, a.actor, a.matched, a.affected]), [["redrive", "frank", 1, 1]]);
        await waitFor(() => state.applied.has(rows[0]!.original.msgId), { message: "redriven event applied" });

        const purge = await dlq(s, "purge", "--consumer", "tracking-scans");
        assert.equal(purge.code, 0, purge.stderr);
        assert.match(purge.stdout, /purged: 1 of 1/);
        assert.equal((await dlq(s, "list", "--json")).stdout, "");
      });

      it("refuses unsafe or malformed requests with usage errors (exit 2)", async () => {
        const s = createSubjects(uniqueName("dlq"));
        for (const args of [[], ["frobnicate"], ["redrive"], ["purge", "--reason", "poison"], ["list", "--reason", "bad"], ["list", "--since", "yesterday"], ["show"], ["list", "--dry-run"]]) {
          const r = await dlq(s, ...args);
          assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
          assert.match(r.stderr, /usage: dlq/);
        }
      });

      it("runs from the built package (what npm run dlq starts)", async () => {
        const s = createSubjects(uniqueName("dlq"));
        await ensureStreams(jsm, s.streamList);
        const out = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
          execFile(
            process.execPath,
            [compiledEntry("services/shared/src/cli/dlq.ts"), "list"],
            { env: { ...process.env, NATS_URL: server.url, SUBJECT_PREFIX: s.prefix }, timeout: 60_000 },
            (err, stdout) => (err && typeof err.code !== "number" ? reject(err) : resolve({ code: err ? Number(err.code) : 0, stdout })),
          );
        });
        assert.equal(out.code, 0);
        assert.equal(out.stdout, "0 dead letters\n");
      });
    });
  });
});
